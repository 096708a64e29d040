"""The numpy float64 oracle against closed forms, finite differences and the loss's symmetries."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from siglip_loss.numpy import l2_normalize
from siglip_loss.numpy import positive_pairs_and_weights
from siglip_loss.numpy import sigmoid_loss
from siglip_loss.numpy import sigmoid_loss_and_grads
from siglip_loss.numpy import softmax_loss
from siglip_loss.numpy import softmax_loss_and_grads
from siglip_loss.testing import EmbeddingPair
from siglip_loss.testing import GroupedBatch
from siglip_loss.testing import biases
from siglip_loss.testing import embedding_pairs
from siglip_loss.testing import grouped_batches
from siglip_loss.testing import scales

float64_pairs = embedding_pairs(batch=(1, 64), dim=(1, 64), dtypes=("float64",))


def softplus(x: float) -> float:
    return float(np.logaddexp(0.0, x))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@given(batch=st.integers(1, 300), bias=biases())
def test_zero_similarity_loss_and_bias_gradient_match_closed_form(batch: int, bias: float) -> None:
    zeros = np.zeros((batch, 3))
    result = sigmoid_loss_and_grads(zeros, zeros, scale=10.0, bias=bias)
    assert result.loss == pytest.approx(softplus(-bias) + (batch - 1) * softplus(bias), rel=1e-12)
    assert result.grad_bias == pytest.approx(batch * sigmoid(bias) - 1.0, rel=1e-10, abs=1e-12)
    assert result.grad_scale == 0.0
    assert not result.grad_image_emb.any()
    assert not result.grad_text_emb.any()


@pytest.mark.parametrize(
    ("batch", "loss", "grad_bias"), [(1024, 10.047, -0.954), (22027, 11.000, 0.000)]
)
def test_zero_similarity_anchor_values_divide_by_batch_not_batch_squared(
    batch: int, loss: float, grad_bias: float
) -> None:
    # The table of docs/loss.md, "Initial values" (b = -10). An N^2 divisor would give ~0.01 at N=1024.
    if batch > 2048:  # an N x N float64 matrix of 22k would be 3.9 GB: use the closed form
        value = softplus(10.0) + (batch - 1) * softplus(-10.0)
        derivative = batch * sigmoid(-10.0) - 1.0
    else:
        zeros = np.zeros((batch, 1))
        result = sigmoid_loss_and_grads(zeros, zeros, scale=10.0, bias=-10.0)
        value, derivative = result.loss, result.grad_bias
    # The table has 3 decimals (10.047 is 10.04649 rounded up).
    assert value == pytest.approx(loss, abs=1e-3)
    assert derivative == pytest.approx(grad_bias, abs=1e-3)
    # b* = -log(N - 1) balances positives and negatives: d/dbias = 0 there.
    balanced = sigmoid_loss_and_grads(
        np.zeros((64, 1)), np.zeros((64, 1)), scale=1.0, bias=-math.log(63)
    )
    assert balanced.grad_bias == pytest.approx(0.0, abs=1e-12)


@given(dim=st.integers(1, 16), seed=st.integers(0, 2**32 - 1), scale=scales(), bias=biases())
def test_single_pair_loss_is_softplus_of_negative_logit(
    dim: int, seed: int, scale: float, bias: float
) -> None:
    rng = np.random.default_rng(seed)
    image, text = l2_normalize(rng.normal(size=(1, dim))), l2_normalize(rng.normal(size=(1, dim)))
    similarity = float(image[0] @ text[0])
    result = sigmoid_loss_and_grads(image, text, scale=scale, bias=bias)
    assert result.loss == pytest.approx(softplus(-(scale * similarity + bias)), rel=1e-12)
    assert result.grad_bias == pytest.approx(sigmoid(scale * similarity + bias) - 1.0, abs=1e-12)


@given(pair=float64_pairs, scale=scales(), bias=biases(), data=st.data())
def test_loss_is_invariant_to_jointly_permuting_the_pairs(
    pair: EmbeddingPair, scale: float, bias: float, data: st.DataObject
) -> None:
    image, text = pair
    order = np.array(data.draw(st.permutations(range(image.shape[0])), label="order"))
    result = sigmoid_loss_and_grads(image, text, scale=scale, bias=bias)
    permuted = sigmoid_loss_and_grads(image[order], text[order], scale=scale, bias=bias)
    assert permuted.loss == pytest.approx(result.loss, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(permuted.grad_image_emb, result.grad_image_emb[order], atol=1e-12)
    np.testing.assert_allclose(permuted.grad_text_emb, result.grad_text_emb[order], atol=1e-12)
    assert permuted.grad_scale == pytest.approx(result.grad_scale, rel=1e-10, abs=1e-12)
    assert permuted.grad_bias == pytest.approx(result.grad_bias, rel=1e-10, abs=1e-12)


@given(pair=float64_pairs, scale=scales(), bias=biases())
def test_loss_is_invariant_to_swapping_image_and_text(
    pair: EmbeddingPair, scale: float, bias: float
) -> None:
    image, text = pair
    result = sigmoid_loss_and_grads(image, text, scale=scale, bias=bias)
    swapped = sigmoid_loss_and_grads(text, image, scale=scale, bias=bias)
    assert swapped.loss == pytest.approx(result.loss, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(swapped.grad_image_emb, result.grad_text_emb, atol=1e-12)
    np.testing.assert_allclose(swapped.grad_text_emb, result.grad_image_emb, atol=1e-12)
    assert swapped.grad_bias == pytest.approx(result.grad_bias, rel=1e-10, abs=1e-12)


@given(
    pair=embedding_pairs(batch=(1, 5), dim=(1, 4), dtypes=("float64",), normalized=False),
    scale=scales(min_value=0.1, max_value=20.0),
    bias=biases(min_value=-5.0, max_value=5.0),
)
def test_oracle_gradients_equal_central_finite_differences(
    pair: EmbeddingPair, scale: float, bias: float
) -> None:
    image, text = pair
    step = 1e-6
    result = sigmoid_loss_and_grads(image, text, scale=scale, bias=bias)

    def loss_at(image: np.ndarray, text: np.ndarray, scale: float, bias: float) -> float:
        return sigmoid_loss(image, text, scale=scale, bias=bias)

    def central_difference(loss_of_delta: Callable[[float], float]) -> float:
        return (loss_of_delta(+step) - loss_of_delta(-step)) / (2 * step)

    for which, array, analytic in (
        ("image", image, result.grad_image_emb),
        ("text", text, result.grad_text_emb),
    ):
        for index in np.ndindex(array.shape):

            def shifted(delta: float, index: tuple[int, ...] = index, which: str = which) -> float:
                moved_image, moved_text = image.copy(), text.copy()
                (moved_image if which == "image" else moved_text)[index] += delta
                return loss_at(moved_image, moved_text, scale, bias)

            assert analytic[index] == pytest.approx(central_difference(shifted), rel=1e-5, abs=1e-7)
    numeric_scale = central_difference(lambda delta: loss_at(image, text, scale + delta, bias))
    numeric_bias = central_difference(lambda delta: loss_at(image, text, scale, bias + delta))
    assert result.grad_scale == pytest.approx(numeric_scale, rel=1e-5, abs=1e-7)
    assert result.grad_bias == pytest.approx(numeric_bias, rel=1e-5, abs=1e-7)


@given(pair=float64_pairs, scale=scales(), bias=biases())
def test_oracle_equals_an_elementwise_loop_over_pairs(
    pair: EmbeddingPair, scale: float, bias: float
) -> None:
    # An independent formulation: -(1/N) sum_ij log sigma(z_ij u_ij) written term by term.
    image, text = pair
    batch = image.shape[0]
    total = 0.0
    for i in range(batch):
        for j in range(batch):
            label = 1.0 if i == j else -1.0
            total += softplus(-label * (scale * float(image[i] @ text[j]) + bias))
    assert sigmoid_loss(image, text, scale=scale, bias=bias) == pytest.approx(
        total / batch, rel=1e-11
    )


def test_oracle_is_finite_and_exact_for_logits_up_to_1e4() -> None:
    image = np.array([[1.0, 0.0], [0.0, 1.0]])
    text = np.array([[-1.0, 0.0], [1.0, 0.0]])  # cosines: [[-1, 1], [0, 0]]
    result = sigmoid_loss_and_grads(image, text, scale=1e4, bias=0.0)
    # Row 0: positive at -1e4 costs 1e4, negative at +1e4 costs 1e4; row 1: 2 * log 2.
    assert result.loss == pytest.approx((2e4 + 2 * math.log(2.0)) / 2, rel=1e-15)
    for gradient in (result.grad_image_emb, result.grad_text_emb):
        assert np.all(np.isfinite(gradient))
    assert math.isfinite(result.grad_scale)
    assert math.isfinite(result.grad_bias)


@given(batch=st.integers(1, 40), scale=scales())
def test_softmax_loss_at_zero_similarity_is_log_batch(batch: int, scale: float) -> None:
    zeros = np.zeros((batch, 2))
    assert softmax_loss(zeros, zeros, scale=scale) == pytest.approx(math.log(batch), rel=1e-12)


@given(pair=float64_pairs, scale=scales())
def test_softmax_loss_equals_mean_negative_log_probability_of_the_match(
    pair: EmbeddingPair, scale: float
) -> None:
    image, text = pair
    logits = scale * image @ text.T
    row_probability = np.exp(logits - logits.max(axis=1, keepdims=True))
    row_probability /= row_probability.sum(axis=1, keepdims=True)
    column_probability = np.exp(logits - logits.max(axis=0, keepdims=True))
    column_probability /= column_probability.sum(axis=0, keepdims=True)
    expected = -0.5 * (
        np.mean(np.log(np.diag(row_probability))) + np.mean(np.log(np.diag(column_probability)))
    )
    assert softmax_loss(image, text, scale=scale) == pytest.approx(expected, rel=1e-9, abs=1e-9)


@given(
    pair=embedding_pairs(batch=(1, 5), dim=(1, 4), dtypes=("float64",), normalized=False),
    scale=scales(min_value=0.1, max_value=20.0),
)
def test_softmax_oracle_gradients_equal_central_finite_differences(
    pair: EmbeddingPair, scale: float
) -> None:
    image, text = pair
    step = 1e-6
    result = softmax_loss_and_grads(image, text, scale=scale)
    assert result.loss == softmax_loss(image, text, scale=scale)

    def central_difference(loss_of_delta: Callable[[float], float]) -> float:
        return (loss_of_delta(+step) - loss_of_delta(-step)) / (2 * step)

    for which, array, analytic in (
        ("image", image, result.grad_image_emb),
        ("text", text, result.grad_text_emb),
    ):
        for index in np.ndindex(array.shape):

            def shifted(delta: float, index: tuple[int, ...] = index, which: str = which) -> float:
                moved_image, moved_text = image.copy(), text.copy()
                (moved_image if which == "image" else moved_text)[index] += delta
                return softmax_loss(moved_image, moved_text, scale=scale)

            assert analytic[index] == pytest.approx(central_difference(shifted), rel=1e-5, abs=1e-7)
    numeric_scale = central_difference(lambda delta: softmax_loss(image, text, scale=scale + delta))
    assert result.grad_scale == pytest.approx(numeric_scale, rel=1e-5, abs=1e-7)


def test_l2_normalize_gives_unit_rows_and_keeps_zero_rows_zero() -> None:
    rows = np.array([[3.0, 4.0], [0.0, 0.0], [1e-12, 0.0]])
    normalized = l2_normalize(rows)
    np.testing.assert_allclose(normalized[0], [0.6, 0.8])
    np.testing.assert_array_equal(normalized[1], [0.0, 0.0])
    np.testing.assert_allclose(normalized[2], [1e-4, 0.0])  # below eps: divided by eps
    assert normalized.dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_l2_normalize_returns_the_input_dtype(dtype: type) -> None:
    normalized = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]], dtype=dtype))
    assert normalized.dtype == dtype
    np.testing.assert_array_equal(normalized, np.array([[0.6, 0.8], [0.0, 0.0]], dtype=dtype))


@pytest.mark.parametrize("values", [np.array([[3, 4]]), np.array([[True, False]])])
def test_l2_normalize_rejects_integer_and_bool_input_naming_the_argument(
    values: np.ndarray,
) -> None:
    with pytest.raises(TypeError, match=r"x: expected a floating dtype, got (int64|bool)"):
        l2_normalize(values)


# ------------------------------------------------------------------ several positives per row
float64_grouped = grouped_batches(dtypes=("float64",))


@given(batch=float64_grouped, weighting=st.sampled_from(["uniform", "inverse_count"]))
def test_grouped_oracle_equals_an_elementwise_loop_over_pairs(
    batch: GroupedBatch, weighting: str
) -> None:
    # The definition term by term: z = +1 where the ids match, w from the row and column counts.
    image, text, image_groups, text_groups = batch
    scale, bias = 7.0, -3.0
    total = 0.0
    for i in range(len(image)):
        for j in range(len(text)):
            positive = image_groups[i] == text_groups[j]
            weight = 1.0
            if positive and weighting == "inverse_count":
                row_count = int(np.sum(text_groups == image_groups[i]))
                column_count = int(np.sum(image_groups == text_groups[j]))
                weight = 0.5 * (1.0 / row_count + 1.0 / column_count)
            label = 1.0 if positive else -1.0
            total += weight * softplus(-label * (scale * float(image[i] @ text[j]) + bias))
    got = sigmoid_loss(
        image,
        text,
        scale=scale,
        bias=bias,
        image_groups=image_groups,
        text_groups=text_groups,
        positive_weighting=weighting,
    )
    assert got == pytest.approx(total / len(image), rel=1e-11)


@given(
    batch=grouped_batches(image_batch=(1, 4), text_batch=(1, 5), dim=(1, 3), dtypes=("float64",)),
    weighting=st.sampled_from(["uniform", "inverse_count"]),
    scale=scales(min_value=0.1, max_value=20.0),
    bias=biases(min_value=-5.0, max_value=5.0),
)
def test_grouped_oracle_gradients_equal_central_finite_differences(
    batch: GroupedBatch, weighting: str, scale: float, bias: float
) -> None:
    image, text, image_groups, text_groups = batch
    groups = {
        "image_groups": image_groups,
        "text_groups": text_groups,
        "positive_weighting": weighting,
    }
    step = 1e-6
    result = sigmoid_loss_and_grads(image, text, scale=scale, bias=bias, **groups)

    def loss_at(image: np.ndarray, text: np.ndarray, scale: float, bias: float) -> float:
        return sigmoid_loss(image, text, scale=scale, bias=bias, **groups)

    def central_difference(loss_of_delta: Callable[[float], float]) -> float:
        return (loss_of_delta(+step) - loss_of_delta(-step)) / (2 * step)

    for which, array, analytic in (
        ("image", image, result.grad_image_emb),
        ("text", text, result.grad_text_emb),
    ):
        assert analytic.shape == array.shape
        for index in np.ndindex(array.shape):

            def shifted(delta: float, index: tuple[int, ...] = index, which: str = which) -> float:
                moved_image, moved_text = image.copy(), text.copy()
                (moved_image if which == "image" else moved_text)[index] += delta
                return loss_at(moved_image, moved_text, scale, bias)

            assert analytic[index] == pytest.approx(central_difference(shifted), rel=1e-5, abs=1e-7)
    numeric_scale = central_difference(lambda delta: loss_at(image, text, scale + delta, bias))
    numeric_bias = central_difference(lambda delta: loss_at(image, text, scale, bias + delta))
    assert result.grad_scale == pytest.approx(numeric_scale, rel=1e-5, abs=1e-7)
    assert result.grad_bias == pytest.approx(numeric_bias, rel=1e-5, abs=1e-7)


@given(
    pair=float64_pairs,
    weighting=st.sampled_from(["uniform", "inverse_count"]),
    data=st.data(),
)
def test_unique_ids_give_exactly_the_standard_loss_in_any_order(
    pair: EmbeddingPair, weighting: str, data: st.DataObject
) -> None:
    # Distinct ids matched by a permutation: the positives are a permuted diagonal, k = 1
    # everywhere, so both weightings reduce to the single-positive loss of the aligned pairs.
    image, text = pair
    order = np.array(data.draw(st.permutations(range(len(image))), label="order"))
    ids = np.arange(len(image)) + 100
    standard = sigmoid_loss_and_grads(image, text, scale=10.0, bias=-4.0)
    grouped = sigmoid_loss_and_grads(
        image,
        text[order],
        scale=10.0,
        bias=-4.0,
        image_groups=ids,
        text_groups=ids[order],
        positive_weighting=weighting,
    )
    assert grouped.loss == pytest.approx(standard.loss, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(grouped.grad_image_emb, standard.grad_image_emb, atol=1e-12)
    np.testing.assert_allclose(grouped.grad_text_emb, standard.grad_text_emb[order], atol=1e-12)
    assert grouped.grad_scale == pytest.approx(standard.grad_scale, rel=1e-10, abs=1e-12)
    assert grouped.grad_bias == pytest.approx(standard.grad_bias, rel=1e-10, abs=1e-12)


@given(
    images=st.integers(1, 12),
    captions=st.integers(1, 6),
    bias=biases(),
    weighting=st.sampled_from(["uniform", "inverse_count"]),
)
def test_zero_similarity_with_k_captions_per_image_matches_closed_form(
    images: int, captions: int, bias: float, weighting: str
) -> None:
    # N images with k captions each (M = k N): every row has k positives and M - k negatives at
    # logit b. uniform: L0 = k sp(-b) + (M - k) sp(b), dL/db = M s(b) - k; inverse_count weighs
    # each positive (1/k + 1) / 2 (every column has one positive).
    image_ids = np.arange(images)
    text_ids = np.repeat(image_ids, captions)
    result = sigmoid_loss_and_grads(
        np.zeros((images, 3)),
        np.zeros((images * captions, 3)),
        scale=10.0,
        bias=bias,
        image_groups=image_ids,
        text_groups=text_ids,
        positive_weighting=weighting,
    )
    weight = 1.0 if weighting == "uniform" else 0.5 * (1.0 / captions + 1.0)
    negatives = images * captions - captions
    expected = captions * weight * softplus(-bias) + negatives * softplus(bias)
    assert result.loss == pytest.approx(expected, rel=1e-12)
    expected_grad = captions * weight * (sigmoid(bias) - 1.0) + negatives * sigmoid(bias)
    assert result.grad_bias == pytest.approx(expected_grad, rel=1e-10, abs=1e-12)


def test_inverse_count_weighs_a_positive_by_the_mean_of_its_inverse_row_and_column_counts() -> None:
    # Image 0 has 3 captions, image 1 one, image 2 two; each caption belongs to one image
    # (k'_j = 1), so a positive of row i weighs (1/k_i + 1) / 2; negatives weigh 1.
    weights = {}
    for weighting in ("uniform", "inverse_count"):
        _, weight = positive_pairs_and_weights(
            np.array([0, 1, 2]), np.array([0, 0, 0, 1, 2, 2]), positive_weighting=weighting
        )
        weights[weighting] = weight
    np.testing.assert_array_equal(weights["uniform"], np.ones((3, 6)))
    expected = np.ones((3, 6))
    expected[0, :3] = 0.5 * (1 / 3 + 1)
    expected[1, 3] = 1.0
    expected[2, 4:] = 0.5 * (1 / 2 + 1)
    np.testing.assert_allclose(weights["inverse_count"], expected, rtol=1e-15)
