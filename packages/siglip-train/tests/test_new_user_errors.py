"""The new-user path (issue 22): usual batch mistakes get clear errors, schedules are checked
against steps, config.yaml records what ran, the model size follows the tokenizer and data, and
checkpoints carry their tokenizer and preprocessing."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import siglip_data
from siglip_models.torch import SiglipModel
from siglip_train import TrainConfig
from siglip_train import Trainer
from siglip_train import apply_overrides
from siglip_train._cli import main


def config_in(tmp_path: Path, *overrides: str) -> TrainConfig:
    base = [
        f"output_dir={tmp_path / 'run'}",
        "steps=3",
        "optimizer.warmup_steps=1",
        "logging.progress_bar=false",
        "logging.tensorboard=false",
    ]
    return apply_overrides(TrainConfig(), [*base, *overrides])


def test_a_one_shot_generator_that_ran_out_says_how_many_batches_it_gave(
    make_batches, tmp_path: Path
) -> None:
    trainer = Trainer(SiglipModel("tiny-test"), iter(make_batches(2)), config_in(tmp_path))
    with pytest.raises(ValueError, match=r"ran out after 2 batch\(es\) and cannot be restarted"):
        trainer.fit()


def test_tuple_batches_from_a_tensor_dataset_are_refused_with_the_fix(tmp_path: Path) -> None:
    dataset = torch.utils.data.TensorDataset(
        torch.rand(8, 3, 32, 32) * 2 - 1, torch.randint(0, 100, (8, 16))
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=4)
    trainer = Trainer(SiglipModel("tiny-test"), loader, config_in(tmp_path))
    with pytest.raises(TypeError, match=r"got a list of 2 Tensor, Tensor .*\{'pixels': p"):
        trainer.fit()


def test_float_pixels_in_0_255_are_refused_and_in_0_1_warned(make_batches, tmp_path: Path) -> None:
    batch = make_batches(1)[0]
    wide = [{"pixels": (batch["pixels"] + 1) * 127.5, "token_ids": batch["token_ids"]}]
    trainer = Trainer(SiglipModel("tiny-test"), wide, config_in(tmp_path / "a"))
    with pytest.raises(ValueError, match=r"in \[-1, 1\], got \[0.*255\].*looks like \[0, 255\]"):
        trainer.fit()
    unit = [{"pixels": (batch["pixels"] + 1) / 2, "token_ids": batch["token_ids"]}]
    trainer = Trainer(SiglipModel("tiny-test"), unit, config_in(tmp_path / "b"))
    with pytest.warns(UserWarning, match=r"images in \[0, 1\]\? The model expects \[-1, 1\]"):
        trainer.fit()


def test_a_plain_float_log_scale_is_refused_naming_the_attribute(tmp_path: Path) -> None:
    model = SiglipModel("tiny-test")
    del model.log_scale
    model.log_scale = 2.3  # type: ignore[assignment]
    with pytest.raises(
        TypeError, match=r"model\.log_scale must be a 0-d learnable tensor .* float 2\.3"
    ):
        Trainer(model, [], config_in(tmp_path))


def test_warmup_that_spans_the_whole_run_is_warned(
    make_batches, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_in(tmp_path, "optimizer.warmup_steps=100")
    with caplog.at_level(logging.WARNING, logger="siglip_train"):
        Trainer(SiglipModel("tiny-test"), make_batches(3), config).fit()
    assert "optimizer.warmup_steps=100 >= steps=3: the whole run is warmup" in caplog.text


def test_config_yaml_from_python_records_the_batches_and_model_that_ran(
    make_batches, tmp_path: Path
) -> None:
    config = config_in(tmp_path, "data.batch_size=128", "data.image_size=224")
    Trainer(SiglipModel("tiny-test"), make_batches(3), config).fit()
    text = (tmp_path / "run" / "config.yaml").read_text()
    saved = yaml.safe_load(text)
    assert (saved["data"]["batch_size"], saved["data"]["image_size"]) == (8, 32)
    assert saved["data"]["text_length"] == 16
    assert "# model: SiglipModel" in text
    assert "this run was given its own" in text


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    words = ["red", "green", "blue", "circle", "square"]
    samples = [
        (rng.integers(0, 256, (48, 48, 3), dtype=np.uint8), f"a {words[i % 3]} {words[3 + i % 2]}")
        for i in range(24)
    ]
    siglip_data.write_shards(samples, root / "shards", samples_per_shard=12)
    siglip_data.train_sentencepiece([c for _, c in samples] * 4, root / "tok.model", vocab_size=19)
    return root


def test_a_named_size_follows_the_tokenizer_and_data_and_checkpoints_carry_the_tokenizer(
    toy: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    arguments = ["train", "--data", str(toy / "shards"), "--tokenizer", str(toy / "tok.model")]
    arguments += ["--model", "tiny", "--steps", "2", "--out", str(run)]
    for override in ("data.image_size=48", "data.batch_size=4", "logging.tensorboard=false",
                     "logging.progress_bar=false", "optimizer.warmup_steps=1", "num_threads=1"):  # fmt: skip
        arguments += ["--set", override]
    assert main(arguments) == 0
    model_dir = run / "checkpoints" / "step_000000002" / "model"
    model = SiglipModel.from_pretrained(model_dir)
    assert model.config.text.vocab_size == 19
    assert model.config.vision.image_size == 48
    assert (model_dir / "tokenizer.model").read_bytes() == (toy / "tok.model").read_bytes()
    settings = json.loads((model_dir / "siglip_preprocessing.json").read_text())
    assert settings["image_size"] == 48
    assert settings["text_length"] == 16
    assert settings["tokenizer_preset"] == "siglip"
    assert settings["resample"] == "bicubic"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["name"] == "tiny"
    assert saved["data"]["image_size"] == 48


def test_shards_given_to_a_trainer_that_has_its_batches_are_refused(
    make_batches, tmp_path: Path
) -> None:
    from siglip_train import ConfigError

    config = config_in(tmp_path, "data.shards=[mine.tar]")
    with pytest.raises(
        ConfigError, match="this Trainer was given its batches; they would be ignored"
    ):
        Trainer(SiglipModel("tiny-test"), make_batches(1), config)
