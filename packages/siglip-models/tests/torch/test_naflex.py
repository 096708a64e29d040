"""SigLIP 2 NaFlex in PyTorch vs transformers' Siglip2Model (same files on disk), and its checks."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from siglip_models import CheckpointError
from siglip_models import config_to_hf_dict
from siglip_models import get_config
from siglip_models import hf_parameter_shapes
from siglip_models import read_big_vision_npz
from siglip_models import save_big_vision_npz
from siglip_models.torch import SiglipModel
from siglip_models.torch._naflex import resized_position_embedding

ATOL = 1e-5
NAME = "tiny-test-naflex"  # 4x4 position grid, 4-pixel patches (48 numbers a patch)
FEATURES = 48
# Mixed aspect ratios against the 4x4 grid: rows shrunk and columns enlarged (2x7), a single row
# (1x9), more than 64 patches on a side (big_vision's canvas would give NaN), the grid itself,
# and both sides enlarged.
MIXED_SHAPES = [(2, 7), (1, 9), (1, 70), (70, 1), (4, 4), (9, 8), (3, 1)]


def naflex_inputs(
    shapes: list[tuple[int, int]], length: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random patches for images of the given grids, padded to ``length`` (padding random too)."""
    generator = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(shapes, dtype=torch.int64)
    counts = spatial_shapes.prod(dim=1)
    patch_mask = torch.arange(length)[None, :] < counts[:, None]
    patches = torch.rand(len(shapes), length, FEATURES, generator=generator) * 2 - 1
    return patches, patch_mask, spatial_shapes


