"""JAX-only properties of sigmoid_loss: jax.jit and jax.vmap give the eager values, and float64
numpy inputs without x64 are computed in float32 silently, as JAX does everywhere else."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from siglip_loss._validation import IMPLEMENTATIONS
from siglip_loss.jax import l2_normalize
from siglip_loss.jax import sigmoid_loss
from siglip_loss.numpy import sigmoid_loss_and_grads


def loss_with(implementation: str) -> Callable[..., jax.Array]:
    return functools.partial(sigmoid_loss, implementation=implementation)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize(("batch", "dim", "dtype"), [(1, 1, "float32"), (13, 7, "bfloat16")])
def test_jit_gives_the_eager_value_and_gradients(
    implementation: str, batch: int, dim: int, dtype: str
) -> None:
    keys = jax.random.split(jax.random.key(batch), 2)
    image = l2_normalize(jax.random.normal(keys[0], (batch, dim))).astype(dtype)
    text = l2_normalize(jax.random.normal(keys[1], (batch, dim))).astype(dtype)
    loss_fn = loss_with(implementation)

    def value_and_grads(image: Any, text: Any, scale: Any, bias: Any) -> Any:
        return jax.value_and_grad(
            lambda *args: loss_fn(args[0], args[1], scale=args[2], bias=args[3]),
            argnums=(0, 1, 2, 3),
        )(image, text, scale, bias)

    arguments = (image, text, jnp.float32(17.0), jnp.float32(-3.0))
    eager = value_and_grads(*arguments)
    jitted = jax.jit(value_and_grads)(*arguments)
    for eager_leaf, jitted_leaf in zip(
        jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True
    ):
        resolution = 1e-5 if dtype == "float32" else 1e-2
        np.testing.assert_allclose(
            np.asarray(jitted_leaf, dtype=np.float64),
            np.asarray(eager_leaf, dtype=np.float64),
            rtol=resolution,
            atol=resolution * float(np.max(np.abs(np.asarray(eager_leaf, dtype=np.float64)))),
        )


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_vmap_over_batches_of_pairs_and_over_scales_gives_the_unbatched_values(
    implementation: str,
) -> None:
    loss_fn = jax.jit(loss_with(implementation))
    keys = jax.random.split(jax.random.key(0), 2)
    images = l2_normalize(jax.random.normal(keys[0], (3, 6, 5)))
    texts = l2_normalize(jax.random.normal(keys[1], (3, 6, 5)))
    scales_batch = jnp.array([1.0, 10.0, 100.0])
    biases_batch = jnp.array([-10.0, 0.0, 3.0])
    vmapped = jax.vmap(lambda i, t, s, b: loss_fn(i, t, scale=s, bias=b))(
        images, texts, scales_batch, biases_batch
    )
    looped = [
        float(loss_fn(images[k], texts[k], scale=scales_batch[k], bias=biases_batch[k]))
        for k in range(3)
    ]
    np.testing.assert_allclose(vmapped, looped, rtol=2e-6, atol=1e-6)
    over_scales = jax.vmap(lambda s: loss_fn(images[0], texts[0], scale=s, bias=-1.0))(scales_batch)
    np.testing.assert_allclose(
        over_scales,
        [float(loss_fn(images[0], texts[0], scale=s, bias=-1.0)) for s in scales_batch],
        rtol=2e-6,
    )


def test_float64_numpy_inputs_without_x64_are_computed_in_float32_without_warning() -> None:
    rng = np.random.default_rng(0)
    image, text = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    loss = sigmoid_loss(image, text, scale=3.0, bias=-1.0)
    assert loss.dtype == jnp.float32
    expected = sigmoid_loss_and_grads(image, text, scale=3.0, bias=-1.0).loss
    assert float(loss) == pytest.approx(expected, rel=1e-5)
