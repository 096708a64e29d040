"""JAX-only input checks: shapes are checked at trace time, under jax.jit too."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from siglip_loss._validation import IMPLEMENTATIONS
from siglip_loss.jax import sigmoid_loss


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_shapes_are_checked_under_jit_too(implementation: str) -> None:
    def loss(image: jax.Array, text: jax.Array) -> jax.Array:
        return sigmoid_loss(image, text, scale=10.0, bias=-10.0, implementation=implementation)

    with pytest.raises(ValueError, match=r"text_emb: expected batch 4"):
        jax.jit(loss)(jnp.zeros((4, 3)), jnp.zeros((5, 3)))
