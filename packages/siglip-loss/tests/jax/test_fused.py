"""The JAX fused and chunked losses: equal to each other and to the dense reference for any tiling,
under jit and vmap; gradients only inside the vjp and only for differentiated inputs."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from siglip_loss.jax import sigmoid_loss
from siglip_loss.numpy import sigmoid_loss_and_grads
from siglip_loss.testing import biases
from siglip_loss.testing import scales


def _value_and_grads(implementation: str, block_size: int | None) -> Any:
    def loss(image: jax.Array, text: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
        options: dict[str, Any] = {"implementation": implementation}
        if implementation != "reference":
            options["block_size"] = block_size
        return sigmoid_loss(image, text, scale=scale, bias=bias, **options)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))


def _pair(seed: int, batch: int, dim: int, dtype: Any) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(batch, dim))
    text = rng.normal(size=(batch, dim))
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    return jnp.asarray(image, dtype), jnp.asarray(text, dtype)


@given(
    batch=st.integers(1, 24),
    block_size=st.integers(1, 32),
    dtype=st.sampled_from(["float32", "bfloat16"]),
    scale=scales(max_value=50.0),
    bias=biases(),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=5)
def test_fused_equals_chunked_equals_reference_for_any_block_size_under_jit(
    batch: int, block_size: int, dtype: str, scale: float, bias: float, seed: int
) -> None:
    image, text = _pair(seed, batch, 5, jnp.dtype(dtype))
    args = (image, text, jnp.float32(scale), jnp.float32(bias))
    loss, grads = _value_and_grads("reference", None)(*args)
    rtol = 2e-5 if dtype == "float32" else 1.6e-2
    for implementation in ("fused", "chunked"):
        got_loss, got_grads = _value_and_grads(implementation, block_size)(*args)
        np.testing.assert_allclose(float(got_loss), float(loss), rtol=2e-5, atol=1e-6)
        for got, want in zip(got_grads, grads, strict=True):
            assert got.dtype == want.dtype
            magnitude = float(jnp.max(jnp.abs(want.astype(jnp.float32)))) + 1e-6
            np.testing.assert_allclose(
                np.asarray(got, np.float32),
                np.asarray(want, np.float32),
                rtol=rtol,
                atol=rtol * magnitude,
            )


def test_fused_equals_numpy_oracle_with_ragged_tiles() -> None:
    rng = np.random.default_rng(0)
    image, text = rng.normal(size=(29, 7)) / 3, rng.normal(size=(29, 7)) / 3
    oracle = sigmoid_loss_and_grads(image, text, scale=12.0, bias=-4.0)
    loss, grads = _value_and_grads("fused", 8)(
        jnp.asarray(image, jnp.float32),
        jnp.asarray(text, jnp.float32),
        jnp.float32(12.0),
        jnp.float32(-4.0),
    )
    want = (oracle.grad_image_emb, oracle.grad_text_emb, oracle.grad_scale, oracle.grad_bias)
    np.testing.assert_allclose(float(loss), oracle.loss, rtol=1e-5)
    for got, expected in zip(grads, want, strict=True):
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-6)


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


def test_low_precision_gradients_come_back_in_the_input_dtype() -> None:
    image, text = _pair(1, 6, 3, jnp.float16)
    grads = jax.grad(
        lambda i, t, s: sigmoid_loss(i, t, scale=s, bias=-1.0, implementation="fused"),
        argnums=(0, 1, 2),
    )(image, text, jnp.bfloat16(4.0))
    assert [g.dtype for g in grads] == [jnp.float16, jnp.float16, jnp.bfloat16]


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
