"""softmax_loss and l2_normalize (JAX) against the numpy oracle; the testing helper on JAX."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import siglip_loss.numpy as oracle
from siglip_loss.jax import l2_normalize
from siglip_loss.jax import sigmoid_loss
from siglip_loss.jax import softmax_loss
from siglip_loss.testing import assert_matches_reference


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
@pytest.mark.parametrize("scale", [1.0, 14.3, 100.0])
def test_softmax_loss_and_its_jit_match_the_oracle(dtype: jnp.dtype, scale: float) -> None:
    keys = jax.random.split(jax.random.key(3), 2)
    image = l2_normalize(jax.random.normal(keys[0], (9, 6))).astype(dtype)
    text = l2_normalize(jax.random.normal(keys[1], (9, 6))).astype(dtype)
    expected = oracle.softmax_loss(
        np.asarray(image, dtype=np.float64), np.asarray(text, dtype=np.float64), scale=scale
    )
    got = softmax_loss(image, text, scale=scale)
    assert got.dtype == jnp.float32
    assert float(got) == pytest.approx(expected, rel=1e-5, abs=1e-5)
    jitted = jax.jit(lambda i, t: softmax_loss(i, t, scale=scale))(image, text)
    assert float(jitted) == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_l2_normalize_matches_oracle_and_keeps_zero_rows_finite() -> None:
    rows = jnp.array([[3.0, 4.0], [0.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(l2_normalize(rows), oracle.l2_normalize(np.asarray(rows)), rtol=1e-6)
    gradient = jax.grad(lambda x: l2_normalize(x).sum())(rows)
    assert bool(jnp.all(jnp.isfinite(gradient)))
    assert l2_normalize(rows.astype(jnp.bfloat16)).dtype == jnp.bfloat16


def test_checker_catches_a_jax_loss_that_stops_the_bias_gradient() -> None:
    def frozen_bias(image_emb, text_emb, *, scale, bias):  # type: ignore[no-untyped-def]
        return sigmoid_loss(image_emb, text_emb, scale=scale, bias=jax.lax.stop_gradient(bias))

    image = l2_normalize(jax.random.normal(jax.random.key(0), (5, 4)))
    assert_matches_reference(sigmoid_loss, image, image, scale=10.0, bias=-3.0)
    with pytest.raises(AssertionError, match=r"gradient of bias: got 0.0, float64 oracle"):
        assert_matches_reference(frozen_bias, image, image, scale=10.0, bias=-3.0)
