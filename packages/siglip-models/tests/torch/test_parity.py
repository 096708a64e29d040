"""PyTorch model vs transformers' SiglipModel with the same weights (HF directory on disk)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from siglip_models import config_to_hf_dict
from siglip_models import get_config
from siglip_models.torch import SiglipModel

ATOL = 1e-5


def _inputs(name: str, images: int, texts: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    config = get_config(name)
    generator = torch.Generator().manual_seed(seed)
    size = config.vision.image_size
    pixels = torch.rand(images, 3, size, size, generator=generator) * 2 - 1
    token_ids = torch.randint(
        0, config.text.vocab_size, (texts, config.text.max_length), generator=generator
    )
    return pixels, token_ids


def _assert_matches_transformers(
    ours: SiglipModel,
    reference: transformers.SiglipModel,
    pixels: torch.Tensor,
    ids: torch.Tensor,
    *,
    full_forward: bool = True,
) -> None:
    with torch.no_grad():  # one reference call carries both towers' outputs
        expected = reference(pixel_values=pixels, input_ids=ids)
        patches = ours.encode_image_patches(pixels)
        image = ours.vision_model.head(patches)  # what encode_image returns, without a 2nd pass
        text = ours.encode_text(ids)
        image_emb = image / image.norm(dim=-1, keepdim=True)
        text_emb = text / text.norm(dim=-1, keepdim=True)
        pairs = [
            (patches, expected.vision_model_output.last_hidden_state),
            (image, expected.vision_model_output.pooler_output),
            (text, expected.text_model_output.pooler_output),
            (image_emb, expected.image_embeds),
            (text_emb, expected.text_embeds),
            (ours.logits(image_emb, text_emb), expected.logits_per_image),
        ]
        if full_forward:
            got = ours(pixels, ids)
            pairs += [
                (ours.encode_image(pixels), expected.vision_model_output.pooler_output),
                (got.image_emb, expected.image_embeds),
                (got.text_emb, expected.text_embeds),
                (got.logits_per_image, expected.logits_per_image),
                (got.logits_per_text, expected.logits_per_text),
            ]
    for got_value, expected_value in pairs:
        torch.testing.assert_close(got_value, expected_value, atol=ATOL, rtol=0)


_LOADED: dict[str, SiglipModel] = {}


def _ours(directory: Path) -> SiglipModel:
    if str(directory) not in _LOADED:
        _LOADED[str(directory)] = SiglipModel.from_pretrained(directory)
    return _LOADED[str(directory)]


@pytest.mark.parametrize("name", ["tiny-test", "tiny-test-text-head"])
@settings(max_examples=8)
@given(images=st.integers(1, 3), texts=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_torch_equals_transformers_for_any_batch(
    hf_reference: Callable[[str], tuple[Path, Any]], name: str, images: int, texts: int, seed: int
) -> None:
    directory, reference = hf_reference(name)
    _assert_matches_transformers(_ours(directory), reference, *_inputs(name, images, texts, seed))


@pytest.mark.slow
def test_torch_equals_transformers_at_base_patch16_224(
    hf_reference: Callable[[str], tuple[Path, Any]],
) -> None:
    directory, reference = hf_reference("siglip-base-patch16-224")
    ours = SiglipModel.from_pretrained(directory)
    pixels, token_ids = _inputs("siglip-base-patch16-224", 1, 1, 0)
    _assert_matches_transformers(ours, reference, pixels, token_ids, full_forward=False)


def test_round_trip_through_transformers_keeps_keys_and_outputs(tmp_path: Path) -> None:
    torch.manual_seed(1)
    ours = SiglipModel("tiny-test-text-head").eval()
    ours.save_pretrained(tmp_path)
    reference, info = transformers.SiglipModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"], info
    assert not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    _assert_matches_transformers(ours, reference.eval(), *_inputs("tiny-test-text-head", 2, 3, 5))
    # ... and back: a second save is byte-identical in tensors.
    again = SiglipModel.from_pretrained(tmp_path)
    for key, tensor in ours.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], tensor, atol=0, rtol=0)


def test_saved_config_json_is_what_transformers_reads(tmp_path: Path) -> None:
    config = get_config("siglip2-so400m-patch14-384")
    hf_config = transformers.SiglipConfig.from_dict(config_to_hf_dict(config))
    assert hf_config.vision_config.hidden_size == 1152
    assert hf_config.vision_config.image_size == 384
    assert hf_config.text_config.projection_size == 1152
    assert hf_config.text_config.pad_token_id == 0
    assert hf_config.text_config.vocab_size == 256000


def test_interpolated_resolution_matches_transformers_bicubic(
    hf_reference: Callable[[str], tuple[Path, Any]],
) -> None:
    directory, reference = hf_reference("tiny-test")
    ours = SiglipModel.from_pretrained(directory, image_size=56, resize_method="bicubic")
    pixels = torch.rand(2, 3, 56, 56) * 2 - 1
    with torch.no_grad():
        expected = reference.vision_model(pixel_values=pixels, interpolate_pos_encoding=True)
        got = ours.encode_image(pixels)
    torch.testing.assert_close(got, expected.pooler_output, atol=ATOL, rtol=0)
    assert ours.config.vision.image_size == 56


def test_state_dict_has_hf_names_plus_scalar_scale_and_bias() -> None:
    ours = SiglipModel("tiny-test")
    reference = transformers.SiglipModel(
        transformers.SiglipConfig.from_dict(config_to_hf_dict(ours.config))
    )
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in ours.hf_state_dict().items()}
    assert got == expected
    assert ours.log_scale.shape == ()
    assert ours.bias.shape == ()
    assert np.isclose(ours.log_scale.item(), np.log(10))
    assert ours.bias.item() == -10.0


@pytest.mark.parametrize("name", ["tiny-test", "tiny-test-text-head"])
def test_onednn_prepacked_inference_equals_transformers(
    hf_reference: Callable[[str], tuple[Path, Any]], name: str
) -> None:
    directory, reference = hf_reference(name)
    ours = SiglipModel.from_pretrained(directory).optimize_for_cpu_inference()
    _assert_matches_transformers(ours, reference, *_inputs(name, 3, 2, 11))


@pytest.mark.parametrize(
    "name",
    [
        "siglip-base-patch16-224",
        "siglip-base-patch16-256-multilingual",
        "siglip-so400m-patch14-224",
        "siglip-so400m-patch16-256-i18n",
        "siglip2-large-patch16-512",
        "siglip2-giant-opt-patch16-384",
    ],
)
def test_parameter_count_equals_transformers_on_meta_device(name: str) -> None:
    config = get_config(name)
    with torch.device("meta"):
        reference = transformers.SiglipModel(
            transformers.SiglipConfig.from_dict(config_to_hf_dict(config))
        )
        ours = SiglipModel(config)
    expected = sum(parameter.numel() for parameter in reference.parameters())
    assert config.num_parameters() == expected
    assert sum(parameter.numel() for parameter in ours.parameters()) == expected
