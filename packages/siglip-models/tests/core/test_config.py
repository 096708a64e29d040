"""Configs: registry contents, validation, HF config.json round trip, parameter formula."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siglip_models import CheckpointError
from siglip_models import SiglipConfig
from siglip_models import TextConfig
from siglip_models import VisionConfig
from siglip_models import config_from_hf_dict
from siglip_models import config_to_hf_dict
from siglip_models import get_config
from siglip_models import hf_parameter_shapes
from siglip_models import list_configs
from siglip_models import register_config

RELEASED = [name for name in list_configs() if name.startswith("siglip")]


def test_registry_holds_every_released_shape() -> None:
    expected = {
        "siglip-base-patch16-224",
        "siglip-base-patch16-256",
        "siglip-base-patch16-384",
        "siglip-base-patch16-512",
        "siglip-base-patch16-256-multilingual",
        "siglip-large-patch16-256",
        "siglip-large-patch16-384",
        "siglip-so400m-patch14-224",
        "siglip-so400m-patch14-384",
        "siglip-so400m-patch16-256-i18n",
        "siglip2-base-patch32-256",
        "siglip2-base-patch16-224",
        "siglip2-base-patch16-256",
        "siglip2-base-patch16-384",
        "siglip2-base-patch16-512",
        "siglip2-large-patch16-256",
        "siglip2-large-patch16-384",
        "siglip2-large-patch16-512",
        "siglip2-so400m-patch14-224",
        "siglip2-so400m-patch14-384",
        "siglip2-so400m-patch16-256",
        "siglip2-so400m-patch16-384",
        "siglip2-so400m-patch16-512",
        "siglip2-giant-opt-patch16-256",
        "siglip2-giant-opt-patch16-384",
        "siglip2-base-patch16-naflex",
        "siglip2-so400m-patch16-naflex",
    }
    assert expected == set(RELEASED)
    assert {"tiny-test", "tiny-test-text-head"} <= set(list_configs())


@pytest.mark.parametrize("name", RELEASED)
def test_released_shapes_have_their_family_vocabulary_length_patch_and_head_dim(name: str) -> None:
    config = get_config(name)
    siglip2 = name.startswith("siglip2")
    multilingual = name.endswith(("i18n", "multilingual"))
    assert config.text.vocab_size == (256000 if siglip2 else 250000 if multilingual else 32000)
    assert config.text.pad_id == (0 if siglip2 else 1)
    assert config.text.max_length == (16 if name == "siglip-so400m-patch14-224" else 64)
    # NaFlex: a 16x16 position grid of 16-pixel patches, image_size = 256 by convention.
    resolution = (
        256
        if name.endswith("naflex")
        else next(int(part) for part in name.split("-") if part.isdigit())
    )
    assert config.vision.image_size == resolution
    assert config.vision.naflex == name.endswith("naflex")
    patch = next(int(part[5:]) for part in name.split("-") if part.startswith("patch"))
    assert config.vision.patch_size == patch
    head_dims = {"base": 64, "large": 64, "so400m": 72, "giant": 96}
    assert config.vision.head_dim == head_dims[name.split("-")[1]]
    assert config.vision.layer_norm_eps == config.text.layer_norm_eps == 1e-6


def test_so400m_patch14_384_sees_378_pixels() -> None:
    vision = get_config("siglip-so400m-patch14-384").vision
    assert (vision.grid_size, vision.num_patches) == (27, 729)


def test_giant_opt_text_head_maps_so400m_text_to_1536() -> None:
    config = get_config("siglip2-giant-opt-patch16-256")
    assert (config.text.width, config.text.embed_dim, config.vision.width) == (1152, 1536, 1536)


@pytest.mark.parametrize(
    ("name", "tower", "millions"),
    [
        # Counts from transformers classes on the meta device (model-spec.md section 4).
        ("siglip-base-patch16-224", "vision", 92.9),
        ("siglip-base-patch16-224", "text", 110.3),
        ("siglip2-base-patch16-224", "text", 282.3),
        ("siglip2-large-patch16-256", "vision", 316.0),
        ("siglip2-large-patch16-256", "text", 565.6),
        ("siglip2-so400m-patch14-224", "vision", 427.7),
        ("siglip2-so400m-patch14-224", "text", 707.8),
        ("siglip2-giant-opt-patch16-256", "vision", 1163.2),
        ("siglip2-giant-opt-patch16-256", "text", 708.2),
    ],
)
def test_parameter_formula_matches_published_counts(name: str, tower: str, millions: float) -> None:
    config = getattr(get_config(name), tower)
    assert config.num_parameters() / 1e6 == pytest.approx(millions, abs=0.05)


@pytest.mark.parametrize(
    "name", [*RELEASED, "tiny-test", "tiny-test-text-head", "tiny-test-naflex"]
)
def test_parameter_formula_equals_sum_of_layout_shapes(name: str) -> None:
    config = get_config(name)
    total = 0
    for shape in hf_parameter_shapes(config).values():
        count = 1
        for size in shape:
            count *= size
        total += count
    assert total == config.num_parameters()


@pytest.mark.parametrize(
    "name", [*RELEASED, "tiny-test", "tiny-test-text-head", "tiny-test-naflex"]
)
def test_hf_config_dict_round_trips_through_json(name: str) -> None:
    config = get_config(name)
    assert config_from_hf_dict(json.loads(json.dumps(config_to_hf_dict(config)))) == config


def test_hub_config_with_defaults_omitted_reads_as_base_224() -> None:
    # What google/siglip-base-patch16-224's config.json stores: only non-default values.
    hub = {
        "architectures": ["SiglipModel"],
        "model_type": "siglip",
        "text_config": {"model_type": "siglip_text_model", "vocab_size": 32000},
        "vision_config": {"model_type": "siglip_vision_model", "patch_size": 16},
    }
    assert config_from_hf_dict(hub) == get_config("siglip-base-patch16-224")


def test_hub_naflex_config_with_defaults_omitted_reads_as_base_naflex() -> None:
    hub = {
        "architectures": ["Siglip2Model"],
        "model_type": "siglip2",
        "text_config": {"vocab_size": 256000, "pad_token_id": 0},
        "vision_config": {"model_type": "siglip2_vision_model"},
    }
    config = config_from_hf_dict(hub)
    assert config == get_config("siglip2-base-patch16-naflex")
    assert (config.vision.grid_size, config.vision.num_patches) == (16, 256)


def test_unknown_model_types_and_non_square_naflex_grids_are_refused() -> None:
    with pytest.raises(CheckpointError, match=r"'siglip' \(fixed resolution\) or 'siglip2'"):
        config_from_hf_dict({"model_type": "clip", "text_config": {}, "vision_config": {}})
    with pytest.raises(CheckpointError, match="num_patches must be a square"):
        config_from_hf_dict(
            {"model_type": "siglip2", "text_config": {}, "vision_config": {"num_patches": 200}}
        )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("width", 30, "divisible"),
        ("depth", 0, "depth must be a positive int"),
        ("patch_size", 64, "must not exceed"),
        ("num_heads", 2.0, "num_heads must be a positive int"),
    ],
)
def test_bad_vision_config_names_the_field(field: str, value: object, message: str) -> None:
    fields = dataclasses.asdict(get_config("tiny-test").vision) | {field: value}
    with pytest.raises(ValueError, match=message):
        VisionConfig(**fields)


def test_text_embed_dim_must_equal_image_width() -> None:
    tiny = get_config("tiny-test")
    with pytest.raises(ValueError, match=r"text\.embed_dim must equal vision\.width"):
        SiglipConfig(vision=tiny.vision, text=dataclasses.replace(tiny.text, embed_dim=16))


def test_text_pad_id_must_be_in_vocabulary() -> None:
    with pytest.raises(ValueError, match="pad_id"):
        TextConfig(
            vocab_size=10,
            max_length=4,
            width=8,
            depth=1,
            num_heads=2,
            mlp_dim=8,
            embed_dim=8,
            pad_id=10,
        )


def test_unknown_name_lists_the_registered_ones() -> None:
    with pytest.raises(KeyError, match="siglip-base-patch16-224"):
        get_config("siglip-base-patch16-225")


def test_register_refuses_to_silently_replace() -> None:
    register_config("test-registry-entry", get_config("tiny-test"))
    register_config("test-registry-entry", get_config("tiny-test"))  # same config: fine
    with pytest.raises(ValueError, match="overwrite=True"):
        register_config("test-registry-entry", get_config("tiny-test-text-head"))
    register_config("test-registry-entry", get_config("tiny-test-text-head"), overwrite=True)
    assert get_config("test-registry-entry") == get_config("tiny-test-text-head")


@given(image_size=st.integers(8, 600), patch_size=st.sampled_from([7, 8, 14, 16, 32]))
def test_num_patches_is_floor_grid_squared(image_size: int, patch_size: int) -> None:
    if patch_size > image_size:
        return
    vision = dataclasses.replace(
        get_config("tiny-test").vision, image_size=image_size, patch_size=patch_size
    )
    assert vision.num_patches == (image_size // patch_size) ** 2


def test_replace_accepts_tower_dicts_and_dict_round_trip() -> None:
    config = get_config("tiny-test").replace(vision={"image_size": 48}, bias_init=-5.0)
    assert config.vision.image_size == 48
    assert config.bias_init == -5.0
    assert SiglipConfig.from_dict(config.to_dict()) == config


def test_saved_config_carries_the_new_init_names_and_old_names_still_read(
    tmp_path: Path,
) -> None:
    from siglip_models import read_hf_config

    config = get_config("tiny-test").replace(log_scale_init=1.5, bias_init=-3.0)
    saved = config_to_hf_dict(config)
    assert saved["siglip_models"] == {"log_scale_init": 1.5, "bias_init": -3.0, "lowercase": True}
    # A config.json written before the rename.
    saved["siglip_models"] = {"init_log_scale": 1.5, "init_bias": -3.0, "lowercase": True}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert read_hf_config(tmp_path) == config
    old_dict = config.to_dict()
    old_dict["init_log_scale"] = old_dict.pop("log_scale_init")
    old_dict["init_bias"] = old_dict.pop("bias_init")
    assert SiglipConfig.from_dict(old_dict) == config
