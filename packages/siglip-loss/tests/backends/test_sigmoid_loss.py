"""The backend's public sigmoid_loss equals the float64 oracle (value and all four gradients) for
every implementation and dtype, and has the loss's closed forms, symmetries and numerical range.

Each property test defines its hypothesis test inside the pytest test, so that the strategy can
draw arrays of the session's backend; JAX draws fewer examples (each new shape compiles).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import strategies as st

from siglip_loss._validation import IMPLEMENTATIONS
from siglip_loss.numpy import l2_normalize
from siglip_loss.numpy import sigmoid_loss_and_grads
from siglip_loss.testing import EmbeddingPair
from siglip_loss.testing import GroupedBatch
from siglip_loss.testing import assert_matches_reference
from siglip_loss.testing import biases
from siglip_loss.testing import embedding_pairs
from siglip_loss.testing import grouped_batches
from siglip_loss.testing import ids_to_backend
from siglip_loss.testing import scales

ALL_DTYPES = ("float16", "bfloat16", "float32", "float64")


def loss_with(backend: Any, implementation: str, **options: Any) -> Callable[..., Any]:
    return functools.partial(backend.module.sigmoid_loss, implementation=implementation, **options)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_sigmoid_loss_matches_oracle_value_and_all_four_gradients(
    backend: Any, implementation: str
) -> None:
    with backend.x64():

        @backend.examples(jax=12 if implementation == "auto" else 4)
        @given(
            pair=embedding_pairs(
                batch=(1, 64), dim=(1, 64), dtypes=ALL_DTYPES, backend=backend.name
            ),
            scale=scales(),
            bias=biases(),
        )
        def matches_oracle(pair: EmbeddingPair, scale: float, bias: float) -> None:
            assert_matches_reference(
                loss_with(backend, implementation), *pair, scale=scale, bias=bias
            )

        matches_oracle()


@pytest.mark.parametrize("implementation", ["chunked", "fused"])
def test_tiled_sigmoid_loss_matches_oracle_for_any_block_size(
    backend: Any, implementation: str
) -> None:
    @backend.examples(torch=10, jax=3)
    @given(
        pair=embedding_pairs(batch=(1, 40), dim=(1, 16), dtypes=("float32",), backend=backend.name),
        block_size=st.integers(1, 48),
        scale=scales(),
        bias=biases(),
    )
    def matches_oracle(pair: EmbeddingPair, block_size: int, scale: float, bias: float) -> None:
        loss_fn = loss_with(backend, implementation, block_size=block_size)
        assert_matches_reference(loss_fn, *pair, scale=scale, bias=bias)

    matches_oracle()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_low_precision_inputs_give_a_float32_scalar_and_gradients_in_the_input_dtype(
    backend: Any, dtype: str
) -> None:
    rng = np.random.default_rng(0)
    image = backend.array(rng.normal(size=(6, 5)), dtype)
    text = backend.array(rng.normal(size=(6, 5)), dtype)
    loss, grads = backend.value_and_grad(
        lambda i, t: backend.module.sigmoid_loss(i, t, scale=10.0, bias=-10.0), image, text
    )
    assert backend.dtype_name(loss) == "float32"
    assert tuple(loss.shape) == ()
    assert [backend.dtype_name(grad) for grad in grads] == [dtype, dtype]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_float64_inputs_are_computed_in_float64_to_the_oracles_precision(
    backend: Any, implementation: str
) -> None:
    rng = np.random.default_rng(0)
    image, text = rng.normal(size=(37, 9)) / 3, rng.normal(size=(37, 9)) / 3
    oracle = sigmoid_loss_and_grads(image, text, scale=3.0, bias=-1.0)
    loss_fn = loss_with(backend, implementation, block_size=8)  # ragged last tiles
    with backend.x64():
        arguments = [backend.array(value, "float64") for value in (image, text, 3.0, -1.0)]
        loss, grads = backend.value_and_grad(
            lambda i, t, s, b: loss_fn(i, t, scale=s, bias=b), *arguments
        )
    assert backend.dtype_name(loss) == "float64"
    assert float(loss) == pytest.approx(oracle.loss, rel=1e-13)
    expected = (oracle.grad_image_emb, oracle.grad_text_emb, oracle.grad_scale, oracle.grad_bias)
    for got, want in zip(grads, expected, strict=True):
        assert backend.dtype_name(got) == "float64"
        np.testing.assert_allclose(backend.to_numpy(got), want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_loss_is_invariant_to_jointly_permuting_pairs_and_to_swapping_image_and_text(
    backend: Any, implementation: str
) -> None:
    # JAX: one shape (one compilation); hypothesis draws the values, scale, bias and order.
    shape = {"batch": (1, 32), "dim": (1, 16)} if backend.name == "torch" else {}
    shape = shape or {"batch": (9, 9), "dim": (4, 4)}
    with backend.x64():

        @backend.examples(jax=6)
        @given(
            pair=embedding_pairs(**shape, dtypes=("float64",), backend=backend.name),
            scale=scales(),
            bias=biases(),
            data=st.data(),
        )
        def invariant(pair: EmbeddingPair, scale: float, bias: float, data: st.DataObject) -> None:
            image, text = pair
            order = np.array(data.draw(st.permutations(range(len(image))), label="order"))
            loss_fn = backend.jit(loss_with(backend, implementation))
            loss = float(loss_fn(image, text, scale=scale, bias=bias))
            permuted = float(loss_fn(image[order], text[order], scale=scale, bias=bias))
            swapped = float(loss_fn(text, image, scale=scale, bias=bias))
            assert permuted == pytest.approx(loss, rel=1e-12, abs=1e-12)
            assert swapped == pytest.approx(loss, rel=1e-12, abs=1e-12)

        invariant()


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_zero_similarity_loss_and_bias_gradient_match_closed_form(
    backend: Any, implementation: str
) -> None:
    @backend.examples(jax=4)
    @given(batch=st.integers(1, 64), bias=biases())
    @example(batch=1, bias=0.0)  # the logit is exactly 0: both kinks of softplus at once
    @example(batch=17, bias=-math.log(16))  # the balanced bias
    @example(batch=64, bias=2.5)
    def closed_form(batch: int, bias: float) -> None:
        zeros = backend.array(np.zeros((batch, 4), np.float32))
        loss_fn = loss_with(backend, implementation)
        loss, (grad_bias,) = backend.value_and_grad(
            lambda b: loss_fn(zeros, zeros, scale=10.0, bias=b), backend.array(np.float32(bias))
        )
        expected = np.logaddexp(0.0, -bias) + (batch - 1) * np.logaddexp(0.0, bias)
        assert float(loss) == pytest.approx(expected, rel=1e-5, abs=1e-6)
        expected_grad = batch / (1.0 + math.exp(-bias)) - 1.0
        assert float(grad_bias) == pytest.approx(expected_grad, rel=1e-5, abs=1e-5)

    closed_form()


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_single_pair_loss_is_softplus_of_negative_logit(backend: Any, implementation: str) -> None:
    @backend.examples(jax=5)
    @given(dim=st.integers(1, 16), seed=st.integers(0, 2**32 - 1), scale=scales(), bias=biases())
    def softplus_of_logit(dim: int, seed: int, scale: float, bias: float) -> None:
        rng = np.random.default_rng(seed)
        image = l2_normalize(rng.standard_normal((1, dim)))
        text = l2_normalize(rng.standard_normal((1, dim)))
        logit = scale * float(image[0] @ text[0]) + bias
        with backend.x64():
            loss = loss_with(backend, implementation)(
                backend.array(image), backend.array(text), scale=scale, bias=bias
            )
            assert backend.dtype_name(loss) == "float64"
            assert float(loss) == pytest.approx(
                float(np.logaddexp(0.0, -logit)), rel=1e-12, abs=1e-15
            )

    softplus_of_logit()


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("bias", [-1e4, 0.0, 1e4])
def test_loss_and_gradients_are_finite_and_exact_for_logits_up_to_1e4(
    backend: Any, implementation: str, dtype: str, bias: float
) -> None:
    # Cosines -1, 0, +1 at scale 1e4: logits span [-2e4, 2e4]; naive log(sigmoid) gives inf.
    with backend.x64():
        image = backend.array(np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]), dtype)
        text = backend.array(np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), dtype)
        assert_matches_reference(
            loss_with(backend, implementation), image, text, scale=1e4, bias=bias
        )


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_scale_and_bias_accept_python_numbers_and_0d_arrays_of_any_float_dtype(
    backend: Any, implementation: str
) -> None:
    rng = np.random.default_rng(1)
    image = backend.array(rng.normal(size=(4, 3)), "float32")
    text = backend.array(rng.normal(size=(4, 3)), "float32")
    loss_fn = loss_with(backend, implementation)
    expected = float(loss_fn(image, text, scale=2.0, bias=-1.0))
    with backend.x64():
        for dtype in ALL_DTYPES:
            scale, bias = backend.array(2.0, dtype), backend.array(-1.0, dtype)
            got = loss_fn(image, text, scale=scale, bias=bias)
            assert backend.dtype_name(got) == "float32"
            assert float(got) == pytest.approx(expected, rel=1e-6)
    assert float(loss_fn(image, text, scale=2, bias=-1)) == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------ several positives per row
WEIGHTINGS = ("uniform", "inverse_count")


@pytest.mark.parametrize("positive_weighting", WEIGHTINGS)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_grouped_loss_matches_oracle_value_and_all_four_gradients(
    backend: Any, implementation: str, positive_weighting: str
) -> None:
    # Every group pattern (unique, all equal, repeated, several captions per image, rows and
    # columns without a positive), rectangular N x M, every dtype.
    with backend.x64():

        @backend.examples(torch=15, jax=2)
        @given(
            batch=grouped_batches(dtypes=ALL_DTYPES, backend=backend.name),
            scale=scales(),
            bias=biases(),
        )
        def matches_oracle(batch: GroupedBatch, scale: float, bias: float) -> None:
            image, text, image_groups, text_groups = batch
            assert_matches_reference(
                loss_with(backend, implementation),
                image,
                text,
                scale=scale,
                bias=bias,
                image_groups=image_groups,
                text_groups=text_groups,
                positive_weighting=positive_weighting,
            )

        matches_oracle()


@pytest.mark.parametrize("implementation", ["chunked", "fused"])
def test_tiled_grouped_loss_matches_oracle_for_any_block_size(
    backend: Any, implementation: str
) -> None:
    @backend.examples(torch=10, jax=2)
    @given(
        batch=grouped_batches(
            image_batch=(1, 40), text_batch=(1, 40), dim=(1, 8), backend=backend.name
        ),
        block_size=st.integers(1, 48),
        positive_weighting=st.sampled_from(WEIGHTINGS),
    )
    def matches_oracle(batch: GroupedBatch, block_size: int, positive_weighting: str) -> None:
        image, text, image_groups, text_groups = batch
        assert_matches_reference(
            loss_with(backend, implementation, block_size=block_size),
            image,
            text,
            scale=10.0,
            bias=-4.0,
            image_groups=image_groups,
            text_groups=text_groups,
            positive_weighting=positive_weighting,
        )

    matches_oracle()


@pytest.mark.parametrize("positive_weighting", WEIGHTINGS)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_grouped_float64_inputs_equal_the_oracle_to_its_precision(
    backend: Any, implementation: str, positive_weighting: str
) -> None:
    rng = np.random.default_rng(3)
    image, text = rng.normal(size=(13, 5)) / 2, rng.normal(size=(29, 5)) / 2
    image_groups, text_groups = np.arange(13), rng.integers(-1, 13, 29)  # -1: no image
    oracle = sigmoid_loss_and_grads(
        image,
        text,
        scale=3.0,
        bias=-1.0,
        image_groups=image_groups,
        text_groups=text_groups,
        positive_weighting=positive_weighting,
    )
    loss_fn = loss_with(
        backend,
        implementation,
        block_size=4,  # ragged last tiles
        image_groups=ids_to_backend(image_groups, backend=backend.name),
        text_groups=ids_to_backend(text_groups, backend=backend.name),
        positive_weighting=positive_weighting,
    )
    with backend.x64():
        arguments = [backend.array(value, "float64") for value in (image, text, 3.0, -1.0)]
        loss, grads = backend.value_and_grad(
            lambda i, t, s, b: loss_fn(i, t, scale=s, bias=b), *arguments
        )
    assert backend.dtype_name(loss) == "float64"
    assert float(loss) == pytest.approx(oracle.loss, rel=1e-13)
    expected = (oracle.grad_image_emb, oracle.grad_text_emb, oracle.grad_scale, oracle.grad_bias)
    for got, want in zip(grads, expected, strict=True):
        assert backend.dtype_name(got) == "float64"
        np.testing.assert_allclose(backend.to_numpy(got), want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("positive_weighting", WEIGHTINGS)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_unique_groups_reduce_exactly_to_the_standard_loss(
    backend: Any, implementation: str, positive_weighting: str
) -> None:
    rng = np.random.default_rng(4)
    image = backend.array(l2_normalize(rng.normal(size=(19, 6))), "float32")
    text = backend.array(l2_normalize(rng.normal(size=(19, 6))), "float32")
    ids = ids_to_backend(np.arange(19) * 7 - 30, backend=backend.name)
    arguments = (image, text, backend.array(np.float32(10.0)), backend.array(np.float32(-4.0)))

    def loss(grouped: bool) -> Any:
        options: dict[str, Any] = {"implementation": implementation}
        if implementation != "reference":
            options["block_size"] = 5
        if grouped:
            options |= {
                "image_groups": ids,
                "text_groups": ids,
                "positive_weighting": positive_weighting,
            }
        return lambda i, t, s, b: backend.module.sigmoid_loss(i, t, scale=s, bias=b, **options)

    standard_loss, standard_grads = backend.value_and_grad(loss(False), *arguments)
    grouped_loss, grouped_grads = backend.value_and_grad(loss(True), *arguments)
    assert float(grouped_loss) == pytest.approx(float(standard_loss), rel=1e-6)
    for got, want in zip(grouped_grads, standard_grads, strict=True):
        np.testing.assert_allclose(
            backend.to_numpy(got), backend.to_numpy(want), rtol=1e-5, atol=1e-7
        )


def test_group_ids_of_any_integer_dtype_give_the_same_loss(backend: Any) -> None:
    rng = np.random.default_rng(5)
    image = backend.array(rng.normal(size=(6, 3)), "float32")
    text = backend.array(rng.normal(size=(9, 3)), "float32")
    image_ids, text_ids = np.array([0, 1, 2, 2, 3, 4]), np.array([0, 0, 1, 2, 5, 3, 3, 4, 1])
    losses = []
    for dtype in ("int8", "uint8", "int16", "int32", "int64"):
        with backend.x64():  # JAX has int64 only with x64
            losses.append(
                float(
                    backend.module.sigmoid_loss(
                        image,
                        text,
                        scale=5.0,
                        bias=-2.0,
                        image_groups=backend.array(image_ids, dtype),
                        text_groups=backend.array(text_ids, dtype),
                    )
                )
            )
    expected = sigmoid_loss_and_grads(
        backend.to_numpy(image),
        backend.to_numpy(text),
        scale=5.0,
        bias=-2.0,
        image_groups=image_ids,
        text_groups=text_ids,
    ).loss
    assert losses == pytest.approx([expected] * len(losses), rel=1e-6)
