"""The JAX block primitive ``sigmoid_block_sums`` against the numpy float64 oracle."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from siglip_loss.jax._fused import sigmoid_block_sums
from siglip_loss.numpy import sigmoid_loss_and_grads


@pytest.mark.parametrize(
    ("batch", "dim", "block_size"), [(1, 3, 4), (7, 5, 3), (16, 8, 16), (33, 9, 10)]
)
def test_block_sums_with_diagonal_positives_equal_batch_times_oracle(
    batch: int, dim: int, block_size: int
) -> None:
    rng = np.random.default_rng(batch)
    image, text = rng.normal(size=(batch, dim)), rng.normal(size=(batch, dim))
    oracle = sigmoid_loss_and_grads(image, text, scale=3.0, bias=-2.0)

    @jax.jit
    def block_sums(image: jax.Array, text: jax.Array):
        return sigmoid_block_sums(
            image,
            text,
            scale=3.0,
            bias=-2.0,
            positive_offset=0,
            block_size=block_size,
            compute_grads=True,
        )

    sums = block_sums(jnp.asarray(image, jnp.float32), jnp.asarray(text, jnp.float32))
    for value in sums:
        assert value is not None
        assert value.dtype == jnp.float32
    np.testing.assert_allclose(float(sums.loss_sum), batch * oracle.loss, rtol=1e-5)
    np.testing.assert_allclose(sums.grad_image, batch * oracle.grad_image_emb, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sums.grad_text, batch * oracle.grad_text_emb, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        float(sums.grad_scale), batch * oracle.grad_scale, rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        float(sums.grad_bias), batch * oracle.grad_bias, rtol=1e-4, atol=1e-5
    )


def test_block_sums_traced_offset_places_positive_at_column_row_plus_offset() -> None:
    rng = np.random.default_rng(2)
    image, text = rng.normal(size=(3, 4)), rng.normal(size=(8, 4))
    logits = 1.5 * image @ text.T + 0.5

    @jax.jit
    def loss_sum(offset: jax.Array) -> jax.Array:
        return sigmoid_block_sums(
            jnp.asarray(image, jnp.float32),
            jnp.asarray(text, jnp.float32),
            scale=1.5,
            bias=0.5,
            positive_offset=offset,
            block_size=2,
            compute_grads=False,
        ).loss_sum

    for offset in (0, 3, 5):
        labels = -np.ones_like(logits)
        labels[np.arange(3), np.arange(3) + offset] = 1.0
        expected = float(np.logaddexp(0.0, -labels * logits).sum())
        np.testing.assert_allclose(float(loss_sum(jnp.int32(offset))), expected, rtol=1e-5)


def test_block_sums_without_grads_returns_only_the_loss() -> None:
    x = jnp.ones((5, 2))
    sums = sigmoid_block_sums(
        x, x, scale=1.0, bias=0.0, positive_offset=None, block_size=2, compute_grads=False
    )
    expected = 25 * np.logaddexp(0.0, 2.0)
    np.testing.assert_allclose(float(sums.loss_sum), expected, rtol=1e-6)
    assert sums.grad_image is None
    assert sums.grad_text is None
    assert sums.grad_scale is None
    assert sums.grad_bias is None


def test_block_sums_rejects_bad_block_size() -> None:
    x = jnp.zeros((2, 2))
    with pytest.raises(ValueError, match="block_size"):
        sigmoid_block_sums(
            x, x, scale=1.0, bias=0.0, positive_offset=0, block_size=0, compute_grads=False
        )
