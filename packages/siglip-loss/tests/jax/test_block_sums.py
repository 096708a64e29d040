"""JAX-only property of the block primitive: the positives' offset may be a traced integer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from siglip_loss.jax._fused import sigmoid_block_sums


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
