"""softmax_loss and l2_normalize (torch) against the numpy oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given

import siglip_loss.numpy as oracle
from siglip_loss.testing import EmbeddingPair
from siglip_loss.testing import embedding_pairs
from siglip_loss.testing import scales
from siglip_loss.torch import l2_normalize
from siglip_loss.torch import softmax_loss


@given(
    pair=embedding_pairs(dtypes=("bfloat16", "float32", "float64"), backend="torch"),
    scale=scales(),
)
def test_softmax_loss_matches_oracle(pair: EmbeddingPair, scale: float) -> None:
    image, text = pair
    got = softmax_loss(image, text, scale=scale)
    expected = oracle.softmax_loss(image.double().numpy(), text.double().numpy(), scale=scale)
    assert got.dtype == (torch.float64 if image.dtype == torch.float64 else torch.float32)
    tolerance = 1e-12 if image.dtype == torch.float64 else 1e-5 * (1 + scale)
    assert got.item() == pytest.approx(expected, rel=tolerance, abs=tolerance)


def test_softmax_loss_gradients_equal_finite_differences() -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(5, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    text = torch.randn(5, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    scale = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda i, t, s: softmax_loss(i, t, scale=s), (image, text, scale)
    )


@given(
    pair=embedding_pairs(
        dtypes=("float16", "bfloat16", "float32"), backend="torch", normalized=False
    )
)
def test_l2_normalize_matches_oracle_in_the_input_dtype(pair: EmbeddingPair) -> None:
    image, _ = pair
    got = l2_normalize(image)
    assert got.dtype == image.dtype
    expected = oracle.l2_normalize(image.double().numpy())
    resolution = {torch.float16: 1e-3, torch.bfloat16: 8e-3, torch.float32: 1e-6}[image.dtype]
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=resolution, atol=resolution)


def test_l2_normalize_of_a_zero_vector_is_zero_with_finite_gradients() -> None:
    rows = torch.tensor([[0.0, 0.0], [3.0, 4.0]], requires_grad=True)
    normalized = l2_normalize(rows)
    torch.testing.assert_close(normalized, torch.tensor([[0.0, 0.0], [0.6, 0.8]]))
    normalized.sum().backward()
    assert rows.grad is not None
    assert torch.isfinite(rows.grad).all()
