"""Metrics on plain arrays: zero-shot classification and image-text retrieval.

All scores are cosine similarities of L2-normalised embeddings, computed in float64. A SigLIP logit
``scale * cos + bias`` with ``scale > 0`` is a strictly increasing function of the cosine, so every
ranking (and every metric below) is the same for logits and for cosines.

Ties. A candidate whose score equals the positive's score is ranked by the rule ``ties``:

- ``"index"`` (default): equal scores are ordered by candidate index, lower index first, like
  ``numpy.argmax`` / ``torch.argmax`` and a stable sort of the negated scores. Top-1 then equals the
  accuracy of ``argmax`` predictions, so top-1, the confusion matrix, per-class accuracy and the
  mean per-class recall all describe the same predictions.
- ``"pessimistic"``: every tied negative ranks ahead of the positive (a lower bound).
- ``"optimistic"``: every tied negative ranks behind the positive (an upper bound).

Without ties the three rules agree, and they agree with CLIP_benchmark exactly. CLIP_benchmark takes
top-k with ``torch.topk``, whose order among equal values is unspecified (it depends on the input
size), so on tied scores its top-k lies between the pessimistic and optimistic values; its mean
per-class recall uses ``argmax`` and equals ours under ``"index"`` even with ties.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import numpy as np

from siglip_eval._validation import check_embeddings
from siglip_eval._validation import check_ks
from siglip_eval._validation import check_labels
from siglip_eval._validation import check_ties

# Rows of a score matrix computed at once: bounds memory at ROW_CHUNK x candidates float64.
ROW_CHUNK = 1024


# The smallest norm divided by: a zero row stays zero instead of becoming NaN.
EPSILON = 1e-8


def l2_normalize(embeddings: Any) -> np.ndarray:
    """Rows scaled to unit L2 norm: ``x / max(||x||_2, eps)`` with ``eps = 1e-8``.

    The toolkit's one normalisation rule: computed in float32 (float64 for float64 input) and
    returned in the input's dtype; a zero row gives a zero row, never NaN and never an error.
    The metrics reject zero and NaN rows before they get here (``check_embeddings``), with a
    message naming the row.

    Args:
        embeddings: ``[rows, dim]`` floating-point array (any leading shape; the last axis is
            normalised).

    Returns:
        ``[rows, dim]`` array of the input's dtype; non-zero rows have norm 1.

    Raises:
        TypeError: ``embeddings`` holds integers, booleans or anything but real floats.

    Examples:
        >>> import numpy as np
        >>> from siglip_eval._metrics import l2_normalize
        >>> l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
        [[0.6, 0.8], [0.0, 0.0]]
    """
    array = np.asarray(embeddings)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(
            f"embeddings: expected a floating-point array, got dtype {array.dtype}"
            " (convert integer embeddings to float first)"
        )
    compute = np.float64 if array.dtype == np.float64 else np.float32
    values: np.ndarray = array.astype(compute, copy=False)
    norms = np.sqrt(np.sum(values * values, axis=-1, keepdims=True))
    normalized: np.ndarray = (values / np.maximum(norms, compute(EPSILON))).astype(
        array.dtype, copy=False
    )
    return normalized


class RankParts(NamedTuple):
    """Where the positive of each query stands, before a tie rule is applied.

    Attributes:
        ahead: ``[queries]`` negatives scoring strictly higher than the (best) positive.
        tied_before: ``[queries]`` negatives with an equal score and a lower index.
        tied: ``[queries]`` negatives with an equal score.
    """

    ahead: np.ndarray
    tied_before: np.ndarray
    tied: np.ndarray

    def ranks(self, ties: str = "index") -> np.ndarray:
        """0-based ranks under the tie rule ``ties``."""
        check_ties(ties)
        if ties == "optimistic":
            return self.ahead
        added = self.tied if ties == "pessimistic" else self.tied_before
        ranks: np.ndarray = self.ahead + added
        return ranks


def _count(mask: np.ndarray) -> np.ndarray:
    return np.asarray(np.count_nonzero(mask, axis=1), dtype=np.int64)


def _rank_parts(
    scores: np.ndarray,
    positive: np.ndarray,
    positive_score: np.ndarray,
    positives_tied: np.ndarray | None = None,
) -> RankParts:
    """``RankParts`` of each row of ``scores: [rows, candidates]``.

    ``positive: [rows]`` index of the (best) positive and ``positive_score: [rows]`` its score,
    taken from ``scores`` itself (so the positive equals itself exactly). With several positives
    per row the best one must be the lowest-index positive of maximal score; then no positive
    scores higher, none ties with a lower index, and ``positives_tied: [rows]`` (how many
    positives share the best score) is removed from the tie count.
    """
    column = positive_score[:, None]
    equal = scores == column
    candidate_index = np.arange(scores.shape[1])[None, :]
    tied_all = _count(equal)
    return RankParts(
        ahead=_count(scores > column),
        tied_before=_count(equal & (candidate_index < positive[:, None])),
        tied=tied_all - (1 if positives_tied is None else positives_tied),
    )


def _concat_parts(parts: list[RankParts]) -> RankParts:
    return RankParts(*(np.concatenate([getattr(p, f) for p in parts]) for f in RankParts._fields))


def classification_rank_parts(scores: Any, labels: Any) -> RankParts:
    """``RankParts`` of the true class in each row of ``scores: [images, classes]``."""
    matrix = np.asarray(scores, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"scores: expected shape [images, classes], got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        row = int(np.flatnonzero(~np.isfinite(matrix).all(axis=1))[0])
        raise ValueError(f"scores: expected finite values, got NaN/inf in row {row}")
    vector = check_labels(
        "labels", labels, rows=matrix.shape[0], num_classes=matrix.shape[1], rows_name="scores"
    )
    parts = []
    for start in range(0, matrix.shape[0], ROW_CHUNK):
        block = matrix[start : start + ROW_CHUNK]
        truth = vector[start : start + ROW_CHUNK]
        parts.append(_rank_parts(block, truth, block[np.arange(block.shape[0]), truth]))
    return _concat_parts(parts)


def classification_ranks(scores: Any, labels: Any, *, ties: str = "index") -> np.ndarray:
    """0-based rank of the true class in each row of a score matrix.

    ``rank_i = #{c : s_ic > s_iy} (+ ties rule)``; the image is top-k correct iff ``rank_i < k``.

    Args:
        scores: ``[images, classes]`` scores (cosines or logits; larger is better).
        labels: ``[images]`` int true class of each image.
        ties: ``"index"``, ``"pessimistic"`` or ``"optimistic"`` (module docstring).

    Returns:
        ``[images]`` int64 ranks in ``[0, classes)``.

    Examples:
        >>> from siglip_eval._metrics import classification_ranks
        >>> classification_ranks([[0.1, 0.9, 0.5]], [2]).tolist()
        [1]
    """
    check_ties(ties)
    return classification_rank_parts(scores, labels).ranks(ties)


def confusion_matrix(labels: Any, predictions: Any, *, num_classes: int) -> np.ndarray:
    """Counts ``[true class, predicted class]``.

    Args:
        labels: ``[images]`` int true classes.
        predictions: ``[images]`` int predicted classes.
        num_classes: number of classes C.

    Returns:
        ``[C, C]`` int64 matrix; row ``c`` sums to the number of images of class ``c``.

    Examples:
        >>> from siglip_eval._metrics import confusion_matrix
        >>> confusion_matrix([0, 0, 1], [0, 1, 1], num_classes=2).tolist()
        [[1, 1], [0, 1]]
    """
    truth = check_labels("labels", labels, rows=len(np.asarray(labels)), num_classes=num_classes)
    predicted = check_labels(
        "predictions", predictions, rows=truth.shape[0], num_classes=num_classes, rows_name="labels"
    )
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (truth, predicted), 1)
    return counts


def per_class_recall(confusion: np.ndarray) -> np.ndarray:
    """Recall (accuracy) of each class from a confusion matrix; NaN for a class with no images.

    ``recall_c = confusion[c, c] / sum_j confusion[c, j]``.
    """
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(confusion) / np.maximum(support, 1), np.nan)


def zeroshot_scores(
    image_emb: Any, class_emb: Any, *, scale: float | None = None, bias: float | None = None
) -> np.ndarray:
    """Cosine similarities (or SigLIP logits) between images and class embeddings.

    ``s_ic = <x_i/||x_i||, w_c/||w_c||>``; with ``scale`` and ``bias``: ``scale * s_ic + bias``
    (``scale`` is the multiplier ``exp(log_scale)``, not its log). ``sigmoid`` of the logit is the
    SigLIP probability that image i shows class c.

    Args:
        image_emb: ``[images, dim]`` image embeddings (normalised here).
        class_emb: ``[classes, dim]`` class embeddings (normalised here).
        scale: optional positive logit scale.
        bias: optional logit bias (requires ``scale``).

    Returns:
        ``[images, classes]`` float64 scores.

    Examples:
        >>> from siglip_eval._metrics import zeroshot_scores
        >>> zeroshot_scores([[1.0, 0.0]], [[2.0, 0.0], [0.0, 1.0]], scale=10.0, bias=-5.0).tolist()
        [[5.0, -5.0]]
    """
    images = check_embeddings("image_emb", image_emb)
    classes = check_embeddings("class_emb", class_emb, dim=images.shape[1])
    cosines = l2_normalize(images) @ l2_normalize(classes).T
    if scale is None:
        if bias is not None:
            raise ValueError("bias: expected None when scale is None (a bias alone is not a logit)")
        return np.asarray(cosines, dtype=np.float64)
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(
            f"scale: expected a finite positive multiplier exp(log_scale), got {scale!r}"
        )
    return np.asarray(float(scale) * cosines + (0.0 if bias is None else float(bias)), np.float64)


def zeroshot_metrics(
    image_emb: Any, class_emb: Any, labels: Any, *, ties: str = "index"
) -> dict[str, float]:
    """Top-1, top-5 and mean per-class recall of zero-shot classification.

    ``top-k = (1/N) sum_i [rank_i < k]`` with ``rank_i`` the rank of the true class among the
    cosines ``<x_i, w_c>``; ``mean_per_class_recall = (1/|C'|) sum_{c in C'} recall_c`` over the
    classes C' that have at least one image (balanced accuracy, as scikit-learn and CLIP_benchmark
    compute it). With fewer than 5 classes ``top5`` is NaN, as in CLIP_benchmark.

    Args:
        image_emb: ``[images, dim]`` image embeddings.
        class_emb: ``[classes, dim]`` class embeddings (e.g. from ``class_embeddings``).
        labels: ``[images]`` int true class of each image.
        ties: tie rule, see the module docstring (default ``"index"``: lower class index first).

    Returns:
        ``{"top1": float, "top5": float, "mean_per_class_recall": float}``, fractions in [0, 1].

    Raises:
        ValueError: shapes disagree, a label is outside ``[0, classes)``, or an embedding row is
            NaN/inf/zero (the message names the row).

    Examples:
        >>> import numpy as np
        >>> from siglip_eval import zeroshot_metrics
        >>> metrics = zeroshot_metrics(np.eye(3), np.eye(3), [0, 1, 1])
        >>> metrics["top1"], metrics["mean_per_class_recall"]
        (0.6666666666666666, 0.75)
    """
    check_ties(ties)
    scores = zeroshot_scores(image_emb, class_emb)
    truth = check_labels("labels", labels, rows=scores.shape[0], num_classes=scores.shape[1])
    return metrics_from_ranks(
        classification_rank_parts(scores, truth).ranks(ties), truth, scores.shape[1]
    )


def metrics_from_ranks(ranks: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, float]:
    """``zeroshot_metrics`` from the true-class ranks ``[images]`` and labels ``[images]``."""
    # rank 0 under "index" is exactly argmax == label (argmax takes the first maximum).
    first = ranks == 0
    support = np.bincount(labels, minlength=num_classes)
    hits = np.bincount(labels, weights=first, minlength=num_classes)
    present = support > 0
    recall = hits[present] / support[present]
    top5 = float(np.mean(ranks < 5)) if num_classes >= 5 else float("nan")
    return {
        "top1": float(np.mean(ranks < 1)),
        "top5": top5,
        "mean_per_class_recall": float(np.mean(recall)),
    }


def _check_text_to_image(
    text_to_image: Any, *, texts: int, images: int, dataset: str | None
) -> np.ndarray:
    mapping = check_labels(
        "text_to_image",
        text_to_image,
        rows=texts,
        num_classes=images,
        dataset=dataset,
        rows_name="text_emb",
    )
    captions_per_image = np.bincount(mapping, minlength=images)
    if np.any(captions_per_image == 0):
        missing = np.flatnonzero(captions_per_image == 0)
        where = f" (dataset {dataset!r})" if dataset else ""
        raise ValueError(
            f"text_to_image{where}: expected every image to have at least one caption, got"
            f" {missing.size} image(s) without any, first image {int(missing[0])}; an image without"
            " captions can never be retrieved and would be counted as a miss"
        )
    return mapping


def retrieval_rank_parts(
    image_emb: Any,
    text_emb: Any,
    text_to_image: Any,
    *,
    dataset: str | None = None,
) -> tuple[RankParts, RankParts]:
    """``(image_to_text, text_to_image)`` ``RankParts``: every tie rule from one pass.

    Same arguments as ``retrieval_ranks``.
    """
    images = l2_normalize(check_embeddings("image_emb", image_emb, dataset=dataset))
    texts = l2_normalize(
        check_embeddings("text_emb", text_emb, dataset=dataset, dim=images.shape[1])
    )
    mapping = _check_text_to_image(
        text_to_image, texts=texts.shape[0], images=images.shape[0], dataset=dataset
    )
    text_parts = []
    for start in range(0, texts.shape[0], ROW_CHUNK):
        scores = texts[start : start + ROW_CHUNK] @ images.T
        target = mapping[start : start + ROW_CHUNK]
        text_parts.append(_rank_parts(scores, target, scores[np.arange(scores.shape[0]), target]))

    image_parts = []
    for start in range(0, images.shape[0], ROW_CHUNK):
        rows = np.arange(start, min(start + ROW_CHUNK, images.shape[0]))
        scores = images[rows] @ texts.T
        is_caption = mapping[None, :] == rows[:, None]
        caption_scores = np.where(is_caption, scores, -np.inf)
        best_score = caption_scores.max(axis=1)
        best = caption_scores == best_score[:, None]
        # Lowest-index caption among those reaching the best score: the one "index" ties put first.
        best_caption = np.argmax(best, axis=1)
        image_parts.append(_rank_parts(scores, best_caption, best_score, _count(best)))
    return _concat_parts(image_parts), _concat_parts(text_parts)


def retrieval_ranks(
    image_emb: Any,
    text_emb: Any,
    text_to_image: Any,
    *,
    ties: str = "index",
    dataset: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rank of the first relevant item for every image query and every text query.

    Text -> image: for caption j, the 0-based rank of its image ``text_to_image[j]`` among all
    images. Image -> text: for image i, the rank of its best-scoring caption among all captions
    (other captions of the same image are not counted against it). Recall@K counts ranks < K.
    Scores are computed in row blocks of ``ROW_CHUNK`` queries, so memory stays at
    ``ROW_CHUNK x candidates``.

    Args:
        image_emb: ``[images, dim]`` image embeddings.
        text_emb: ``[texts, dim]`` caption embeddings.
        text_to_image: ``[texts]`` int index of the image each caption describes; every image needs
            at least one caption.
        ties: tie rule, see the module docstring.
        dataset: name used in error messages.

    Returns:
        ``(image_to_text_ranks [images], text_to_image_ranks [texts])``, int64.
    """
    check_ties(ties)
    image_parts, text_parts = retrieval_rank_parts(
        image_emb, text_emb, text_to_image, dataset=dataset
    )
    return image_parts.ranks(ties), text_parts.ranks(ties)


