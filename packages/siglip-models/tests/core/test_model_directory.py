"""``resolve_model_directory``: a model, a siglip-train checkpoint or run directory, or a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from siglip_models import config_to_hf_dict
from siglip_models import get_config
from siglip_models import read_hf_config
from siglip_models import resolve_model_directory


def _model_directory(directory: Path) -> Path:
    directory.mkdir(parents=True)
    hf = config_to_hf_dict(get_config("tiny-test"))
    (directory / "config.json").write_text(json.dumps(hf))
    return directory


def _run(tmp_path: Path, steps: tuple[int, ...]) -> Path:
    for step in steps:
        _model_directory(tmp_path / "run" / "checkpoints" / f"step_{step:09d}" / "model")
    return tmp_path / "run"


def test_a_model_directory_is_itself(tmp_path: Path) -> None:
    model = _model_directory(tmp_path / "model")
    assert resolve_model_directory(model) == model
    assert resolve_model_directory(str(model)) == model


def test_a_step_directory_resolves_to_its_model_subfolder(tmp_path: Path) -> None:
    run = _run(tmp_path, (250,))
    step = run / "checkpoints" / "step_000000250"
    assert resolve_model_directory(step) == step / "model"
    assert read_hf_config(str(step)).vision.image_size == 32


def test_a_run_directory_resolves_to_its_newest_complete_step(tmp_path: Path) -> None:
    run = _run(tmp_path, (250, 1000, 500))
    # A half-written newer step (weights but no config.json yet) is skipped.
    (run / "checkpoints" / "step_000001250" / "model").mkdir(parents=True)
    expected = run / "checkpoints" / "step_000001000" / "model"
    assert resolve_model_directory(run) == expected
    assert resolve_model_directory(run / "checkpoints") == expected


def test_a_directory_without_a_model_names_where_one_is(tmp_path: Path) -> None:
    _model_directory(tmp_path / "outer" / "deep" / "exported")
    with pytest.raises(FileNotFoundError, match=r"config\.json files below it") as error:
        resolve_model_directory(tmp_path / "outer")
    assert str(tmp_path / "outer" / "deep" / "exported") in str(error.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no config\.json below it either"):
        read_hf_config(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model_directory(tmp_path / "missing")
