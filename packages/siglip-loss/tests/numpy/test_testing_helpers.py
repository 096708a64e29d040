"""siglip_loss.testing: the strategies draw what they promise; the checker accepts correct losses
and rejects the known ways of getting the sigmoid loss wrong (numpy values; torch/JAX gradients
are tested in their own directories)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from siglip_loss.testing import EmbeddingPair
from siglip_loss.testing import GroupedBatch
from siglip_loss.testing import GroupPattern
from siglip_loss.testing import assert_matches_reference
from siglip_loss.testing import biases
from siglip_loss.testing import embedding_pairs
from siglip_loss.testing import group_patterns
from siglip_loss.testing import grouped_batches
from siglip_loss.testing import scales
from siglip_loss.testing import to_backend


def handwritten_loss(
    image_emb: np.ndarray, text_emb: np.ndarray, *, scale: float, bias: float
) -> float:
    # float32 accumulation for float16/float32 inputs, float64 for float64 inputs.
    dtype = np.promote_types(image_emb.dtype, np.float32)
    logits = scale * (image_emb.astype(dtype) @ text_emb.astype(dtype).T) + bias
    labels = 2.0 * np.eye(len(logits), dtype=dtype) - 1.0
    return float(np.logaddexp(0.0, -labels * logits).sum(dtype=dtype) / len(logits))


@given(
    pair=embedding_pairs(batch=(2, 9), dim=(3, 5), dtypes=("float16", "float64")),
)
def test_embedding_pairs_respect_batch_dim_and_dtype(pair: EmbeddingPair) -> None:
    image, text = pair
    assert image.shape == text.shape
    assert 2 <= image.shape[0] <= 9
    assert 3 <= image.shape[1] <= 5
    assert image.dtype == text.dtype
    assert image.dtype in (np.float16, np.float64)
    norms = np.linalg.norm(image.astype(np.float64), axis=1)
    assert np.all((np.abs(norms - 1) < 2e-3) | (norms == 0))


@given(scale=scales(min_value=0.5, max_value=300.0), bias=biases(min_value=-3.0, max_value=1.0))
def test_scales_and_biases_stay_in_their_ranges(scale: float, bias: float) -> None:
    assert 0.5 <= scale <= 300.0
    assert -3.0 <= bias <= 1.0


@given(pair=embedding_pairs(dtypes=("float32", "float64")), scale=scales(), bias=biases())
def test_checker_accepts_a_correct_numpy_loss(
    pair: EmbeddingPair, scale: float, bias: float
) -> None:
    assert_matches_reference(handwritten_loss, *pair, scale=scale, bias=bias)


def test_checker_rejects_dividing_by_batch_squared() -> None:
    def divided_by_batch_squared(image_emb, text_emb, *, scale, bias):  # type: ignore[no-untyped-def]
        return handwritten_loss(image_emb, text_emb, scale=scale, bias=bias) / len(image_emb)

    image = to_backend(np.eye(4), backend="numpy", dtype="float32")
    with pytest.raises(AssertionError, match=r"^loss: got .* float64 oracle"):
        assert_matches_reference(divided_by_batch_squared, image, image, scale=10.0, bias=-10.0)


def test_checker_rejects_positives_off_the_diagonal() -> None:
    def shifted_positives(image_emb, text_emb, *, scale, bias):  # type: ignore[no-untyped-def]
        return handwritten_loss(image_emb, np.roll(text_emb, 1, axis=0), scale=scale, bias=bias)

    rng = np.random.default_rng(0)
    image, text = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    with pytest.raises(AssertionError, match="loss"):
        assert_matches_reference(shifted_positives, image, text, scale=10.0, bias=-5.0)


def test_checker_rejects_non_scalar_and_non_finite_results() -> None:
    image = np.eye(3)
    with pytest.raises(AssertionError, match="expected a scalar"):
        assert_matches_reference(
            lambda i, t, *, scale, bias: np.zeros(3), image, image, scale=1.0, bias=0.0
        )
    with pytest.raises(AssertionError, match="expected finite values"):
        assert_matches_reference(
            lambda i, t, *, scale, bias: math.inf, image, image, scale=1.0, bias=0.0
        )


def test_checker_rejects_bad_arguments_with_clear_messages() -> None:
    image = np.eye(3)
    with pytest.raises(ValueError, match="check_grads: numpy arrays have no autodiff"):
        assert_matches_reference(
            handwritten_loss, image, image, scale=1.0, bias=0.0, check_grads=True
        )
    with pytest.raises(
        TypeError, match=r"image_emb: expected a numpy.ndarray, torch.Tensor or jax.Array, got list"
    ):
        assert_matches_reference(handwritten_loss, [[1.0]], [[1.0]], scale=1.0, bias=0.0)
    with pytest.raises(TypeError, match=r"image_emb: expected a floating dtype .* int64"):
        assert_matches_reference(
            handwritten_loss, np.eye(3, dtype=np.int64), image, scale=1.0, bias=0.0
        )
    with pytest.raises(ValueError, match=r"scale: expected a finite value, got nan"):
        assert_matches_reference(handwritten_loss, image, image, scale=math.nan, bias=0.0)


def test_strategies_reject_bad_arguments_with_clear_messages() -> None:
    with pytest.raises(ValueError, match=r"batch: expected 1 <= min <= max, got \(0, 4\)"):
        embedding_pairs(batch=(0, 4))
    with pytest.raises(ValueError, match="dtypes: numpy has no bfloat16"):
        embedding_pairs(dtypes=("bfloat16",))
    with pytest.raises(ValueError, match="dtypes: expected names among"):
        embedding_pairs(dtypes=("int8",))
    with pytest.raises(ValueError, match="backend: expected one of"):
        embedding_pairs(backend="tensorflow")
    with pytest.raises(ValueError, match="min_value: expected a finite positive scale"):
        scales(min_value=0.0)
    with pytest.raises(ValueError, match="max_value: expected >= min_value"):
        biases(min_value=1.0, max_value=0.0)


# ------------------------------------------------------------------ several positives per row
def handwritten_grouped_loss(
    image_emb: np.ndarray,
    text_emb: np.ndarray,
    *,
    scale: float,
    bias: float,
    image_groups: np.ndarray,
    text_groups: np.ndarray,
    positive_weighting: str,
) -> float:
    dtype = np.promote_types(image_emb.dtype, np.float32)
    logits = scale * (image_emb.astype(dtype) @ text_emb.astype(dtype).T) + bias
    positive = image_groups[:, None] == text_groups[None, :]
    weight = np.ones(positive.shape, dtype)
    if positive_weighting == "inverse_count":
        rows = positive.sum(axis=1, keepdims=True)
        columns = positive.sum(axis=0, keepdims=True)
        weight = np.where(positive, 0.5 / np.maximum(rows, 1) + 0.5 / np.maximum(columns, 1), 1)
    terms = weight * np.logaddexp(0.0, np.where(positive, -logits, logits))
    return float(terms.sum(dtype=dtype) / len(logits))


@given(
    groups=group_patterns(image_batch=(1, 12), text_batch=(1, 30), patterns=("unique",)),
)
def test_unique_pattern_has_at_most_one_positive_per_row_and_column(groups: GroupPattern) -> None:
    positive = groups.image_groups[:, None] == groups.text_groups[None, :]
    assert positive.sum(axis=1).max() <= 1
    assert positive.sum(axis=0).max() <= 1
    if len(groups.image_groups) == len(groups.text_groups):  # a permuted diagonal
        assert positive.sum() == len(groups.image_groups)


@given(groups=group_patterns(image_batch=(1, 12), text_batch=(1, 30)))
def test_group_patterns_give_one_integer_id_per_row(groups: GroupPattern) -> None:
    assert groups.image_groups.dtype == np.int64
    assert groups.text_groups.dtype == np.int64
    assert 1 <= len(groups.image_groups) <= 12
    assert 1 <= len(groups.text_groups) <= 30


@pytest.mark.parametrize("pattern", ["all_equal", "captions_per_image", "without_positives"])
def test_group_patterns_realise_what_their_name_says(pattern: str) -> None:
    @given(group_patterns(image_batch=(2, 10), text_batch=(2, 30), patterns=(pattern,)))
    def realised(groups: GroupPattern) -> None:
        positive = groups.image_groups[:, None] == groups.text_groups[None, :]
        if pattern == "all_equal":
            assert positive.all()
        elif pattern == "captions_per_image":
            assert len(set(groups.image_groups.tolist())) == len(groups.image_groups)
            assert (positive.sum(axis=0) == 1).all()  # every caption has exactly one image
        else:
            assert not positive[0].any()
            assert not positive[:, 0].any()

    realised()


def test_square_group_patterns_have_as_many_texts_as_images() -> None:
    @given(group_patterns(image_batch=(1, 9)))
    def square(groups: GroupPattern) -> None:
        assert len(groups.text_groups) == len(groups.image_groups)

    square()


@given(
    batch=grouped_batches(dtypes=("float32", "float64")),
    weighting=st.sampled_from(["uniform", "inverse_count"]),
)
def test_checker_accepts_a_correct_grouped_numpy_loss(batch: GroupedBatch, weighting: str) -> None:
    image, text, image_groups, text_groups = batch
    assert_matches_reference(
        handwritten_grouped_loss,
        image,
        text,
        scale=10.0,
        bias=-5.0,
        image_groups=image_groups,
        text_groups=text_groups,
        positive_weighting=weighting,
    )


def test_checker_rejects_a_grouped_loss_that_keeps_duplicate_captions_as_negatives() -> None:
    def diagonal_only(image_emb, text_emb, *, scale, bias, **groups):  # type: ignore[no-untyped-def]
        return handwritten_loss(image_emb, text_emb, scale=scale, bias=bias)

    image = np.eye(4)
    ids = np.array([0, 0, 1, 1])  # rows 0 and 1 caption the same image
    with pytest.raises(
        AssertionError, match=r"^loss: got .* float64 oracle .* image_groups \[0, 0, 1, 1\]"
    ):
        assert_matches_reference(
            diagonal_only, image, image, scale=10.0, bias=-5.0, image_groups=ids, text_groups=ids
        )


def test_checker_rejects_dividing_by_n_times_m() -> None:
    # SigLIP+'s normalisation (siglip-kernel) differs from ours by the factor M.
    def divided_by_pairs(image_emb, text_emb, **options):  # type: ignore[no-untyped-def]
        return handwritten_grouped_loss(image_emb, text_emb, **options) / len(text_emb)

    rng = np.random.default_rng(0)
    image, text = rng.normal(size=(3, 4)), rng.normal(size=(6, 4))
    with pytest.raises(AssertionError, match=r"^loss: got"):
        assert_matches_reference(
            divided_by_pairs,
            image,
            text,
            scale=10.0,
            bias=-5.0,
            image_groups=np.arange(3),
            text_groups=np.repeat(np.arange(3), 2),
        )


def test_checker_rejects_bad_group_arguments_with_clear_messages() -> None:
    image = np.eye(3)
    with pytest.raises(
        ValueError, match=r"text_emb: expected batch 3 to match image_emb without group ids"
    ):
        assert_matches_reference(handwritten_loss, image, np.eye(4, 3), scale=1.0, bias=0.0)
    with pytest.raises(
        ValueError, match=r"text_groups: expected an integer array together with image_groups"
    ):
        assert_matches_reference(
            handwritten_grouped_loss, image, image, scale=1.0, bias=0.0, image_groups=np.arange(3)
        )
    with pytest.raises(TypeError, match=r"image_groups: expected an integer dtype .* got float64"):
        assert_matches_reference(
            handwritten_grouped_loss,
            image,
            image,
            scale=1.0,
            bias=0.0,
            image_groups=np.zeros(3),
            text_groups=np.arange(3),
        )
    with pytest.raises(ValueError, match=r"positive_weighting: expected one of"):
        assert_matches_reference(
            handwritten_grouped_loss,
            image,
            image,
            scale=1.0,
            bias=0.0,
            image_groups=np.arange(3),
            text_groups=np.arange(3),
            positive_weighting="mean",
        )


def test_group_strategies_reject_bad_arguments_with_clear_messages() -> None:
    with pytest.raises(ValueError, match=r"image_batch: expected 1 <= min <= max, got \(0, 0\)"):
        group_patterns(image_batch=0)
    with pytest.raises(ValueError, match=r"patterns: expected names among"):
        group_patterns(image_batch=3, patterns=("diagonal",))
    with pytest.raises(TypeError, match=r"patterns: expected a non-empty sequence of names"):
        group_patterns(image_batch=3, patterns="unique")
    with pytest.raises(ValueError, match="backend: expected one of"):
        group_patterns(image_batch=3, backend="tensorflow")
    with pytest.raises(ValueError, match="dtypes: numpy has no bfloat16"):
        grouped_batches(dtypes=("bfloat16",))
