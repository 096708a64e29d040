"""The JAX adapter's public API: every name exists, and bad input raises a clear message (for
every implementation of sigmoid_loss)."""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import siglip_loss.jax
from siglip_loss.jax import SigmoidLoss
from siglip_loss.jax import sigmoid_loss
from siglip_loss.jax import softmax_loss


def implementations() -> list[str | None]:
    try:
        hint = typing.get_type_hints(sigmoid_loss).get("implementation")
    except Exception:
        return [None]
    return list(typing.get_args(hint)) if typing.get_origin(hint) is typing.Literal else [None]


def sigmoid_with(implementation: str | None) -> Callable[..., jax.Array]:
    if implementation is None:
        return sigmoid_loss
    return functools.partial(sigmoid_loss, implementation=implementation)


def test_every_name_in_all_exists_and_is_documented() -> None:
    for name in siglip_loss.jax.__all__:
        assert getattr(siglip_loss.jax, name).__doc__, name
    assert {"SigmoidLoss", "l2_normalize", "sigmoid_loss", "softmax_loss"} <= set(
        siglip_loss.jax.__all__
    )


GOOD = jnp.zeros((4, 3))
BAD_EMBEDDINGS = [
    (jnp.zeros(3), GOOD, ValueError, r"image_emb: expected rank 2 \[batch, dim\], got rank 1"),
    (GOOD, jnp.zeros((4, 3, 2)), ValueError, r"text_emb: expected rank 2 .* got rank 3"),
    (GOOD, jnp.zeros((5, 3)), ValueError, r"text_emb: expected batch 4 .* got shape \(5, 3\)"),
    (GOOD, jnp.zeros((4, 2)), ValueError, r"text_emb: expected dim 3 .* got shape \(4, 2\)"),
    (jnp.zeros((0, 3)), jnp.zeros((0, 3)), ValueError, r"image_emb: expected batch >= 1"),
    (GOOD.astype(jnp.int32), GOOD, TypeError, r"image_emb: expected a floating dtype .* int32"),
    (GOOD, GOOD.astype(bool), TypeError, r"text_emb: expected a floating dtype .* bool"),
    (
        [[1.0]],
        [[1.0]],
        TypeError,
        r"image_emb: expected an array of shape \[batch, dim\], got list",
    ),
]
BAD_SCALARS = [
    (float("nan"), 0.0, ValueError, r"scale: expected a finite value, got nan"),
    (jnp.float32(jnp.inf), 0.0, ValueError, r"scale: expected a finite value, got inf"),
    (np.float64(-2.0), 0.0, ValueError, r"scale: expected a positive value .* got -2.0"),
    (10.0, float("-inf"), ValueError, r"bias: expected a finite value, got -inf"),
    (jnp.ones(1), 0.0, ValueError, r"scale: expected a scalar \(0-d\) value, got shape \(1,\)"),
    (10.0, jnp.array(1), TypeError, r"bias: expected a floating dtype .* got int32"),
]


@pytest.mark.parametrize("implementation", implementations())
@pytest.mark.parametrize(("image_emb", "text_emb", "error", "message"), BAD_EMBEDDINGS)
def test_bad_embeddings_raise_a_message_naming_the_argument(
    implementation: str | None, image_emb: Any, text_emb: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        sigmoid_with(implementation)(image_emb, text_emb, scale=10.0, bias=-10.0)


@pytest.mark.parametrize(("image_emb", "text_emb", "error", "message"), BAD_EMBEDDINGS)
def test_bad_embeddings_raise_the_same_message_from_softmax_loss_and_the_module(
    image_emb: Any, text_emb: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        softmax_loss(image_emb, text_emb, scale=10.0)
    with pytest.raises(error, match=message):
        SigmoidLoss()(image_emb, text_emb)


@pytest.mark.parametrize("implementation", implementations())
@pytest.mark.parametrize(("scale", "bias", "error", "message"), BAD_SCALARS)
def test_bad_scale_or_bias_raises_a_message_naming_the_argument(
    implementation: str | None, scale: Any, bias: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        sigmoid_with(implementation)(GOOD, GOOD, scale=scale, bias=bias)


@pytest.mark.parametrize("implementation", implementations())
def test_shapes_are_checked_under_jit_too(implementation: str | None) -> None:
    loss_fn = sigmoid_with(implementation)
    with pytest.raises(ValueError, match=r"text_emb: expected batch 4"):
        jax.jit(lambda i, t: loss_fn(i, t, scale=10.0, bias=-10.0))(GOOD, jnp.zeros((5, 3)))


def test_module_rejects_non_finite_init_values() -> None:
    with pytest.raises(ValueError, match=r"log_scale_init: expected a finite value, got inf"):
        SigmoidLoss(log_scale_init=float("inf"))
    with pytest.raises(ValueError, match=r"bias_init: expected a finite value, got nan"):
        SigmoidLoss(bias_init=float("nan"))
