"""The torch block primitive ``sigmoid_block_sums`` against the numpy float64 oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from siglip_loss.numpy import sigmoid_loss_and_grads
from siglip_loss.torch._fused import sigmoid_block_sums


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
    batch: int, dim: int, block_size: int
) -> None:
    rng = np.random.default_rng(batch)
    image, text = rng.normal(size=(batch, dim)), rng.normal(size=(batch, dim))
    oracle = sigmoid_loss_and_grads(image, text, scale=3.0, bias=-2.0)
    sums = sigmoid_block_sums(
        torch.tensor(image, dtype=torch.float32),
        torch.tensor(text, dtype=torch.float32),
        scale=torch.tensor(3.0),
        bias=torch.tensor(-2.0),
        positive_offset=0,
        block_size=block_size,
        compute_grads=True,
    )
    assert sums.grad_image is not None
    assert sums.grad_text is not None
    assert sums.grad_scale is not None
    assert sums.grad_bias is not None
    for value in sums:
        assert value is not None
        assert value.dtype == torch.float32
    np.testing.assert_allclose(sums.loss_sum.item(), batch * oracle.loss, rtol=1e-5)
    np.testing.assert_allclose(
        sums.grad_image.numpy(), batch * oracle.grad_image_emb, rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        sums.grad_text.numpy(), batch * oracle.grad_text_emb, rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        sums.grad_scale.item(), batch * oracle.grad_scale, rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        sums.grad_bias.item(), batch * oracle.grad_bias, rtol=1e-4, atol=1e-5
    )


def test_block_sums_of_negative_only_rectangular_block_match_oracle() -> None:
    rng = np.random.default_rng(1)
    image, text = rng.normal(size=(5, 4)), rng.normal(size=(9, 4))
    sums = sigmoid_block_sums(
        torch.tensor(image, dtype=torch.bfloat16),
        torch.tensor(text, dtype=torch.bfloat16),
        scale=torch.tensor(2.0),
        bias=-1.0,
        positive_offset=None,
        block_size=4,
        compute_grads=True,
    )
    image_bf16 = torch.tensor(image, dtype=torch.bfloat16).double().numpy()
    text_bf16 = torch.tensor(text, dtype=torch.bfloat16).double().numpy()
    expected = _negative_block_oracle(image_bf16, text_bf16, 2.0, -1.0)
    got = [sums.loss_sum, sums.grad_image, sums.grad_text, sums.grad_scale, sums.grad_bias]
    for value, want in zip(got, expected, strict=True):
        assert value is not None
        np.testing.assert_allclose(value.numpy(), want, rtol=1e-4, atol=1e-5)


def test_block_sums_offset_places_positive_at_column_row_plus_offset() -> None:
    rng = np.random.default_rng(2)
    image, text = rng.normal(size=(3, 4)), rng.normal(size=(8, 4))
    offset = 4
    logits = 1.5 * image @ text.T + 0.5
    labels = -np.ones_like(logits)
    labels[np.arange(3), np.arange(3) + offset] = 1.0
    expected = float(np.logaddexp(0.0, -labels * logits).sum())
    for block_size in (1, 2, 3, 8):
        sums = sigmoid_block_sums(
            torch.tensor(image, dtype=torch.float32),
            torch.tensor(text, dtype=torch.float32),
            scale=1.5,
            bias=0.5,
            positive_offset=offset,
            block_size=block_size,
            compute_grads=False,
        )
        np.testing.assert_allclose(sums.loss_sum.item(), expected, rtol=1e-5)
        assert sums.grad_image is None
        assert sums.grad_text is None
        assert sums.grad_scale is None
        assert sums.grad_bias is None


def test_block_sums_builds_no_autograd_graph() -> None:
    image = torch.randn(4, 3, requires_grad=True)
    scale = torch.tensor(2.0, requires_grad=True)
    sums = sigmoid_block_sums(
        image,
        image.detach(),
        scale=scale,
        bias=0.0,
        positive_offset=0,
        block_size=2,
        compute_grads=True,
    )
    assert all(value is not None and not value.requires_grad for value in sums)


def test_block_sums_rejects_bad_block_size() -> None:
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="block_size"):
        sigmoid_block_sums(
            x, x, scale=1.0, bias=0.0, positive_offset=0, block_size=0, compute_grads=False
        )
    with pytest.raises(TypeError, match="block_size"):
        sigmoid_block_sums(
            x, x, scale=1.0, bias=0.0, positive_offset=0, block_size=2.0, compute_grads=False
        )  # type: ignore[arg-type]
