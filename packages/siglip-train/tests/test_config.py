"""Config: files, overrides and presets round-trip; bad input names the field."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siglip_train import ConfigError
from siglip_train import TrainConfig
from siglip_train import apply_overrides
from siglip_train import build_config
from siglip_train import config_from_dict
from siglip_train import get_preset
from siglip_train import list_presets
from siglip_train import save_config
from siglip_train._config import config_to_dict
from siglip_train._config import config_to_yaml


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_round_trips_through_yaml_and_json(name: str, tmp_path: Path) -> None:
    config = get_preset(name)
    for suffix in (".yaml", ".json"):
        path = tmp_path / f"config{suffix}"
        save_config(config, path)
        assert build_config(files=[path]) == config


def test_builtin_presets_exist_and_lit_locks_the_image_tower() -> None:
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
        ("optimizer.lrr=1", "known fields there: ['beta1', 'beta2', 'eps'"),
        ("stepz=1", "unknown config field(s) ['stepz']"),
        ("steps=1.5", "'steps' must be an integer, got 1.5"),
        ("steps=many", "'steps' must be an integer, got 'many'"),
        ("steps=true", "'steps' must be an integer, got True"),
        ("freeze=vision", "'freeze' must be one of none|image|text, got 'vision'"),
        ("loss.name=hinge", "'loss.name' must be one of sigmoid|softmax, got 'hinge'"),
        ("device=tpu", "'device' must be one of auto|cpu|cuda, got 'tpu'"),
        ("logging.progress_bar=maybe", "'logging.progress_bar' must be true or false, got 'maybe'"),
        ("optimizer.lr=fast", "'optimizer.lr' must be a number, got 'fast'"),
        ("optimizer.lr=.inf", "'optimizer.lr' must be a finite number, got inf"),
        ("optimizer.lr=inf", "'optimizer.lr' must be a finite number, got inf"),
        ("model.bias_init=nan", "'model.bias_init' must be a finite number, got nan"),
        ("model.init_from=[a]", "'model.init_from' must be a string or null, got ['a']"),
        ("data.shards={a: 1}", "'data.shards' must be a list of strings, got {'a': 1}"),
        ("optimizer=3", "config section 'optimizer' must be a mapping, got 3"),
        (
            "loss.positives=all",
            "'loss.positives' must be one of diagonal|caption|group_key, got 'all'",
        ),
        (
            "loss.positive_weighting=mean",
            "'loss.positive_weighting' must be one of uniform|inverse_count, got 'mean'",
        ),
        ("data.captions_per_image=-1", "'data.captions_per_image' must be >= 0, got -1"),
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


def test_python_built_configs_are_checked_against_the_annotations() -> None:
    with pytest.raises(
        ConfigError, match=re.escape("'freeze' must be one of none|image|text, got 'imag'")
    ):
        TrainConfig(freeze="imag")  # type: ignore[arg-type]
    config = TrainConfig()
    config.optimizer.lr = math.inf
    with pytest.raises(ConfigError, match=r"'optimizer\.lr' must be a finite number, got inf"):
        apply_overrides(config, [])


def test_numbers_written_as_text_are_cast_to_the_field_type() -> None:
    config = config_from_dict(
        {
            "steps": "20",
            "optimizer": {"lr": "3e-4", "warmup_steps": 2.0},
            "data": {"shards": "a.tar,b.tar"},
        }
    )
    assert (config.steps, config.optimizer.lr, config.optimizer.warmup_steps) == (20, 3e-4, 2)
    assert isinstance(config.optimizer.warmup_steps, int)
    assert config.data.shards == ["a.tar", "b.tar"]
    assert apply_overrides(TrainConfig(), ["optimizer.lr=1"]).optimizer.lr == 1.0


def test_old_init_scale_and_init_bias_keys_are_read_as_the_new_ones_with_a_warning(
    tmp_path: Path,
) -> None:
    old = tmp_path / "old.yaml"
    old.write_text("model:\n  init_scale: 10.0\n  init_bias: -5.0\n")
    with pytest.warns(FutureWarning) as warned:
        config = build_config(files=[old])
    assert [str(w.message).split(" (")[0] for w in warned] == [
        "config field 'model.init_scale' is now 'model.log_scale_init'",
        "config field 'model.init_bias' is now 'model.bias_init'",
    ]
    assert config.model.log_scale_init == math.log(10.0)
    assert config.model.bias_init == -5.0
    with pytest.warns(FutureWarning, match="'model.init_bias' is now 'model.bias_init'"):
        assert apply_overrides(config, ["model.init_bias=-3"]).model.bias_init == -3.0


def test_old_and_new_name_of_one_field_together_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"keep only 'model\.log_scale_init'"):
        config_from_dict({"model": {"init_scale": 10.0, "log_scale_init": 2.0}})
    with pytest.raises(ConfigError, match=r"'model\.init_scale' .* must be a positive number"):
        config_from_dict({"model": {"init_scale": -1.0}})


def test_demo_fields_of_old_configs_are_dropped_with_a_warning_and_demo_source_refused() -> None:
    old = {"data": {"source": "webdataset", "root": "runs/data", "augment": True, "batch_size": 8}}
    with pytest.warns(FutureWarning, match=r"\['data.source', 'data.root', 'data.augment'\]"):
        assert config_from_dict(old).data.batch_size == 8
    with pytest.raises(ConfigError, match="run the demo with `siglip-train demo`"):
        config_from_dict({"data": {"source": "demo"}})


def test_tiny_cpu_preset_names_no_data_and_a_registered_model() -> None:
    import siglip_models

    config = get_preset("tiny-cpu")
    assert config.data.shards == []
    assert config.model.name in siglip_models.list_configs()
    assert config.optimizer.weight_decay == 0.1  # PyTorch units: big_vision wd 1e-4 at lr 1e-3


def test_several_positives_are_refused_for_the_softmax_loss() -> None:
    with pytest.raises(
        ConfigError, match=r"'loss.positives' must be 'diagonal' with loss.name=softmax"
    ):
        apply_overrides(TrainConfig(), ["loss.name=softmax", "loss.positives=caption"])
    config = apply_overrides(TrainConfig(), ["loss.positives=caption", "data.captions_per_image=5"])
    assert (config.loss.positives, config.data.captions_per_image) == ("caption", 5)
