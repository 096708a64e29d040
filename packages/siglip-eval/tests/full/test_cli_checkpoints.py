"""``siglip-eval --model`` on a training checkpoint (issue 22): the checkpoint's own tokenizer and
preprocessing, step folders, prompt templates from the command line, a cache keyed by content,
and one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

import siglip_data
from siglip_eval._cli import main
from siglip_models.torch import SiglipModel

COLORS = {"red": (220, 20, 20), "green": (20, 160, 20), "blue": (20, 20, 220)}


def checkpoint(root: Path, seed: int = 0) -> Path:
    """A checkpoint folder laid out as siglip-train writes it: step_N/model/ with its tokenizer."""
    step = root / "run" / "checkpoints" / "step_000000010"
    model_dir = step / "model"
    torch.manual_seed(seed)
    SiglipModel("tiny-test").save_pretrained(model_dir)
    prompts = [f"a {c}" for c in COLORS] + [f"a photo of a {c}." for c in COLORS]
    siglip_data.train_sentencepiece(prompts * 10, model_dir / "tokenizer.model", vocab_size=20)
    settings = {
        "format": "siglip-preprocessing/1",
        "tokenizer": "tokenizer.model",
        "tokenizer_preset": "siglip",
        "text_length": 16,
        "image_size": 32,
        "resample": "bicubic",
    }
    (model_dir / "siglip_preprocessing.json").write_text(json.dumps(settings))
    (step / "manifest.json").write_text("{}")
    return step


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for color, rgb in COLORS.items():
        (tmp_path / "images" / color).mkdir(parents=True)
        for index in range(2):
            Image.new("RGB", (40, 30), rgb).save(tmp_path / "images" / color / f"{index}.png")
    return tmp_path / "images"


def zeroshot(step: Path, folder: Path, out: Path, *extra: str) -> int:
    arguments = ["zeroshot", "--model", str(step), "--dataset", f"image-folder:{folder}"]
    return main([*arguments, "--out", str(out), "--no-progress", "--no-plots", *extra])


def test_a_step_folder_is_read_with_its_own_tokenizer_and_another_is_refused(
    tmp_path: Path, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    step = checkpoint(tmp_path)
    assert zeroshot(step, folder, tmp_path / "a", "--template", "a {c}") == 0
    other = tmp_path / "other.model"
    siglip_data.train_sentencepiece([f"a {c}" for c in COLORS] * 30, other, vocab_size=14)
    capsys.readouterr()
    assert zeroshot(step, folder, tmp_path / "b", "--tokenizer", str(other)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "differs from the tokenizer the model was trained with" in error
    assert (
        zeroshot(step, folder, tmp_path / "b", "--tokenizer", str(other), "--force-tokenizer") == 0
    )
    assert zeroshot(tmp_path / "run", folder, tmp_path / "c") == 2
    assert "did you mean" in capsys.readouterr().err


def test_template_and_templates_file_set_the_prompts(
    tmp_path: Path, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    step = checkpoint(tmp_path)
    assert zeroshot(step, folder, tmp_path / "one", "--template", "a {c}") == 0
    record = json.loads((tmp_path / "one" / "results.json").read_text())
    assert record["context"]["templates"] == ["a {c}"]
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a {c}\n\na photo of a {c}.\n")
    assert zeroshot(step, folder, tmp_path / "file", "--templates", str(prompts)) == 0
    record = json.loads((tmp_path / "file" / "results.json").read_text())
    assert record["context"]["templates"] == ["a {c}", "a photo of a {c}."]
    capsys.readouterr()
    assert zeroshot(step, folder, tmp_path / "bad", "--template", "a photo") == 2
    assert "expected a prompt with {c}" in capsys.readouterr().err


def test_the_cache_is_keyed_by_the_weights_not_the_path(tmp_path: Path, folder: Path) -> None:
    step = checkpoint(tmp_path, seed=0)
    cache = ["--cache", str(tmp_path / "cache"), "--template", "a {c}"]
    assert zeroshot(step, folder, tmp_path / "first", *cache) == 0
    torch.manual_seed(1)
    SiglipModel("tiny-test").save_pretrained(step / "model")  # new weights, same path
    assert zeroshot(step, folder, tmp_path / "cached", *cache) == 0
    assert zeroshot(step, folder, tmp_path / "fresh", "--template", "a {c}") == 0

    def scores(out: str) -> object:
        return json.loads((tmp_path / out / "results.json").read_text())["metrics"]

    entries = sorted(p.name for p in (tmp_path / "cache").glob("*.npy"))
    assert len(entries) == 4  # images and classes, for each set of weights
    assert scores("cached") == scores("fresh")


def test_errors_are_one_line_and_debug_shows_the_traceback(
    tmp_path: Path, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    assert zeroshot(missing, folder, tmp_path / "x") == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "which does not exist" in error
    with pytest.raises(ValueError, match="which does not exist"):
        zeroshot(missing, folder, tmp_path / "x", "--debug")
    shutil.rmtree(tmp_path / "x", ignore_errors=True)
