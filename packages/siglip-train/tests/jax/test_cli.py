"""``siglip-train train --framework jax``: the torch path's config, shards, metrics and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import siglip_data
from siglip_models.torch import SiglipModel
from siglip_train import read_metrics
from siglip_train._cli import main


@pytest.fixture
def shard_run(tmp_path: Path) -> tuple[Path, list[str]]:
    rng = np.random.default_rng(0)
    words = ["red", "green", "blue", "cat", "dog", "car"]
    samples = [
        (rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), f"a {words[i % 6]} {words[i // 6 % 6]}")
        for i in range(32)
    ]
    siglip_data.write_shards(samples, tmp_path / "shards", samples_per_shard=16)
    tokenizer = siglip_data.train_sentencepiece(
        [caption for _, caption in samples] * 3, tmp_path / "tok.model", vocab_size=20
    )
    shards = json.dumps([str(tmp_path / "shards" / "shard-{00000..00001}.tar")])
    overrides = [
        "model.name=tiny-test",
        f"data.shards={shards}",
        f"data.tokenizer={tokenizer}",
        "data.batch_size=16",
        "data.text_length=16",
        f"output_dir={tmp_path / 'run'}",
        "steps=2",
        "optimizer.warmup_steps=1",
        "logging.every_steps=1",
        "logging.progress_bar=true",
        "logging.tensorboard=true",
        "checkpoint.every_steps=0",
        "eval.every_steps=2",
        f"eval.retrieval_shards={shards}",
    ]
    return tmp_path / "run", ["train", "--framework", "jax"] + [
        arg for override in overrides for arg in ("--set", override)
    ]


def test_train_framework_jax_logs_evaluates_and_exports(shard_run, capsys):
    run_dir, args = shard_run
    assert main(args) == 0
    records = read_metrics(run_dir / "metrics.jsonl")
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    assert {"loss", "lr", "scale", "bias", "grad_norm", "samples_per_second"} <= set(train[0])
    evals = [r for r in records if r["kind"] == "eval"]
    assert evals
    assert evals[0]["step"] == 2
    assert any(name.startswith("retrieval_") for name in evals[0])
    assert list((run_dir / "tensorboard").iterdir())
    assert "train: 100%" in capsys.readouterr().err  # the progress bar
    model_dir = run_dir / "checkpoints" / "step_000000002" / "model"
    assert (model_dir / "tokenizer.model").is_file()
    assert SiglipModel.from_pretrained(model_dir).config.text.vocab_size == 100


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("mesh.fsdpp=2", "unknown config field(s) ['mesh.fsdpp']"),
        (
            "mesh.fsdp=16",
            "'mesh.fsdp': fsdp: expected at most the 8 available device(s), got a mesh axis of 16",
        ),
        ("data.batch_size=12", "'data.batch_size' must be divisible by the 8 devices"),
    ],
)
def test_bad_input_exits_2_naming_the_field(shard_run, capsys, override, message):
    _, args = shard_run
    assert main([*args, "--set", override]) == 2
    assert message in capsys.readouterr().err
