"""Metrics against hand-made answers and a brute-force sorting oracle."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import siglip_eval._metrics as metrics_module
from siglip_eval import retrieval_metrics
from siglip_eval import zeroshot_metrics
from siglip_eval._metrics import classification_ranks
from siglip_eval._metrics import confusion_matrix
from siglip_eval._metrics import l2_normalize
from siglip_eval._metrics import recall_at_k
from siglip_eval._metrics import retrieval_ranks
from siglip_eval._metrics import zeroshot_scores


def oracle_rank(scores: np.ndarray, positives: set[int], ties: str) -> int:
    """Position of the first positive after sorting candidates by an explicit key."""
    if ties == "index":
        order = sorted(range(len(scores)), key=lambda j: (-scores[j], j))
    elif ties == "pessimistic":
        order = sorted(range(len(scores)), key=lambda j: (-scores[j], j in positives))
    else:
        order = sorted(range(len(scores)), key=lambda j: (-scores[j], j not in positives))
    return next(position for position, j in enumerate(order) if j in positives)


def unit(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


# ---------------------------------------------------------------- hand-made answers


def test_perfect_embeddings_score_one_everywhere() -> None:
    classes = np.eye(6)
    labels = np.array([0, 1, 2, 3, 4, 5, 5, 0])
    assert zeroshot_metrics(classes[labels] * 3.0, classes, labels) == {
        "top1": 1.0,
        "top5": 1.0,
        "mean_per_class_recall": 1.0,
    }
    text_to_image = np.array([0, 0, 1, 2, 2, 2])
    result = retrieval_metrics(np.eye(3), np.eye(3)[text_to_image], text_to_image)
    assert set(result.values()) == {1.0}


def test_known_mistakes_give_known_fractions() -> None:
    # 4 images of class 0, 1 of class 1; one class-0 image is predicted as class 1.
    class_emb = np.eye(2)
    image_emb = np.array([[1, 0], [1, 0], [1, 0], [0.2, 1], [0, 1]], dtype=float)
    labels = np.array([0, 0, 0, 0, 1])
    result = zeroshot_metrics(image_emb, class_emb, labels)
    assert result["top1"] == pytest.approx(4 / 5)
    assert result["mean_per_class_recall"] == pytest.approx((3 / 4 + 1) / 2)
    assert np.isnan(result["top5"])  # fewer than 5 classes, as CLIP_benchmark


def test_top5_counts_the_true_class_in_the_first_five() -> None:
    class_emb = np.eye(7)
    # Class 6 has the 5th highest score: inside the top 5; class 0 is 6th: outside.
    image = np.array([[0.5, 0.9, 0.8, 0.7, 0.6, 0.0, 0.55]])
    assert zeroshot_metrics(image, class_emb, [6])["top5"] == 1.0
    assert zeroshot_metrics(image, class_emb, [0])["top5"] == 0.0


def test_adversarial_ties_all_scores_equal() -> None:
    # Every image has the same embedding and all classes are equidistant: all scores tie.
    class_emb = np.eye(5)
    image_emb = np.ones((5, 5))
    labels = np.arange(5)
    assert zeroshot_metrics(image_emb, class_emb, labels, ties="pessimistic")["top1"] == 0.0
    assert zeroshot_metrics(image_emb, class_emb, labels, ties="optimistic")["top1"] == 1.0
    # "index": argmax picks class 0 for every image; only the class-0 image is right.
    index = zeroshot_metrics(image_emb, class_emb, labels, ties="index")
    assert index["top1"] == pytest.approx(1 / 5)
    assert index["top5"] == 1.0
    assert index["mean_per_class_recall"] == pytest.approx(1 / 5)


def test_adversarial_ties_in_retrieval() -> None:
    # A collapsed model: every image and caption embeds to the same vector.
    text_to_image = np.array([0, 1, 2, 3])
    same = np.ones((4, 3))
    pessimistic = retrieval_metrics(same, same, text_to_image, ks=(1, 4), ties="pessimistic")
    assert pessimistic == {
        "image_to_text_R@1": 0.0,
        "image_to_text_R@4": 1.0,
        "text_to_image_R@1": 0.0,
        "text_to_image_R@4": 1.0,
    }
    index = retrieval_metrics(same, same, text_to_image, ks=(1,), ties="index")
    assert index == {"image_to_text_R@1": 0.25, "text_to_image_R@1": 0.25}


def test_random_embeddings_give_chance_level() -> None:
    rng = np.random.default_rng(0)
    classes, images = 50, 20000
    result = zeroshot_metrics(
        rng.normal(size=(images, 32)),
        rng.normal(size=(classes, 32)),
        rng.integers(0, classes, images),
    )
    assert result["top1"] == pytest.approx(1 / classes, abs=0.01)
    assert result["top5"] == pytest.approx(5 / classes, abs=0.02)


def test_k_beyond_the_candidates_counts_every_query() -> None:
    text_to_image = np.array([0, 1])
    rng = np.random.default_rng(1)
    result = retrieval_metrics(
        rng.normal(size=(2, 4)), rng.normal(size=(2, 4)), text_to_image, ks=(10,)
    )
    assert result == {"image_to_text_R@10": 1.0, "text_to_image_R@10": 1.0}


def test_other_captions_of_the_same_image_do_not_count_against_it() -> None:
    # Image 0 has captions 0 and 1; caption 1 is closest, caption 0 second: R@1 is a hit.
    image_emb = np.array([[1.0, 0.0], [0.0, 1.0]])
    text_emb = np.array([[1.0, 0.3], [1.0, 0.0], [0.0, 1.0]])
    ranks, _ = retrieval_ranks(image_emb, text_emb, [0, 0, 1])
    assert ranks.tolist() == [0, 0]


def test_confusion_matrix_rows_are_true_classes() -> None:
    matrix = confusion_matrix([0, 0, 1, 2], [0, 2, 1, 2], num_classes=3)
    assert matrix.tolist() == [[1, 0, 1], [0, 1, 0], [0, 0, 1]]


def test_logits_rank_like_cosines() -> None:
    rng = np.random.default_rng(2)
    image_emb, class_emb = rng.normal(size=(30, 8)), rng.normal(size=(10, 8))
    logits = zeroshot_scores(image_emb, class_emb, scale=112.3, bias=-16.5)
    cosines = zeroshot_scores(image_emb, class_emb)
    np.testing.assert_allclose(logits, 112.3 * cosines - 16.5)
    assert (np.argsort(-logits, axis=1) == np.argsort(-cosines, axis=1)).all()


# ---------------------------------------------------------------- properties vs the oracle


@st.composite
def score_matrices(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    rows, columns = draw(st.integers(1, 12)), draw(st.integers(1, 9))
    # Few distinct values: plenty of ties.
    values = draw(st.lists(st.integers(-2, 2), min_size=rows * columns, max_size=rows * columns))
    labels = draw(st.lists(st.integers(0, columns - 1), min_size=rows, max_size=rows))
    return np.asarray(values, dtype=float).reshape(rows, columns), np.asarray(labels)


@given(score_matrices(), st.sampled_from(["index", "pessimistic", "optimistic"]))
def test_classification_ranks_equal_sorting_oracle_for_any_ties(problem, ties: str) -> None:
    scores, labels = problem
    expected = [oracle_rank(row, {int(label)}, ties) for row, label in zip(scores, labels)]
    assert classification_ranks(scores, labels, ties=ties).tolist() == expected


@given(score_matrices())
def test_index_rule_top1_equals_argmax_accuracy(problem) -> None:
    scores, labels = problem
    ranks = classification_ranks(scores, labels, ties="index")
    assert ((ranks == 0) == (np.argmax(scores, axis=1) == labels)).all()


def exact_unit_rows(draw: st.DrawFn, rows: int, dim: int) -> np.ndarray:
    """Rows of 0/±1 with 1 or 4 non-zeros (norm 1 or 2): every cosine is exact in any summation
    order, so exact ties stay exact however the score matrix is chunked."""
    matrix = np.zeros((rows, dim))
    for row in range(rows):
        count = draw(st.sampled_from([1, 4] if dim >= 4 else [1]))
        columns = draw(
            st.lists(st.integers(0, dim - 1), min_size=count, max_size=count, unique=True)
        )
        for column in columns:
            matrix[row, column] = draw(st.sampled_from([-1.0, 1.0]))
    return matrix


@st.composite
def retrieval_problems(draw: st.DrawFn):
    images, dim = draw(st.integers(1, 8)), draw(st.integers(1, 5))
    extra = draw(st.lists(st.integers(0, images - 1), max_size=8))
    text_to_image = np.asarray(list(range(images)) + extra)
    draw(st.randoms()).shuffle(text_to_image)
    return (
        exact_unit_rows(draw, images, dim),
        exact_unit_rows(draw, len(text_to_image), dim),
        text_to_image,
    )


@given(retrieval_problems(), st.sampled_from(["index", "pessimistic", "optimistic"]))
def test_retrieval_ranks_equal_sorting_oracle_for_any_ties(problem, ties: str) -> None:
    image_emb, text_emb, text_to_image = problem
    scores = unit(text_emb) @ unit(image_emb).T
    image_ranks, text_ranks = retrieval_ranks(image_emb, text_emb, text_to_image, ties=ties)
    expected_text = [
        oracle_rank(scores[j], {int(text_to_image[j])}, ties) for j in range(len(text_to_image))
    ]
    image_scores = unit(image_emb) @ unit(text_emb).T
    expected_image = [
        oracle_rank(image_scores[i], set(np.flatnonzero(text_to_image == i).tolist()), ties)
        for i in range(image_emb.shape[0])
    ]
    assert text_ranks.tolist() == expected_text
    assert image_ranks.tolist() == expected_image


@given(retrieval_problems(), st.integers(1, 4))
def test_chunked_ranks_equal_unchunked_for_any_chunk_size(problem, chunk: int) -> None:
    image_emb, text_emb, text_to_image = problem
    whole = retrieval_ranks(image_emb, text_emb, text_to_image)
    original = metrics_module.ROW_CHUNK
    try:
        metrics_module.ROW_CHUNK = chunk
        chunked = retrieval_ranks(image_emb, text_emb, text_to_image)
    finally:
        metrics_module.ROW_CHUNK = original
    assert all((a == b).all() for a, b in zip(whole, chunked))


@given(retrieval_problems())
def test_tie_rules_are_ordered_pessimistic_index_optimistic(problem) -> None:
    image_emb, text_emb, text_to_image = problem
    low = retrieval_metrics(image_emb, text_emb, text_to_image, ties="pessimistic")
    mid = retrieval_metrics(image_emb, text_emb, text_to_image, ties="index")
    high = retrieval_metrics(image_emb, text_emb, text_to_image, ties="optimistic")
    for key in low:
        assert low[key] <= mid[key] <= high[key]


@given(st.integers(0, 2**32 - 1), st.floats(0.1, 500.0))
def test_zeroshot_metrics_invariant_to_scaling_the_embeddings(
    seed: int, image_scale: float
) -> None:
    rng = np.random.default_rng(seed)
    image_emb, class_emb = rng.normal(size=(20, 6)), rng.normal(size=(7, 6))
    labels = rng.integers(0, 7, 20)
    assert zeroshot_metrics(image_emb * image_scale, class_emb, labels) == zeroshot_metrics(
        image_emb, class_emb, labels
    )


# ---------------------------------------------------------------- bad input


def test_nan_embedding_names_the_row() -> None:
    image_emb = np.ones((3, 2))
    image_emb[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"image_emb.*NaN/inf in row 1"):
        zeroshot_metrics(image_emb, np.eye(2), [0, 1, 0])


def test_zero_embedding_names_the_row() -> None:
    with pytest.raises(ValueError, match=r"text_emb.*all-zero row 2"):
        retrieval_metrics(np.eye(2), np.array([[1.0, 0], [0, 1], [0, 0]]), [0, 1, 1])


def test_image_without_caption_is_an_error_not_a_silent_miss() -> None:
    with pytest.raises(ValueError, match=r"image 1\b|first image 1"):
        retrieval_metrics(np.eye(3), np.eye(3)[[0, 2]], [0, 2])


def test_caption_count_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"text_to_image.*expected 3 entries"):
        retrieval_metrics(np.eye(3), np.eye(3), [0, 1])


def test_label_out_of_range_names_the_row() -> None:
    with pytest.raises(ValueError, match=r"labels.*got 5 at row 1"):
        zeroshot_metrics(np.eye(2), np.eye(2), [0, 5])


def test_empty_input_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one row"):
        zeroshot_metrics(np.zeros((0, 2)), np.eye(2), [])


def test_bad_tie_rule_and_bad_k() -> None:
    with pytest.raises(ValueError, match="ties"):
        zeroshot_metrics(np.eye(2), np.eye(2), [0, 1], ties="random")
    with pytest.raises(ValueError, match="ks"):
        retrieval_metrics(np.eye(2), np.eye(2), [0, 1], ks=(0,))


def test_helpers() -> None:
    assert l2_normalize([[3.0, 4.0]]).tolist() == [[0.6, 0.8]]
    assert recall_at_k([0, 3, 9], 5) == pytest.approx(2 / 3)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_l2_normalize_keeps_the_dtype_and_maps_a_zero_row_to_zero(dtype) -> None:
    # The toolkit's one rule: x / max(||x||, 1e-8), zero row -> zero row (no NaN, no error).
    rows = np.array([[3.0, 4.0], [0.0, 0.0], [1e-12, 0.0]], dtype=dtype)
    with np.errstate(all="raise"):
        normalized = l2_normalize(rows)
    assert normalized.dtype == dtype
    np.testing.assert_allclose(normalized[0], [0.6, 0.8], rtol=1e-3)
    assert normalized[1].tolist() == [0.0, 0.0]
    assert np.all(np.isfinite(normalized))
    assert np.abs(normalized[2]).max() <= 1e-4  # below eps the row is divided by eps, not its norm


@pytest.mark.parametrize("values", [np.array([[3, 4]]), np.array([[True, False]])])
def test_l2_normalize_rejects_integer_and_bool_input(values) -> None:
    with pytest.raises(TypeError, match=r"embeddings.*floating-point"):
        l2_normalize(values)
