"""Config: files, overrides and presets round-trip; bad input names the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siglip_train import ConfigError
from siglip_train import TrainConfig
from siglip_train import apply_overrides
from siglip_train import build_config
from siglip_train import config_from_dict
from siglip_train import config_to_dict
from siglip_train import config_to_yaml
from siglip_train import get_preset
from siglip_train import list_presets
from siglip_train import save_config


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_round_trips_through_yaml_and_json(name: str, tmp_path: Path) -> None:
    config = get_preset(name)
    for suffix in (".yaml", ".json"):
        path = tmp_path / f"config{suffix}"
        save_config(config, path)
        assert build_config(files=[path]) == config


def test_presets_named_in_the_issue_exist() -> None:
    assert {"tiny-cpu", "b16-webli-like", "lit-b16"} <= set(list_presets())
    assert get_preset("lit-b16").freeze == "image"


def test_file_then_overrides_later_wins(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("steps: 50\noptimizer:\n  lr: 0.01\n  beta2: 0.99\n")
    config = build_config(
        preset="tiny-cpu", files=[path], overrides=["optimizer.lr=3e-4", "freeze=text"]
    )
    assert config.steps == 50
    assert config.optimizer.lr == pytest.approx(3e-4)
    assert config.optimizer.beta2 == pytest.approx(0.99)
    assert config.freeze == "text"
    # untouched fields keep the preset's values
    assert config.data.batch_size == get_preset("tiny-cpu").data.batch_size


@given(
    steps=st.integers(1, 10**7),
    lr=st.floats(1e-8, 10.0, allow_nan=False),
    freeze=st.sampled_from(["none", "image", "text"]),
    shards=st.lists(st.text("abc/-{}.0123456789", min_size=1, max_size=12), max_size=3),
)
def test_overrides_set_exactly_the_named_fields(
    steps: int, lr: float, freeze: str, shards: list[str]
) -> None:
    overrides = [f"steps={steps}", f"optimizer.lr={lr!r}", f"freeze={freeze}"]
    overrides.append(f"data.shards={json.dumps(shards)}")
    config = apply_overrides(TrainConfig(), overrides)
    expected = config_to_dict(TrainConfig())
    expected["steps"] = steps
    expected["optimizer"]["lr"] = lr
    expected["freeze"] = freeze
    expected["data"]["shards"] = shards
    assert config_to_dict(config) == expected
    assert config_from_dict(config_to_dict(config)) == config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=-1", "'optimizer.lr' must be > 0, got -1.0"),
        ("optimizer.lrr=1", "unknown config field(s) ['optimizer.lrr']"),
        ("steps=1.5", "'steps' must be an integer, got 1.5"),
        ("freeze=vision", "'freeze' must be one of none|image|text, got 'vision'"),
        ("loss.name=hinge", "'loss.name' must be one of sigmoid|softmax, got 'hinge'"),
        ("logging.progress_bar=maybe", "'logging.progress_bar' must be true or false"),
        ("steps", "override must look like 'section.field=value'"),
    ],
)
def test_bad_overrides_name_the_field_and_the_value(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        apply_overrides(TrainConfig(), [override])
    assert message in str(error.value)


def test_unknown_preset_and_missing_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        build_config(preset="nope")
    with pytest.raises(ConfigError, match="does not exist"):
        build_config(files=[tmp_path / "missing.yaml"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        build_config(files=[bad])


def test_yaml_dump_holds_every_field() -> None:
    text = config_to_yaml(get_preset("b16-webli-like"))
    for section, fields in config_to_dict(TrainConfig()).items():
        assert f"{section}:" in text
        if isinstance(fields, dict):
            for field in fields:
                assert f"  {field}:" in text
