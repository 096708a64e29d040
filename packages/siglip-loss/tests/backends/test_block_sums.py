"""The backend's block primitive ``sigmoid_block_sums`` against the numpy float64 oracle."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import pytest

from siglip_loss.numpy import sigmoid_loss_and_grads
from siglip_loss.testing import ids_to_backend


def block_sums_of(backend: Any) -> Any:
    return importlib.import_module(f"siglip_loss.{backend.name}._fused").sigmoid_block_sums


def _negative_block_oracle(image: np.ndarray, text: np.ndarray, scale: float, bias: float):
    """Sum of softplus(u) over a block of negatives, and its gradients, in float64."""
    cosine = image @ text.T
    logits = scale * cosine + bias
    sigmoid = 0.5 * (1.0 + np.tanh(0.5 * logits))
    return (
        float(np.logaddexp(0.0, logits).sum()),
        scale * sigmoid @ text,
        scale * sigmoid.T @ image,
        float(np.sum(sigmoid * cosine)),
        float(np.sum(sigmoid)),
    )


@pytest.mark.parametrize(
    ("batch", "dim", "block_size"), [(1, 3, 4), (7, 5, 3), (16, 8, 16), (33, 9, 10)]
)
def test_block_sums_with_diagonal_positives_equal_batch_times_oracle(
    backend: Any, batch: int, dim: int, block_size: int
) -> None:
    rng = np.random.default_rng(batch)
    image, text = rng.normal(size=(batch, dim)), rng.normal(size=(batch, dim))
    oracle = sigmoid_loss_and_grads(image, text, scale=3.0, bias=-2.0)
    sigmoid_block_sums = block_sums_of(backend)

    def block_sums(image: Any, text: Any, scale: Any, bias: Any) -> Any:
        return sigmoid_block_sums(
            image,
            text,
            scale=scale,
            bias=bias,
            positive_offset=0,
            block_size=block_size,
            compute_grads=True,
        )

    sums = backend.jit(block_sums)(
        backend.array(image, "float32"),
        backend.array(text, "float32"),
        backend.array(np.float32(3.0)),
        backend.array(np.float32(-2.0)),
    )
    for value in sums:
        assert value is not None
        assert backend.dtype_name(value) == "float32"
    np.testing.assert_allclose(float(sums.loss_sum), batch * oracle.loss, rtol=1e-5)
    np.testing.assert_allclose(
        backend.to_numpy(sums.grad_image), batch * oracle.grad_image_emb, rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        backend.to_numpy(sums.grad_text), batch * oracle.grad_text_emb, rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        float(sums.grad_scale), batch * oracle.grad_scale, rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        float(sums.grad_bias), batch * oracle.grad_bias, rtol=1e-4, atol=1e-5
    )


def test_block_sums_of_float64_inputs_are_float64_to_the_oracles_precision(backend: Any) -> None:
    rng = np.random.default_rng(4)
    image, text = rng.normal(size=(11, 6)), rng.normal(size=(11, 6))
    oracle = sigmoid_loss_and_grads(image, text, scale=3.0, bias=-2.0)
    with backend.x64():
        sums = block_sums_of(backend)(
            backend.array(image, "float64"),
            backend.array(text, "float64"),
            scale=3.0,
            bias=-2.0,
            positive_offset=0,
            block_size=4,
            compute_grads=True,
        )
    expected = [oracle.loss, oracle.grad_image_emb, oracle.grad_text_emb]
    expected += [oracle.grad_scale, oracle.grad_bias]
    for value, want in zip(sums, expected, strict=True):
        assert backend.dtype_name(value) == "float64"
        np.testing.assert_allclose(backend.to_numpy(value), 11 * np.asarray(want), rtol=1e-12)


def test_block_sums_of_negative_only_rectangular_block_match_oracle(backend: Any) -> None:
    rng = np.random.default_rng(1)
    image, text = rng.normal(size=(5, 4)), rng.normal(size=(9, 4))
    image_bf16 = backend.array(image, "bfloat16")
    text_bf16 = backend.array(text, "bfloat16")
    sums = block_sums_of(backend)(
        image_bf16,
        text_bf16,
        scale=backend.array(np.float32(2.0)),
        bias=-1.0,
        positive_offset=None,
        block_size=4,
        compute_grads=True,
    )
    # The oracle sees the bfloat16-rounded inputs.
    expected = _negative_block_oracle(
        backend.to_numpy(image_bf16), backend.to_numpy(text_bf16), 2.0, -1.0
    )
    got = [sums.loss_sum, sums.grad_image, sums.grad_text, sums.grad_scale, sums.grad_bias]
    for value, want in zip(got, expected, strict=True):
        assert value is not None
        np.testing.assert_allclose(backend.to_numpy(value), want, rtol=1e-4, atol=1e-5)


def test_block_sums_offset_places_positive_at_column_row_plus_offset(backend: Any) -> None:
    rng = np.random.default_rng(2)
    image, text = rng.normal(size=(3, 4)), rng.normal(size=(8, 4))
    offset = 4
    logits = 1.5 * image @ text.T + 0.5
    labels = -np.ones_like(logits)
    labels[np.arange(3), np.arange(3) + offset] = 1.0
    expected = float(np.logaddexp(0.0, -labels * logits).sum())
    for block_size in (1, 2, 3, 8):
        sums = block_sums_of(backend)(
            backend.array(image, "float32"),
            backend.array(text, "float32"),
            scale=1.5,
            bias=0.5,
            positive_offset=offset,
            block_size=block_size,
            compute_grads=False,
        )
        np.testing.assert_allclose(float(sums.loss_sum), expected, rtol=1e-5)
        assert sums.grad_image is None
        assert sums.grad_text is None
        assert sums.grad_scale is None
        assert sums.grad_bias is None


def test_block_sums_without_grads_returns_only_the_loss(backend: Any) -> None:
    ones = backend.array(np.ones((5, 2), np.float32))
    sums = block_sums_of(backend)(
        ones, ones, scale=1.0, bias=0.0, positive_offset=None, block_size=2, compute_grads=False
    )
    np.testing.assert_allclose(float(sums.loss_sum), 25 * np.logaddexp(0.0, 2.0), rtol=1e-6)
    assert sums.grad_image is None
    assert sums.grad_text is None
    assert sums.grad_scale is None
    assert sums.grad_bias is None


@pytest.mark.parametrize(("block_size", "error"), [(0, ValueError), (2.0, TypeError)])
def test_block_sums_rejects_bad_block_size(backend: Any, block_size: Any, error: type) -> None:
    zeros = backend.array(np.zeros((2, 2), np.float32))
    with pytest.raises(error, match="block_size"):
        block_sums_of(backend)(
            zeros,
            zeros,
            scale=1.0,
            bias=0.0,
            positive_offset=0,
            block_size=block_size,
            compute_grads=False,
        )


@pytest.mark.parametrize("positive_weighting", ["uniform", "inverse_count"])
@pytest.mark.parametrize(("n", "m", "block_size"), [(1, 7, 3), (9, 4, 2), (12, 30, 5)])
def test_block_sums_with_groups_equal_images_times_the_grouped_oracle(
    backend: Any, n: int, m: int, block_size: int, positive_weighting: str
) -> None:
    rng = np.random.default_rng(n * m)
    image, text = rng.normal(size=(n, 4)), rng.normal(size=(m, 4))
    image_ids, text_ids = rng.integers(0, 4, n), rng.integers(0, 5, m)
    oracle = sigmoid_loss_and_grads(
        image,
        text,
        scale=3.0,
        bias=-2.0,
        image_groups=image_ids,
        text_groups=text_ids,
        positive_weighting=positive_weighting,
    )
    module = importlib.import_module(f"siglip_loss.{backend.name}._positives")
    groups = module.block_groups(
        module.as_group_ids(ids_to_backend(image_ids, backend=backend.name), *device(backend)),
        module.as_group_ids(ids_to_backend(text_ids, backend=backend.name), *device(backend)),
        positive_weighting=positive_weighting,
        dtype=backend.array(np.float32(0)).dtype,
    )
    sums = block_sums_of(backend)(
        backend.array(image, "float32"),
        backend.array(text, "float32"),
        scale=3.0,
        bias=-2.0,
        positive_offset=None,
        block_size=block_size,
        compute_grads=True,
        groups=groups,
    )
    expected = [oracle.loss, oracle.grad_image_emb, oracle.grad_text_emb]
    expected += [oracle.grad_scale, oracle.grad_bias]
    for value, want in zip(sums, expected, strict=True):
        np.testing.assert_allclose(
            backend.to_numpy(value), n * np.asarray(want), rtol=1e-4, atol=1e-5
        )


def device(backend: Any) -> tuple[Any, ...]:
    """The extra arguments of ``as_group_ids``: a device in torch, none in JAX."""
    if backend.name == "torch":
        import torch

        return (torch.device("cpu"),)
    return ()
