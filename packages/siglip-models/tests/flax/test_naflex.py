"""SigLIP 2 NaFlex in Flax NNX vs transformers' Siglip2Model and vs our PyTorch model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from siglip_models.flax import SiglipModel
from siglip_models.torch import SiglipModel as TorchSiglipModel

ATOL = 1e-4
NAME = "tiny-test-naflex"
# See tests/torch/test_naflex.py: rows shrunk and columns enlarged vs the 4x4 grid, one row,
# more than 64 patches on a side, the grid itself, both enlarged.
MIXED_SHAPES = [(2, 7), (1, 9), (1, 70), (70, 1), (4, 4), (9, 8), (3, 1)]


def _reference_outputs(reference: Any, inputs: tuple[np.ndarray, ...]) -> Any:
    patches, mask, shapes = inputs
    with torch.no_grad():
        return reference.vision_model(
            pixel_values=torch.from_numpy(patches),
            pixel_attention_mask=torch.from_numpy(mask.astype(np.int32)),
            spatial_shapes=torch.from_numpy(shapes.astype(np.int64)),
        )


def _assert_valid_tokens_close(
    tokens: Any, expected: np.ndarray, shapes: np.ndarray, atol: float
) -> None:
    tokens = np.asarray(tokens)
    for image, (rows, cols) in enumerate(shapes.tolist()):
        valid = rows * cols
        np.testing.assert_allclose(tokens[image, :valid], expected[image, :valid], atol=atol)
        assert not tokens[image, valid:].any()


@nnx.jit
def _encode(module: SiglipModel, patches: jax.Array, mask: jax.Array, shapes: jax.Array) -> Any:
    return (
        module.encode_image_naflex(patches, mask, shapes),
        module.encode_image_patches_naflex(patches, mask, shapes),
    )


def test_flax_naflex_equals_transformers_on_mixed_aspect_ratios_under_jit(
    hf_reference: Callable[[str], tuple[Path, Any]], naflex_batch: Callable[..., Any]
) -> None:
    directory, reference = hf_reference(NAME)
    model = SiglipModel.from_pretrained(directory)
    # One compilation (the length is static) serves batches of other grids, > 64 per side too.
    batches = (MIXED_SHAPES[:4], MIXED_SHAPES[3:])
    for seed, shapes in enumerate(batches):
        inputs = naflex_batch(shapes, length=72, seed=seed)
        expected = _reference_outputs(reference, inputs)
        pooled, tokens = _encode(model, *(jnp.asarray(value) for value in inputs))
        np.testing.assert_allclose(pooled, expected.pooler_output.numpy(), atol=ATOL)
        _assert_valid_tokens_close(tokens, expected.last_hidden_state.numpy(), inputs[2], ATOL)
        assert bool(jnp.all(jnp.isfinite(pooled)))


def test_flax_and_torch_naflex_read_and_write_the_same_files(
    tmp_path: Path, naflex_batch: Callable[..., Any]
) -> None:
    model = SiglipModel(NAME, rngs=nnx.Rngs(5))
    model.save_pretrained(tmp_path)
    reference, info = transformers.Siglip2Model.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"], info
    assert not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    torch_model = TorchSiglipModel.from_pretrained(tmp_path)
    # The jitted function and length of the parity test: its compilation serves here too.
    inputs = naflex_batch([(3, 5), (1, 12)], length=72, seed=1)
    expected = _reference_outputs(reference.eval(), inputs).pooler_output.numpy()
    reloaded = SiglipModel.from_pretrained(tmp_path)  # Flax reads what it wrote
    pooled, _ = _encode(reloaded, *(jnp.asarray(value) for value in inputs))
    np.testing.assert_allclose(pooled, expected, atol=ATOL)
    with torch.no_grad():
        torch_pooled = torch_model.encode_image_naflex(
            *(torch.from_numpy(value) for value in inputs)
        )
    np.testing.assert_allclose(torch_pooled.numpy(), expected, atol=1e-5)


def test_flax_naflex_inputs_are_checked(naflex_batch: Callable[..., Any]) -> None:
    model = SiglipModel(NAME)
    patches, mask, shapes = (jnp.asarray(v) for v in naflex_batch([(2, 3)], length=8, seed=0))
    with pytest.raises(ValueError, match=r"3 \* patch_size\*\*2 = 48"):
        model.encode_image_naflex(patches[..., :12], mask, shapes)
    with pytest.raises(ValueError, match=r"at least one patch per side"):
        model.encode_image_naflex(patches, mask, jnp.array([[0, 3]]))
    with pytest.raises(ValueError, match=r"holds only 8"):
        model.encode_image_naflex(patches, mask, jnp.array([[3, 3]]))
    with pytest.raises(ValueError, match=r"not a prefix of ones"):
        model.encode_image_naflex(patches, mask.at[0, 0].set(False), shapes)
    with pytest.raises(ValueError, match=r"this is a SigLIP 2 NaFlex model"):
        model.encode_image(jnp.zeros((1, 16, 16, 3)))
    with pytest.raises(ValueError, match=r"this is a fixed-resolution model"):
        SiglipModel("tiny-test").encode_image_naflex(patches, mask, shapes)
