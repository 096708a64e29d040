"""The public JAX sigmoid_loss equals the float64 oracle (value and all four gradients) for every
implementation; jit and vmap give the eager values; closed forms, symmetries, numerical range."""

from __future__ import annotations

import functools
import math
import typing
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from siglip_loss.jax import l2_normalize
from siglip_loss.jax import sigmoid_loss
from siglip_loss.numpy import sigmoid_loss_and_grads
from siglip_loss.testing import EmbeddingPair
from siglip_loss.testing import assert_matches_reference
from siglip_loss.testing import biases
from siglip_loss.testing import embedding_pairs
from siglip_loss.testing import scales

# float64 needs jax_enable_x64, which would change every test's defaults: float32 and below here.
LOW_PRECISION_DTYPES = ("float16", "bfloat16", "float32")


def implementations() -> list[str | None]:
    """Every value of ``implementation=`` the public function accepts (None: no such argument)."""
    try:
        hint = typing.get_type_hints(sigmoid_loss).get("implementation")
    except Exception:
        return [None]
    return list(typing.get_args(hint)) if typing.get_origin(hint) is typing.Literal else [None]


IMPLEMENTATIONS = implementations()


def loss_with(implementation: str | None, **options: Any) -> Callable[..., jax.Array]:
    if implementation is None:
        return sigmoid_loss
    return functools.partial(sigmoid_loss, implementation=implementation, **options)


DEFAULT = IMPLEMENTATIONS[0]  # "auto", or None before implementation= exists
OTHERS = IMPLEMENTATIONS[1:]


@given(
    pair=embedding_pairs(batch=(1, 64), dim=(1, 64), dtypes=LOW_PRECISION_DTYPES, backend="jax"),
    scale=scales(),
    bias=biases(),
)
@settings(max_examples=12)
def test_sigmoid_loss_matches_oracle_value_and_all_four_gradients(
    pair: EmbeddingPair, scale: float, bias: float
) -> None:
    # Every new shape costs a compilation: the default gets 12 examples, each other
    # implementation 4 (they also have their own tests against the oracle).
    assert_matches_reference(loss_with(DEFAULT), *pair, scale=scale, bias=bias)


@pytest.mark.parametrize("implementation", OTHERS)
@given(
    pair=embedding_pairs(batch=(1, 64), dim=(1, 64), dtypes=LOW_PRECISION_DTYPES, backend="jax"),
    scale=scales(),
    bias=biases(),
)
@settings(max_examples=4)
def test_every_implementation_matches_oracle_value_and_all_four_gradients(
    implementation: str, pair: EmbeddingPair, scale: float, bias: float
) -> None:
    assert_matches_reference(loss_with(implementation), *pair, scale=scale, bias=bias)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize(("batch", "dim", "dtype"), [(1, 1, "float32"), (13, 7, "bfloat16")])
def test_jit_gives_the_eager_value_and_gradients(
    implementation: str | None, batch: int, dim: int, dtype: str
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
    implementation: str | None,
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


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@given(seed=st.integers(0, 2**32 - 1), scale=scales(), bias=biases(), data=st.data())
@settings(max_examples=6)
def test_loss_is_invariant_to_jointly_permuting_pairs_and_to_swapping_image_and_text(
    implementation: str | None, seed: int, scale: float, bias: float, data: st.DataObject
) -> None:
    # A fixed shape (one compilation); hypothesis draws the values, scale, bias and order.
    keys = jax.random.split(jax.random.key(seed % 2**31), 2)
    image = l2_normalize(jax.random.normal(keys[0], (9, 4)))
    text = l2_normalize(image + 0.5 * jax.random.normal(keys[1], (9, 4)))
    order = jnp.array(data.draw(st.permutations(range(9)), label="order"))
    loss_fn = jax.jit(loss_with(implementation))
    loss = float(loss_fn(image, text, scale=scale, bias=bias))
    assert float(loss_fn(image[order], text[order], scale=scale, bias=bias)) == pytest.approx(
        loss, rel=1e-5, abs=1e-5
    )
    assert float(loss_fn(text, image, scale=scale, bias=bias)) == pytest.approx(
        loss, rel=1e-5, abs=1e-5
    )


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("batch", [1, 2, 17, 64])
def test_zero_similarity_loss_and_bias_gradient_match_closed_form(
    implementation: str | None, batch: int
) -> None:
    zeros = jnp.zeros((batch, 4))
    loss_fn = loss_with(implementation)
    loss_and_grad_bias = jax.jit(
        jax.value_and_grad(lambda b: loss_fn(zeros, zeros, scale=10.0, bias=b))
    )
    for bias in (-10.0, -math.log(max(batch - 1, 1)), 2.5):
        loss, grad_bias = loss_and_grad_bias(jnp.float32(bias))
        expected = np.logaddexp(0.0, -bias) + (batch - 1) * np.logaddexp(0.0, bias)
        assert float(loss) == pytest.approx(expected, rel=1e-5, abs=1e-6)
        assert float(grad_bias) == pytest.approx(
            batch / (1.0 + math.exp(-bias)) - 1.0, rel=1e-5, abs=1e-5
        )


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_single_pair_loss_is_softplus_of_negative_logit(implementation: str | None) -> None:
    image = l2_normalize(jnp.array([[1.0, 2.0, 2.0]]))
    text = l2_normalize(jnp.array([[2.0, -1.0, 2.0]]))
    similarity = float(image[0] @ text[0])
    for scale, bias in ((10.0, -10.0), (112.0, -16.0), (0.5, 3.0)):
        loss = float(loss_with(implementation)(image, text, scale=scale, bias=bias))
        expected = float(np.logaddexp(0.0, -(scale * similarity + bias)))
        assert loss == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", LOW_PRECISION_DTYPES)
@pytest.mark.parametrize("bias", [-1e4, 0.0, 1e4])
def test_loss_and_gradients_are_finite_and_exact_for_logits_up_to_1e4(
    implementation: str | None, dtype: str, bias: float
) -> None:
    image = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=dtype)
    text = jnp.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=dtype)
    assert_matches_reference(loss_with(implementation), image, text, scale=1e4, bias=bias)


def test_low_precision_inputs_give_a_float32_scalar_and_gradients_in_the_input_dtype() -> None:
    for dtype in (jnp.float16, jnp.bfloat16, jnp.float32):
        image = jnp.ones((4, 3), dtype=dtype)
        loss, grads = jax.value_and_grad(
            lambda i, t: sigmoid_loss(i, t, scale=10.0, bias=-10.0), argnums=(0, 1)
        )(image, image)
        assert loss.dtype == jnp.float32
        assert loss.shape == ()
        assert grads[0].dtype == dtype
        assert grads[1].dtype == dtype


def test_float64_numpy_inputs_without_x64_are_computed_in_float32_without_warning() -> None:
    rng = np.random.default_rng(0)
    image, text = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    loss = sigmoid_loss(image, text, scale=3.0, bias=-1.0)
    assert loss.dtype == jnp.float32
    expected = sigmoid_loss_and_grads(image, text, scale=3.0, bias=-1.0).loss
    assert float(loss) == pytest.approx(expected, rel=1e-5)