def recall_at_k(ranks: Any, k: int) -> float:
    """Fraction of queries whose first relevant item ranks within the first ``k``: ``mean(rank < k)``.

    Examples:
        >>> from siglip_eval._metrics import recall_at_k
        >>> recall_at_k([0, 3, 9], 5)
        0.6666666666666666
    """
    values = np.asarray(ranks)
    if values.size == 0:
        raise ValueError("ranks: expected at least one query, got none")
    return float(np.mean(values < k))


def retrieval_metrics(
    image_emb: Any,
    text_emb: Any,
    text_to_image: Any,
    ks: Sequence[int] = (1, 5, 10),
    *,
    ties: str = "index",
) -> dict[str, float]:
    """Image->text and text->image Recall@K with several captions per image.

    ``image_to_text_R@K = (1/N_img) sum_i [some caption of image i ranks < K among all captions]``;
    ``text_to_image_R@K = (1/N_txt) sum_j [image text_to_image[j] ranks < K among all images]``.
    This is the CLIP-paper definition that CLIP_benchmark reports as ``text_retrieval_recall@K``
    (image->text) and ``image_retrieval_recall@K`` (text->image). A K at least the number of
    candidates gives 1.0.

    Args:
        image_emb: ``[images, dim]`` image embeddings.
        text_emb: ``[texts, dim]`` caption embeddings.
        text_to_image: ``[texts]`` int, ``text_to_image[j]`` is the image index of caption j.
        ks: the K values, positive ints.
        ties: tie rule, see the module docstring.

    Returns:
        ``{"image_to_text_R@1": ..., ..., "text_to_image_R@10": ...}`` fractions in [0, 1].

    Raises:
        ValueError: shapes disagree, an image has no caption, a caption points outside the images,
            or an embedding row is NaN/inf/zero.

    Examples:
        >>> import numpy as np
        >>> from siglip_eval import retrieval_metrics
        >>> retrieval_metrics(np.eye(2), np.eye(2)[[0, 0, 1]], [0, 0, 1], ks=(1,))
        {'image_to_text_R@1': 1.0, 'text_to_image_R@1': 1.0}
    """
    k_values = check_ks(ks)
    image_ranks, text_ranks = retrieval_ranks(image_emb, text_emb, text_to_image, ties=ties)
    metrics = {f"image_to_text_R@{k}": recall_at_k(image_ranks, k) for k in k_values}
    metrics.update({f"text_to_image_R@{k}": recall_at_k(text_ranks, k) for k in k_values})
    return metrics
