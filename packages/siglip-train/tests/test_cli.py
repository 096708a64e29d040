"""The console script: config printing, clear errors, a real SIGTERM to a training process,
``--resume auto`` with periodic siglip-eval retrieval, WiSE-FT interpolation."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import siglip_data
import siglip_eval
from siglip_eval.torch import torch_encoder
from siglip_models.torch import SiglipModel
from siglip_train import get_preset
from siglip_train import read_metrics
from siglip_train._cli import main
from siglip_train._config import apply_overrides


def test_print_config_is_the_full_resolved_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--preset", "tiny-cpu", "--set", "steps=7", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    expected = get_preset("tiny-cpu")
    assert printed["steps"] == 7
    assert printed["optimizer"]["lr"] == expected.optimizer.lr
    assert set(printed) >= {"model", "optimizer", "loss", "data", "checkpoint", "logging", "eval"}


def test_bad_config_exits_2_with_the_field_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--set", "optimizer.beta2=1.5", "--print-config"]) == 2
    assert "'optimizer.beta2' must be in [0, 1), got 1.5" in capsys.readouterr().err


def test_interpolate_writes_the_wise_ft_mix(tmp_path: Path) -> None:
    torch.manual_seed(0)
    zero_shot, fine_tuned = SiglipModel("tiny-test"), SiglipModel("tiny-test")
    zero_shot.save_pretrained(tmp_path / "a")
    fine_tuned.save_pretrained(tmp_path / "b")
    args = ["interpolate", str(tmp_path / "a"), str(tmp_path / "b"), "--alpha", "0.25"]
    assert main([*args, "--out", str(tmp_path / "mix")]) == 0
    mixed = SiglipModel.from_pretrained(tmp_path / "mix")
    for name, value in mixed.state_dict().items():
        expected = 0.75 * zero_shot.state_dict()[name] + 0.25 * fine_tuned.state_dict()[name]
        torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-7, msg=name)


@pytest.fixture
def shard_run(tmp_path: Path) -> tuple[Path, list[str]]:
    rng = np.random.default_rng(0)
    words = ["red", "green", "blue", "cat", "dog", "car"]
    samples = [
        (
            rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
            f"a {words[i % 6]} {words[(i // 6) % 6]}",
        )
        for i in range(64)
    ]
    siglip_data.write_shards(samples, tmp_path / "shards", samples_per_shard=16)
    tokenizer = siglip_data.train_sentencepiece(
        [caption for _, caption in samples] * 3, tmp_path / "tok.model", vocab_size=20
    )
    overrides = [
        "model.name=tiny-test",
        f"data.shards={json.dumps([str(tmp_path / 'shards' / 'shard-{00000..00003}.tar')])}",
        f"data.tokenizer={tokenizer}",
        "data.batch_size=8",
        "data.text_length=16",
        f"output_dir={tmp_path / 'run'}",
        "steps=400",
        "device=cpu",
        "num_threads=1",
        "logging.every_steps=1",
        "logging.progress_bar=false",
        "logging.tensorboard=false",
        "checkpoint.every_steps=0",
    ]
    return tmp_path / "run", [arg for o in overrides for arg in ("--set", o)]


def test_sigterm_checkpoints_exits_143_and_resume_auto_finishes(
    shard_run: tuple[Path, list[str]],
) -> None:
    run_dir, overrides = shard_run
    command = [sys.executable, "-m", "siglip_train", "train", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while not read_metrics(run_dir / "metrics.jsonl") and time.monotonic() < deadline:
        if process.poll() is not None:
            break
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=240)[0].decode()
    assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
    checkpoints = sorted((run_dir / "checkpoints").iterdir())
    assert len(checkpoints) == 1
    stopped_at = json.loads((checkpoints[0] / "manifest.json").read_text())["step"]
    assert 1 <= stopped_at < 400
    assert [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")][-1] == stopped_at

    shards = json.dumps([str(run_dir.parent / "shards" / "shard-00000.tar")])
    finish = [*command, "--resume", "auto", "--set", f"steps={stopped_at + 3}"]
    finish += ["--set", "eval.every_steps=2", "--set", f"eval.retrieval_shards={shards}"]
    completed = subprocess.run(finish, env=env, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stderr[-3000:]
    records = read_metrics(run_dir / "metrics.jsonl")
    steps = [r["step"] for r in records if r["kind"] == "train"]
    assert steps == list(range(1, stopped_at + 4))
    evals = [r for r in records if r["kind"] == "eval"]
    assert evals, "periodic siglip-eval retrieval evaluation did not run"
    assert evals[-1]["step"] == stopped_at + 3  # the final evaluation
    # The logged recall is siglip-eval's on the final weights with the training tokenizer.
    final = SiglipModel.from_pretrained(
        run_dir / "checkpoints" / f"step_{stopped_at + 3:09d}" / "model"
    )
    tokenizer = siglip_data.SentencePieceTokenizer(run_dir.parent / "tok.model", length=16)
    expected = siglip_eval.evaluate_retrieval(
        torch_encoder(final, tokenizer),
        siglip_eval.datasets.retrieval_shards(json.loads(shards), image_size=32, name="eval"),
        progress=False,
    ).metrics
    for name, value in expected.items():
        assert evals[-1][f"retrieval_{name}"] == pytest.approx(value, abs=1e-9), name


def test_lit_preset_without_a_pretrained_model_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["train", "--preset", "lit-b16", "--set", f"output_dir={tmp_path}"]
    assert main([*args, "--set", "device=cpu"]) == 2
    assert "set model.init_from" in capsys.readouterr().err


def test_train_reads_only_the_data_the_config_names(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["train", "--preset", "tiny-cpu", "--set", f"output_dir={tmp_path}"]
    assert main(args) == 2
    assert "'data.shards' is empty" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()
    assert main([*args, "--set", "data.source=demo"]) == 2
    assert "run the demo with `siglip-train demo`" in capsys.readouterr().err


def test_tiny_cpu_preset_trains_on_the_shards_given(shard_run: tuple[Path, list[str]]) -> None:
    run_dir, overrides = shard_run
    assert main(["train", "--preset", "tiny-cpu", *overrides, "--set", "steps=2"]) == 0
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["data"]["shards"][0].endswith("shard-{00000..00003}.tar")
    assert saved["model"]["name"] == "tiny-test"
    assert [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")] == [1, 2]
    trained = SiglipModel.from_pretrained(run_dir / "checkpoints" / "step_000000002" / "model")
    assert trained.config.text.vocab_size == 100  # tiny-test, not the demo's 1,000-piece model


def test_train_with_several_captions_per_image_and_group_key_positives(
    shard_run: tuple[Path, list[str]],
) -> None:
    # The shards have one caption per image: each of the 8 images of a step becomes 2 rows with
    # its key as group_key, and the loss treats both rows of an image as positives.
    run_dir, overrides = shard_run
    extra = ["data.captions_per_image=2", "loss.positives=group_key", "steps=2"]
    assert main(["train", *overrides, *[a for o in extra for a in ("--set", o)]]) == 0
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    assert records[0]["samples_per_second"] > 0


def test_demo_without_its_debian_packages_exits_2_with_the_apt_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_installed(*args: object, **kwargs: object) -> None:
        raise siglip_data.builders.MissingDebianPackageError(
            "the emoji dataset needs /usr/share/fonts/x.ttf, which is not installed. Install it "
            "with:\n    sudo apt-get install -y fonts-noto-color-emoji unicode-data"
        )

    # The demo checks every package before building anything.
    monkeypatch.setattr(siglip_data.builders, "check_debian_packages", not_installed)
    args = ["demo", "--out", str(tmp_path / "demo"), "--data-root", str(tmp_path / "data")]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1  # one line
    assert "sudo apt-get install -y fonts-noto-color-emoji unicode-data" in error


def test_demo_without_the_twemoji_tarball_exits_2_with_the_npm_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(siglip_data.builders, "check_debian_packages", lambda *names: None)
    monkeypatch.setenv("SIGLIP_NPM_CACHE", str(tmp_path / "npm"))
    args = ["demo", "--out", str(tmp_path / "demo"), "--data-root", str(tmp_path / "data")]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1  # one line
    assert (
        f"npm pack emoji-datasource-twitter@16.0.0 --pack-destination {tmp_path / 'npm'}" in error
    )


def test_demo_refuses_training_fields_it_would_ignore(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["demo", "--out", str(tmp_path / "demo"), "--set", "model.name=nonexistent"]
    assert main(args) == 2
    assert "does not use model.name='nonexistent'" in capsys.readouterr().err


def test_without_siglip_eval_training_runs_with_no_periodic_eval(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from siglip_train import _run

    monkeypatch.setitem(sys.modules, "siglip_eval", None)  # `import siglip_eval` raises
    config = apply_overrides(
        get_preset("tiny-cpu"), ["eval.every_steps=2", "eval.retrieval_shards=[x.tar]"]
    )
    with caplog.at_level(logging.WARNING, logger="siglip_train"):
        assert _run._retrieval_eval(config, tokenizer=None) is None
    assert "siglip-eval is not installed: no periodic evaluation" in caplog.text
