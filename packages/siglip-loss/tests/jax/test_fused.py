"""JAX-only properties of the fused and chunked losses: vmap equals a loop, gradient matmuls only
inside the vjp and only for differentiated inputs, second derivatives through the chunked loss.
(Equality with the reference and the oracle for any tiling and dtype: tests/backends/test_fused.py.)"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from siglip_loss.jax import sigmoid_loss


def _pair(seed: int, batch: int, dim: int, dtype: Any) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(batch, dim))
    text = rng.normal(size=(batch, dim))
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    return jnp.asarray(image, dtype), jnp.asarray(text, dtype)


def test_vmap_over_a_leading_axis_equals_a_loop() -> None:
    implementation = "fused"  # custom_vjp + vmap; chunked is plain autodiff
    images = jnp.stack([_pair(seed, 10, 4, jnp.float32)[0] for seed in range(3)])
    texts = jnp.stack([_pair(seed, 10, 4, jnp.float32)[1] for seed in range(3)])

    def loss(image: jax.Array, text: jax.Array, bias: jax.Array) -> jax.Array:
        return sigmoid_loss(
            image, text, scale=5.0, bias=bias, implementation=implementation, block_size=4
        )

    gradient = jax.grad(loss, argnums=(0, 1, 2))
    bias = jnp.float32(-2.0)
    batched_loss = jax.jit(jax.vmap(loss, in_axes=(0, 0, None)))(images, texts, bias)
    batched_grads = jax.jit(jax.vmap(gradient, in_axes=(0, 0, None)))(images, texts, bias)
    for index in range(3):
        reference = (images[index], texts[index], bias)
        np.testing.assert_allclose(
            batched_loss[index],
            sigmoid_loss(*reference[:2], scale=5.0, bias=bias, implementation="reference"),
            rtol=1e-6,
        )
        dense = jax.grad(
            lambda i, t, b: sigmoid_loss(i, t, scale=5.0, bias=b, implementation="reference"),
            argnums=(0, 1, 2),
        )(*reference)
        for got, want in zip(batched_grads, dense, strict=True):
            np.testing.assert_allclose(got[index], want, rtol=1e-5, atol=1e-6)


def _dot_count(function: Any, *args: Any) -> int:
    """How many dot_general equations a traced function contains, loop bodies included."""

    def count(jaxpr: Any) -> int:
        total = 0
        for equation in jaxpr.eqns:
            total += equation.primitive.name == "dot_general"
            for value in equation.params.values():
                for inner in value if isinstance(value, list | tuple) else [value]:
                    if hasattr(inner, "jaxpr"):
                        total += count(getattr(inner.jaxpr, "jaxpr", inner.jaxpr))
                    elif hasattr(inner, "eqns"):
                        total += count(inner)
        return total

    return count(jax.make_jaxpr(function)(*args).jaxpr)


def test_gradient_matmuls_appear_only_when_differentiated_and_only_for_needed_inputs() -> None:
    image, text = _pair(0, 12, 4, jnp.float32)

    def loss(image: jax.Array, text: jax.Array, bias: jax.Array) -> jax.Array:
        return sigmoid_loss(image, text, scale=3.0, bias=bias, implementation="fused", block_size=5)

    bias = jnp.float32(-1.0)
    # Full blocks and the ragged last ones are traced separately: 4 tile bodies, 1 dot each.
    assert _dot_count(loss, image, text, bias) == 4
    assert _dot_count(jax.grad(loss, argnums=0), image, text, bias) == 4 * 2
    assert _dot_count(jax.grad(loss, argnums=1), image, text, bias) == 4 * 2
    assert _dot_count(jax.grad(loss, argnums=(0, 1, 2)), image, text, bias) == 4 * 3


def test_chunked_supports_second_derivatives_like_the_reference() -> None:
    image, text = _pair(2, 7, 3, jnp.float32)

    def bias_curvature(implementation: str, options: dict[str, Any]) -> jax.Array:
        def loss(bias: jax.Array) -> jax.Array:
            return sigmoid_loss(
                image, text, scale=4.0, bias=bias, implementation=implementation, **options
            )

        return jax.grad(jax.grad(loss))(jnp.float32(-1.0))

    np.testing.assert_allclose(
        bias_curvature("chunked", {"block_size": 3}),
        bias_curvature("reference", {}),
        rtol=1e-5,
    )


def test_groups_add_no_matmul() -> None:
    image, text = _pair(0, 12, 4, jnp.float32)
    ids = jnp.asarray([0, 0, 1, 2, 2, 2, 3, 4, 5, 5, 6, 7], jnp.int32)

    def loss(image: jax.Array, text: jax.Array, bias: jax.Array) -> jax.Array:
        return sigmoid_loss(
            image,
            text,
            scale=3.0,
            bias=bias,
            image_groups=ids,
            text_groups=ids[::-1],
            positive_weighting="inverse_count",
            implementation="fused",
            block_size=5,
        )

    bias = jnp.float32(-1.0)
    # The same counts as without groups: the ids only change the tiles' elementwise pass.
    assert _dot_count(loss, image, text, bias) == 4
    assert _dot_count(jax.grad(loss, argnums=(0, 1, 2)), image, text, bias) == 4 * 3
