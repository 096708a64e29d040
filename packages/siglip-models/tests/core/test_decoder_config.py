"""TextDecoderConfig: derived from a two-tower config (half the text depth, its width), checked
fields, a dict round trip, and a parameter count equal to the torch module's."""

from __future__ import annotations

import importlib.util

import pytest

from siglip_models import TextDecoderConfig
from siglip_models import get_config


@pytest.mark.parametrize(
    ("name", "depth", "width"),
    [
        ("siglip2-base-patch16-256", 6, 768),
        ("siglip2-large-patch16-256", 12, 1024),
        ("siglip2-so400m-patch14-224", 13, 1152),
        ("tiny-test", 1, 32),
    ],
)
def test_from_siglip_takes_half_the_text_depth_and_its_width(
    name: str, depth: int, width: int
) -> None:
    siglip = get_config(name)
    config = TextDecoderConfig.from_siglip(siglip)
    assert (config.depth, config.width) == (depth, width)
    assert config.num_heads == siglip.text.num_heads
    assert config.mlp_dim == siglip.text.mlp_dim
    assert config.vocab_size == siglip.text.vocab_size
    assert config.max_length == siglip.text.max_length
    assert config.image_width == siglip.vision.width
    assert (config.mask_id, config.begin_id) == (config.vocab_size, config.vocab_size + 1)


def test_overrides_and_the_dict_round_trip() -> None:
    config = TextDecoderConfig.from_siglip(
        get_config("tiny-test"), max_length=40, parallel_probability=0.75
    )
    assert (config.max_length, config.parallel_probability) == (40, 0.75)
    assert TextDecoderConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"depth": 0}, "TextDecoderConfig.depth must be a positive int"),
        ({"num_heads": 5}, "must be divisible by TextDecoderConfig.num_heads"),
        ({"parallel_probability": 1.5}, "parallel_probability must be a float in [0, 1]"),
        ({"image_width": -1}, "TextDecoderConfig.image_width must be a positive int"),
    ],
)
def test_bad_fields_raise_naming_the_field(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        TextDecoderConfig.from_siglip(get_config("tiny-test"), **changes)
    assert message in str(raised.value)


def test_from_siglip_refuses_other_configs() -> None:
    with pytest.raises(TypeError, match="config must be a SiglipConfig"):
        TextDecoderConfig.from_siglip(get_config("tiny-test").text)  # type: ignore[arg-type]


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="counted against torch")
@pytest.mark.parametrize("image_width", [32, 48])
def test_num_parameters_counts_the_torch_module(image_width: int) -> None:
    from siglip_models.torch import SiglipTextDecoder

    config = TextDecoderConfig.from_siglip(get_config("tiny-test"), image_width=image_width)
    module = SiglipTextDecoder(config)
    assert config.num_parameters() == sum(p.numel() for p in module.parameters())
