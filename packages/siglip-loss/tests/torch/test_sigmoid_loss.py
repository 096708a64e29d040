"""The public torch sigmoid_loss equals the float64 oracle (value and all four gradients) for every
implementation, and has the loss's closed forms, symmetries and numerical range."""

from __future__ import annotations

import functools
import math
import typing
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from siglip_loss.numpy import sigmoid_loss_and_grads
from siglip_loss.testing import EmbeddingPair
from siglip_loss.testing import assert_matches_reference
from siglip_loss.testing import biases
from siglip_loss.testing import embedding_pairs
from siglip_loss.testing import scales
from siglip_loss.torch import sigmoid_loss

ALL_DTYPES = ("float16", "bfloat16", "float32", "float64")


def implementations() -> list[str | None]:
    """Every value of ``implementation=`` the public function accepts (None: no such argument)."""
    try:
        hint = typing.get_type_hints(sigmoid_loss).get("implementation")
    except Exception:
        return [None]
    return list(typing.get_args(hint)) if typing.get_origin(hint) is typing.Literal else [None]


IMPLEMENTATIONS = implementations()


def loss_with(implementation: str | None, **options: Any) -> Callable[..., torch.Tensor]:
    if implementation is None:
        return sigmoid_loss
    return functools.partial(sigmoid_loss, implementation=implementation, **options)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@given(
    pair=embedding_pairs(batch=(1, 64), dim=(1, 64), dtypes=ALL_DTYPES, backend="torch"),
    scale=scales(),
    bias=biases(),
)
def test_sigmoid_loss_matches_oracle_value_and_all_four_gradients(
    implementation: str | None, pair: EmbeddingPair, scale: float, bias: float
) -> None:
    assert_matches_reference(loss_with(implementation), *pair, scale=scale, bias=bias)


@pytest.mark.parametrize(
    "implementation", [i for i in IMPLEMENTATIONS if i in ("chunked", "fused")]
)
@given(
    pair=embedding_pairs(batch=(1, 40), dim=(1, 16), dtypes=("float32",), backend="torch"),
    block_size=st.integers(1, 48),
    scale=scales(),
    bias=biases(),
)
@settings(max_examples=10)
def test_tiled_sigmoid_loss_matches_oracle_for_any_block_size(
    implementation: str, pair: EmbeddingPair, block_size: int, scale: float, bias: float
) -> None:
    loss_fn = loss_with(implementation, block_size=block_size)
    assert_matches_reference(loss_fn, *pair, scale=scale, bias=bias)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_inputs_give_a_float32_scalar_and_gradients_in_the_input_dtype(
    dtype: torch.dtype,
) -> None:
    image = torch.randn(6, 5, dtype=dtype, requires_grad=True)
    text = torch.randn(6, 5, dtype=dtype, requires_grad=True)
    loss = sigmoid_loss(image, text, scale=10.0, bias=-10.0)
    assert loss.dtype == torch.float32
    assert loss.shape == ()
    loss.backward()
    assert image.grad is not None
    assert image.grad.dtype == dtype
    assert text.grad is not None
    assert text.grad.dtype == dtype


def test_float64_inputs_are_computed_in_float64() -> None:
    image, text = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    loss = sigmoid_loss(image, text, scale=3.0, bias=-1.0)
    assert loss.dtype == torch.float64
    expected = sigmoid_loss_and_grads(image.numpy(), text.numpy(), scale=3.0, bias=-1.0).loss
    assert loss.item() == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@given(
    pair=embedding_pairs(batch=(1, 64), dim=(1, 32), dtypes=("float32",), backend="torch"),
    scale=scales(),
    bias=biases(),
)
def test_sigmoid_loss_agrees_with_binary_cross_entropy_with_logits(
    implementation: str | None, pair: EmbeddingPair, scale: float, bias: float
) -> None:
    # An independent formulation: BCE on labels eye(N), summed and divided by N (not mean: 1/N^2).
    image, text = pair
    logits = scale * image.double() @ text.double().T + bias
    targets = torch.eye(len(logits), dtype=torch.float64)
    expected = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / len(logits)
    got = loss_with(implementation)(image, text, scale=scale, bias=bias)
    assert got.item() == pytest.approx(expected.item(), rel=2e-5, abs=1e-5)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@given(
    pair=embedding_pairs(batch=(1, 32), dim=(1, 16), dtypes=("float64",), backend="torch"),
    scale=scales(),
    bias=biases(),
    data=st.data(),
)
def test_loss_is_invariant_to_jointly_permuting_pairs_and_to_swapping_image_and_text(
    implementation: str | None, pair: EmbeddingPair, scale: float, bias: float, data: st.DataObject
) -> None:
    image, text = pair
    order = torch.tensor(data.draw(st.permutations(range(len(image))), label="order"))
    loss_fn = loss_with(implementation)
    loss = loss_fn(image, text, scale=scale, bias=bias)
    permuted = loss_fn(image[order], text[order], scale=scale, bias=bias)
    swapped = loss_fn(text, image, scale=scale, bias=bias)
    torch.testing.assert_close(permuted, loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(swapped, loss, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@given(batch=st.integers(1, 64), bias=biases())
def test_zero_similarity_loss_and_bias_gradient_match_closed_form(
    implementation: str | None, batch: int, bias: float
) -> None:
    zeros = torch.zeros(batch, 4)
    bias_tensor = torch.tensor(bias, requires_grad=True)
    loss = loss_with(implementation)(zeros, zeros, scale=10.0, bias=bias_tensor)
    loss.backward()
    softplus = functools.partial(np.logaddexp, 0.0)
    expected = softplus(-bias) + (batch - 1) * softplus(bias)
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    expected_grad = batch / (1.0 + math.exp(-bias)) - 1.0
    assert bias_tensor.grad is not None
    assert bias_tensor.grad.item() == pytest.approx(expected_grad, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@given(dim=st.integers(1, 16), seed=st.integers(0, 2**32 - 1), scale=scales(), bias=biases())
def test_single_pair_loss_is_softplus_of_negative_logit(
    implementation: str | None, dim: int, seed: int, scale: float, bias: float
) -> None:
    generator = torch.Generator().manual_seed(seed)
    image = F.normalize(torch.randn(1, dim, generator=generator, dtype=torch.float64), dim=-1)
    text = F.normalize(torch.randn(1, dim, generator=generator, dtype=torch.float64), dim=-1)
    logit = scale * float(image[0] @ text[0]) + bias
    loss = loss_with(implementation)(image, text, scale=scale, bias=bias)
    assert loss.item() == pytest.approx(float(np.logaddexp(0.0, -logit)), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [-1e4, 0.0, 1e4])
def test_loss_and_gradients_are_finite_and_exact_for_logits_up_to_1e4(
    implementation: str | None, dtype: torch.dtype, bias: float
) -> None:
    # Cosines -1, 0, +1 at scale 1e4: logits span [-2e4, 2e4]; naive log(sigmoid) gives inf.
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=dtype)
    text = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=dtype)
    assert_matches_reference(loss_with(implementation), image, text, scale=1e4, bias=bias)


def test_scale_and_bias_accept_python_floats_and_0d_tensors_of_any_float_dtype() -> None:
    image, text = torch.randn(4, 3), torch.randn(4, 3)
    expected = sigmoid_loss(image, text, scale=2.0, bias=-1.0)
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        got = sigmoid_loss(
            image, text, scale=torch.tensor(2.0, dtype=dtype), bias=torch.tensor(-1.0, dtype=dtype)
        )
        torch.testing.assert_close(got, expected)
    torch.testing.assert_close(sigmoid_loss(image, text, scale=2, bias=-1), expected)


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
