"""torch-only properties of the losses: sigmoid_loss agrees with binary_cross_entropy_with_logits,
torch.func.grad / torch.func.vmap give the autograd values, and softmax_loss passes gradcheck."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given

from siglip_loss._validation import IMPLEMENTATIONS
from siglip_loss.testing import EmbeddingPair
from siglip_loss.testing import biases
from siglip_loss.testing import embedding_pairs
from siglip_loss.testing import scales
from siglip_loss.torch import sigmoid_loss
from siglip_loss.torch import softmax_loss


def loss_with(implementation: str, **options: Any) -> Callable[..., torch.Tensor]:
    return functools.partial(sigmoid_loss, implementation=implementation, **options)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@given(
    pair=embedding_pairs(batch=(1, 64), dim=(1, 32), dtypes=("float32",), backend="torch"),
    scale=scales(),
    bias=biases(),
)
def test_sigmoid_loss_agrees_with_binary_cross_entropy_with_logits(
    implementation: str, pair: EmbeddingPair, scale: float, bias: float
) -> None:
    # An independent formulation: BCE on labels eye(N), summed and divided by N (not mean: 1/N^2).
    image, text = pair
    logits = scale * image.double() @ text.double().T + bias
    targets = torch.eye(len(logits), dtype=torch.float64)
    expected = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / len(logits)
    got = loss_with(implementation)(image, text, scale=scale, bias=bias)
    assert got.item() == pytest.approx(expected.item(), rel=2e-5, abs=1e-5)


def test_torch_func_grad_and_vmap_equal_eager_autograd() -> None:
    image, text = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    scale = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)
    sigmoid_loss(image, text, scale=scale, bias=bias).backward()

    def loss_of(scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return sigmoid_loss(image, text, scale=scale, bias=bias, implementation="reference")

    grad_scale, grad_bias = torch.func.grad(loss_of, argnums=(0, 1))(scale.detach(), bias.detach())
    torch.testing.assert_close(grad_scale, scale.grad)
    torch.testing.assert_close(grad_bias, bias.grad)
    scales_batch = torch.tensor([1.0, 3.0], dtype=torch.float64)
    vmapped = torch.func.vmap(loss_of, in_dims=(0, None))(scales_batch, bias.detach())
    expected = torch.stack([loss_of(s, bias.detach()) for s in scales_batch])
    torch.testing.assert_close(vmapped, expected)


def test_softmax_loss_gradients_equal_finite_differences() -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(5, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    text = torch.randn(5, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    scale = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda i, t, s: softmax_loss(i, t, scale=s), (image, text, scale)
    )