def _assert_matches_transformers(
    ours: SiglipModel,
    reference: Any,
    patches: torch.Tensor,
    patch_mask: torch.Tensor,
    spatial_shapes: torch.Tensor,
) -> None:
    token_ids = torch.randint(0, 100, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(
            input_ids=token_ids,
            pixel_values=patches,
            pixel_attention_mask=patch_mask.to(torch.int32),
            spatial_shapes=spatial_shapes,
        )
        pooled = ours.encode_image_naflex(patches, patch_mask, spatial_shapes)
        tokens = ours.encode_image_patches_naflex(patches, patch_mask, spatial_shapes)
        text = ours.encode_text(token_ids)
    torch.testing.assert_close(
        pooled, expected.vision_model_output.pooler_output, atol=ATOL, rtol=0
    )
    image_emb = pooled / pooled.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(image_emb, expected.image_embeds, atol=ATOL, rtol=0)
    torch.testing.assert_close(text, expected.text_model_output.pooler_output, atol=ATOL, rtol=0)
    hidden = expected.vision_model_output.last_hidden_state
    # Only valid tokens: transformers masks keys only, so its padding rows are not meaningful.
    for image, (rows, cols) in enumerate(spatial_shapes.tolist()):
        valid = rows * cols
        torch.testing.assert_close(tokens[image, :valid], hidden[image, :valid], atol=ATOL, rtol=0)
        assert not tokens[image, valid:].any()  # our padding rows are zero


_LOADED: dict[str, SiglipModel] = {}


def _ours(directory: Path) -> SiglipModel:
    if str(directory) not in _LOADED:
        _LOADED[str(directory)] = SiglipModel.from_pretrained(directory)
    return _LOADED[str(directory)]


def test_torch_naflex_equals_transformers_on_mixed_aspect_ratios(
    hf_reference: Callable[[str], tuple[Path, Any]],
) -> None:
    directory, reference = hf_reference(NAME)
    _assert_matches_transformers(
        _ours(directory), reference, *naflex_inputs(MIXED_SHAPES, length=72, seed=0)
    )


@settings(max_examples=8)
@given(
    shapes=st.lists(
        st.tuples(st.integers(1, 12), st.integers(1, 12)).filter(lambda s: s[0] * s[1] <= 40),
        min_size=1,
        max_size=3,
    ),
    seed=st.integers(0, 2**16),
)
def test_torch_naflex_equals_transformers_for_any_grids(
    hf_reference: Callable[[str], tuple[Path, Any]], shapes: list[tuple[int, int]], seed: int
) -> None:
    directory, reference = hf_reference(NAME)
    _assert_matches_transformers(
        _ours(directory), reference, *naflex_inputs(shapes, length=40, seed=seed)
    )


@settings(max_examples=8)
@given(seed=st.integers(0, 2**16), length=st.integers(12, 30))
def test_padding_values_and_length_never_change_the_embedding(seed: int, length: int) -> None:
    torch.manual_seed(3)
    model = SiglipModel(NAME).eval()
    shapes = [(3, 4), (1, 5)]
    patches, mask, spatial_shapes = naflex_inputs(shapes, length=length, seed=seed)
    noisy = torch.where(mask[..., None], patches, torch.randn_like(patches) * 100)
    short = patches[:, :12]
    with torch.no_grad():
        expected = model.encode_image_naflex(short, mask[:, :12], spatial_shapes)
        torch.testing.assert_close(
            model.encode_image_naflex(noisy, mask, spatial_shapes), expected, atol=ATOL, rtol=0
        )


def test_round_trip_through_transformers_keeps_keys_and_outputs(tmp_path: Path) -> None:
    torch.manual_seed(1)
    ours = SiglipModel(NAME).eval()
    ours.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "siglip2"
    reference, info = transformers.Siglip2Model.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"], info
    assert not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    _assert_matches_transformers(
        ours, reference.eval(), *naflex_inputs([(2, 7), (5, 1)], length=16, seed=4)
    )
    again = SiglipModel.from_pretrained(tmp_path)
    assert again.config == ours.config
    for key, tensor in ours.state_dict().items():
        assert torch.equal(again.state_dict()[key], tensor), key


@pytest.mark.parametrize("name", ["siglip2-base-patch16-naflex", "siglip2-so400m-patch16-naflex"])
def test_parameter_count_equals_transformers_on_meta_device(name: str) -> None:
    config = get_config(name)
    with torch.device("meta"):
        reference = transformers.Siglip2Model(
            transformers.Siglip2Config.from_dict(config_to_hf_dict(config))
        )
        ours = SiglipModel(config)
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert hf_parameter_shapes(config) == expected
    total = sum(parameter.numel() for parameter in reference.parameters())
    assert config.num_parameters() == total
    assert sum(parameter.numel() for parameter in ours.parameters()) == total
    assert reference.config.vision_config.num_patches == 256


def _interpolate_reference(table: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """The position grid resized by torch's own antialiased bilinear interpolation."""
    grid = math.isqrt(table.shape[0])
    image = table.T.reshape(1, -1, grid, grid).double()
    resized = F.interpolate(
        image, size=(rows, cols), mode="bilinear", align_corners=False, antialias=True
    )
    return resized[0].reshape(table.shape[1], -1).T


@pytest.mark.parametrize(
    "rows_cols", [(1, 1), (1, 256), (7, 3), (16, 16), (100, 10), (2, 70), (33, 5)]
)
def test_position_resize_equals_antialiased_bilinear_interpolation(
    rows_cols: tuple[int, int],
) -> None:
    rows, cols = rows_cols
    table = torch.randn(256, 8, generator=torch.Generator().manual_seed(0))
    length = rows * cols + 3
    resized = resized_position_embedding(table, torch.tensor([[rows, cols]]), length)[0]
    expected = _interpolate_reference(table, rows, cols)
    torch.testing.assert_close(resized[: rows * cols].double(), expected, atol=5e-6, rtol=0)
    # Padding takes cell (0, 0), the first output of the resized grid.
    torch.testing.assert_close(resized[rows * cols :], resized[:1].expand(3, -1), atol=0, rtol=0)
    assert torch.isfinite(resized).all()


def test_cpu_inference_packing_keeps_the_naflex_outputs(
    hf_reference: Callable[[str], tuple[Path, Any]],
) -> None:
    directory, reference = hf_reference(NAME)
    packed = SiglipModel.from_pretrained(directory).optimize_for_cpu_inference()
    _assert_matches_transformers(
        packed, reference, *naflex_inputs([(2, 7), (1, 9)], length=20, seed=5)
    )


def test_gradient_checkpointing_gives_the_same_naflex_gradients() -> None:
    torch.manual_seed(0)
    model = SiglipModel(NAME).train()
    inputs = naflex_inputs([(2, 3), (4, 2)], length=10, seed=2)

    def gradients() -> dict[str, torch.Tensor]:
        model.zero_grad()
        model.encode_image_naflex(*inputs).square().sum().backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    plain = gradients()
    model.set_gradient_checkpointing(True)
    recomputed = gradients()
    assert plain.keys() == recomputed.keys()
    assert "vision_model.embeddings.position_embedding.weight" in plain
    for name, grad in plain.items():
        torch.testing.assert_close(recomputed[name], grad, atol=1e-6, rtol=1e-5, msg=name)


def test_big_vision_naflex_npz_loads_like_the_hf_directory(
    hf_reference: Callable[[str], tuple[Path, Any]], tmp_path: Path
) -> None:
    directory, _ = hf_reference(NAME)
    from_hf = _ours(directory)
    arrays = {key: value.numpy() for key, value in from_hf.hf_state_dict().items()}
    save_big_vision_npz(tmp_path / "naflex.npz", arrays, from_hf.config, stacked=True)
    with np.load(tmp_path / "naflex.npz") as archive:
        # naflex_vit's layout: a Dense patch kernel and a (grid, grid, width) position grid.
        assert archive["params/img/embedding/kernel"].shape == (FEATURES, 32)
        assert archive["params/img/pos_embedding"].shape == (4, 4, 32)
    config, _ = read_big_vision_npz(tmp_path / "naflex.npz")
    assert config == from_hf.config
    from_npz = SiglipModel.from_pretrained(tmp_path / "naflex.npz")
    for key, tensor in from_hf.state_dict().items():
        assert torch.equal(from_npz.state_dict()[key], tensor), key


def test_bad_naflex_inputs_get_clear_errors() -> None:
    model = SiglipModel(NAME).eval()
    patches, mask, shapes = naflex_inputs([(2, 3), (1, 4)], length=8, seed=0)
    with pytest.raises(ValueError, match=r"3 \* patch_size\*\*2 = 48"):
        model.encode_image_naflex(patches[..., :47], mask, shapes)
    with pytest.raises(ValueError, match=r"image 0 has 9 valid patches .* holds only 8"):
        model.encode_image_naflex(patches, mask, torch.tensor([[3, 3], [1, 4]]))
    with pytest.raises(ValueError, match=r"spatial_shapes\[1\] = \[0, 4\]: .* at least one patch"):
        model.encode_image_naflex(patches, mask, torch.tensor([[2, 3], [0, 4]]))
    holes = mask.clone()
    holes[0, 1] = False
    with pytest.raises(ValueError, match=r"patch_mask\[0\] is not a prefix of ones"):
        model.encode_image_naflex(patches, holes, shapes)
    with pytest.raises(ValueError, match=r"patch_mask has 6 valid patches but spatial_shapes"):
        model.encode_image_naflex(patches, mask, torch.tensor([[3, 1], [1, 4]]))
    with pytest.raises(ValueError, match=r"this is a SigLIP 2 NaFlex model"):
        model.encode_image(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"this is a SigLIP 2 NaFlex model"):
        model.encode_image_patches(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"resizes its position grid"):
        model.resize_position_embedding(32)
    fixed = SiglipModel("tiny-test").eval()
    with pytest.raises(ValueError, match=r"this is a fixed-resolution model"):
        fixed.encode_image_naflex(patches, mask, shapes)


def test_naflex_and_fixed_checkpoints_do_not_load_into_each_other(
    hf_reference: Callable[[str], tuple[Path, Any]], tmp_path: Path
) -> None:
    directory, _ = hf_reference(NAME)
    naflex = _ours(directory)
    fixed = SiglipModel("tiny-test").eval()
    fixed_shaped = get_config("tiny-test").replace(vision={"naflex": True})
    with pytest.raises(
        CheckpointError, match=r"a NaFlex checkpoint .* do not load into each other"
    ):
        SiglipModel(naflex.config.replace(vision={"naflex": False})).load_hf_state_dict(
            naflex.hf_state_dict()
        )
    with pytest.raises(CheckpointError, match=r"fixed-resolution checkpoint .* NaFlex config"):
        SiglipModel(fixed_shaped).load_hf_state_dict(fixed.hf_state_dict())
    # A config.json edited to claim a fixed-resolution model: the weights say otherwise.
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy)
    config = json.loads((copy / "config.json").read_text())
    config["model_type"] = "siglip"
    config["vision_config"]["image_size"] = 16
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"NaFlex checkpoint"):
        SiglipModel.from_pretrained(copy)
