"""Linear probe: L-BFGS logistic regression on frozen image features, C chosen on a validation split.

The protocol of the CLIP paper (Radford et al. 2021, appendix A.3): scikit-learn's L-BFGS logistic
regression (at most 1,000 iterations), the inverse L2 strength C swept over [1e-6, 1e6] on a
validation split with a parametric binary search (a coarse log grid, then repeatedly halving the
step around the best value), then a final fit on train + validation with the chosen C, scored once
on the test split.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np

from siglip_eval._datasets import ClassificationDataset
from siglip_eval._encoders import EmbeddingCache
from siglip_eval._encoders import Encoder
from siglip_eval._encoders import as_encoder
from siglip_eval._metrics import l2_normalize
from siglip_eval._validation import check_embeddings
from siglip_eval._validation import check_every_class_present
from siglip_eval._zeroshot import embed_classification

COARSE_LOG10_C = (-6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0)


@dataclasses.dataclass
class LinearProbeResult:
    """Outcome of ``linear_probe``.

    Attributes:
        dataset: dataset name.
        metrics: ``{"top1", "mean_per_class_recall"}`` on the test split.
        best_c: the chosen inverse regularisation strength C (= 1 / lambda).
        sweep: ``[(C, validation top-1, validation cross-entropy)]`` in the order tried.
        converged: False if any L-BFGS fit hit ``max_iter`` (scikit-learn's ConvergenceWarning).
        num_train: images the sweep fitted on.
        num_val: validation images.
        num_test: test images.
    """

    dataset: str
    metrics: dict[str, float]
    best_c: float
    sweep: list[tuple[float, float, float]]
    converged: bool
    num_train: int
    num_val: int
    num_test: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: metrics, chosen C, the sweep, convergence and split sizes."""
        return {
            "task": "linear-probe",
            "dataset": self.dataset,
            "metrics": self.metrics,
            "best_C": self.best_c,
            "sweep": [
                {"C": c, "val_top1": accuracy, "val_cross_entropy": loss}
                for c, accuracy, loss in self.sweep
            ],
            "converged": self.converged,
            "num_train": self.num_train,
            "num_val": self.num_val,
            "num_test": self.num_test,
        }


def _stratified_split(
    labels: np.ndarray, fraction: float, seed: int, *, dataset: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(fit_rows, val_rows)``: scikit-learn's seeded stratified split of ``labels: [train]``.

    A class with a single image cannot be stratified (scikit-learn refuses it); it stays in the
    fitting part.
    """
    from sklearn.model_selection import train_test_split

    rows = np.arange(labels.size)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    splittable = counts[inverse] > 1
    try:
        fit_rows, val_rows = train_test_split(
            rows[splittable],
            test_size=fraction,
            stratify=labels[splittable],
            random_state=seed,
        )
    except ValueError as error:  # fewer held-out (or kept) images than classes, or none at all
        raise ValueError(
            f"train_labels (dataset {dataset!r}): too few images to hold out a stratified"
            f" {fraction:g} validation split ({error}); pass val_features"
        ) from error
    return np.sort(np.concatenate([fit_rows, rows[~splittable]])), np.sort(val_rows)


def _features(name: str, array: Any, normalize: bool, dataset: str) -> np.ndarray:
    matrix = check_embeddings(name, array, dataset=dataset)
    # check_embeddings has rejected all-zero rows, so every row comes out with norm 1.
    return l2_normalize(matrix) if normalize else matrix


def linear_probe(
    train_features: Any,
    train_labels: Any,
    test_features: Any,
    test_labels: Any,
    *,
    val_features: Any = None,
    val_labels: Any = None,
    val_fraction: float = 0.2,
    normalize: bool = True,
    refinements: int = 4,
    max_iter: int = 1000,
    seed: int = 0,
    dataset: str = "arrays",
) -> LinearProbeResult:
    """Logistic regression on frozen features with a validation sweep of C; test top-1.

    Minimises ``sum_i CE(W x_i + b, y_i) + ||W||^2 / (2C)`` (scikit-learn ``LogisticRegression``,
    L-BFGS, multinomial). C starts on the grid 1e-6, 1e-4, ..., 1e6; each refinement halves the
    log10 step and tries both neighbours of the best C (the best C has the highest validation
    accuracy; ties go to the lowest validation cross-entropy).

    Args:
        train_features: ``[train, dim]`` image features.
        train_labels: ``[train]`` int classes.
        test_features: ``[test, dim]`` image features.
        test_labels: ``[test]`` int classes.
        val_features: ``[val, dim]`` features of a separate validation split; default (None): a
            stratified ``val_fraction`` of the training split
            (``sklearn.model_selection.train_test_split(stratify=...)``, seeded).
        val_labels: ``[val]`` int classes of ``val_features``.
        val_fraction: share of each class held out for validation when ``val_features`` is None.
        normalize: L2-normalise the features first (CLIP_benchmark's default).
        refinements: halvings of the C step after the coarse grid.
        max_iter: L-BFGS iterations per fit (CLIP used 1,000).
        seed: seed of the validation split (scikit-learn's ``random_state``).
        dataset: name used in errors and the report.

    Returns:
        ``LinearProbeResult`` with test ``top1`` and ``mean_per_class_recall``.

    Raises:
        ValueError: empty splits, NaN features (named by row), a test label unseen in training.
        ImportError: scikit-learn is missing (extra ``[linear-probe]``).

    Examples:
        >>> import numpy as np
        >>> from siglip_eval import linear_probe
        >>> rng = np.random.default_rng(0)
        >>> centers = rng.normal(size=(3, 8)) * 3
        >>> labels = rng.integers(0, 3, size=120)
        >>> features = centers[labels] + rng.normal(size=(120, 8))
        >>> result = linear_probe(features[:90], labels[:90], features[90:], labels[90:])
        >>> result.metrics["top1"] > 0.9
        True
    """
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "linear_probe needs scikit-learn: pip install 'siglip-eval[linear-probe]'"
        ) from error

    train_x = _features("train_features", train_features, normalize, dataset)
    test_x = _features("test_features", test_features, normalize, dataset)
    train_y = _labels("train_labels", train_labels, train_x.shape[0], dataset)
    test_y = _labels("test_labels", test_labels, test_x.shape[0], dataset)
    if test_x.shape[1] != train_x.shape[1]:
        raise ValueError(
            f"test_features (dataset {dataset!r}): expected dim {train_x.shape[1]} like train_features, got {test_x.shape[1]}"
        )
    if val_features is None:
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction: expected a value in (0, 1), got {val_fraction}")
        fit_rows, val_rows = _stratified_split(train_y, val_fraction, seed, dataset=dataset)
        fit_x, fit_y, val_x, val_y = (
            train_x[fit_rows],
            train_y[fit_rows],
            train_x[val_rows],
            train_y[val_rows],
        )
    else:
        fit_x, fit_y = train_x, train_y
        val_x = _features("val_features", val_features, normalize, dataset)
        val_y = _labels("val_labels", val_labels, val_x.shape[0], dataset)
    known = set(np.unique(np.concatenate([fit_y, val_y])).tolist())
    unseen = sorted(set(np.unique(test_y).tolist()) - known)
    if unseen:
        raise ValueError(
            f"test_labels (dataset {dataset!r}): classes {unseen[:10]} never occur in the training split"
        )
    if len(np.unique(fit_y)) < 2:
        raise ValueError(
            f"train_labels (dataset {dataset!r}): expected at least two classes, got one"
        )

    converged = True

    def fit(c: float, x: np.ndarray, y: np.ndarray) -> Any:
        nonlocal converged
        model = LogisticRegression(C=c, max_iter=max_iter)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(x, y)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            converged = False
        return model

    # log10(C) -> (validation accuracy, validation cross-entropy)
    scores: dict[float, tuple[float, float]] = {}
    sweep: list[tuple[float, float, float]] = []

    def score(log10_c: float) -> None:
        log10_c = round(min(max(log10_c, -6.0), 6.0), 6)
        if log10_c not in scores:
            model = fit(10.0**log10_c, fit_x, fit_y)
            accuracy = float(np.mean(model.predict(val_x) == val_y))
            scores[log10_c] = (accuracy, _cross_entropy(model, val_x, val_y))
            sweep.append((10.0**log10_c, accuracy, scores[log10_c][1]))

    def best() -> float:
        # Highest accuracy; among equal accuracies the lowest cross-entropy (a tiny C can tie on
        # accuracy with near-uniform probabilities, and then collapses when refit on more data).
        return max(sorted(scores), key=lambda value: (scores[value][0], -scores[value][1]))

    for log10_c in COARSE_LOG10_C:
        score(log10_c)
    step = COARSE_LOG10_C[1] - COARSE_LOG10_C[0]
    for _ in range(refinements):
        step /= 2.0
        center = best()
        score(center - step)
        score(center + step)
    best_c = 10.0 ** best()
    final = fit(best_c, np.concatenate([fit_x, val_x]), np.concatenate([fit_y, val_y]))
    predictions = final.predict(test_x)
    hits = predictions == test_y
    recalls = [float(np.mean(hits[test_y == label])) for label in np.unique(test_y)]
    return LinearProbeResult(
        dataset=dataset,
        metrics={"top1": float(np.mean(hits)), "mean_per_class_recall": float(np.mean(recalls))},
        best_c=float(best_c) if math.isfinite(best_c) else best_c,
        sweep=sweep,
        converged=converged,
        num_train=int(fit_x.shape[0]),
        num_val=int(val_x.shape[0]),
        num_test=int(test_x.shape[0]),
    )


def _cross_entropy(model: Any, features: np.ndarray, labels: np.ndarray) -> float:
    probabilities = model.predict_proba(features)
    column = np.searchsorted(model.classes_, labels)
    known = (column < len(model.classes_)) & (
        model.classes_[np.minimum(column, len(model.classes_) - 1)] == labels
    )
    picked = np.where(
        known,
        probabilities[np.arange(len(labels)), np.minimum(column, len(model.classes_) - 1)],
        0.0,
    )
    return float(-np.mean(np.log(np.maximum(picked, 1e-300))))


def _labels(name: str, labels: Any, rows: int, dataset: str) -> np.ndarray:
    vector = np.asarray(labels)
    if vector.shape != (rows,):
        raise ValueError(
            f"{name} (dataset {dataset!r}): expected shape [{rows}] (one per row), got {vector.shape}"
        )
    if not np.issubdtype(vector.dtype, np.integer):
        raise TypeError(
            f"{name} (dataset {dataset!r}): expected integer class indices, got dtype {vector.dtype}"
        )
    return vector.astype(np.int64)


def evaluate_linear_probe(
    encoder: Encoder,
    train: ClassificationDataset,
    test: ClassificationDataset,
    *,
    val: ClassificationDataset | None = None,
    batch_size: int = 64,
    cache: EmbeddingCache | None = None,
    progress: bool = True,
    **probe_options: Any,
) -> LinearProbeResult:
    """Embed ``train`` / ``val`` / ``test`` with ``encoder``'s image tower and run ``linear_probe``.

    Args:
        encoder: the model (``Encoder`` or any object with ``encode_images``/``encode_texts``).
        train: labelled training images.
        test: labelled test images (same class list).
        val: labelled validation images; default: a stratified share of ``train``.
        batch_size: images per ``encode_images`` call.
        cache: optional ``EmbeddingCache``; image embeddings are reused across runs.
        progress: progress bars while embedding.
        **probe_options: keyword arguments of ``linear_probe`` (``val_fraction``, ``normalize``,
            ``refinements``, ``max_iter``, ``seed``).

    Returns:
        ``LinearProbeResult`` on ``test``.

    Raises:
        ValueError: the splits have different class lists, or a class has no images.
    """
    encoder = as_encoder(encoder)
    splits = [train, test] + ([val] if val is not None else [])
    for split in splits[1:]:
        if list(split.class_names) != list(train.class_names):
            raise ValueError(
                f"dataset {split.name!r}: expected the class list of {train.name!r} ({len(train.class_names)} classes), got a different one"
            )
    embedded = []
    for split in splits:
        features, labels, _ = embed_classification(
            encoder, split, batch_size=batch_size, cache=cache, progress=progress
        )
        check_every_class_present(labels, split.class_names, dataset=split.name)
        embedded.append((features, labels))
    (train_x, train_y), (test_x, test_y) = embedded[0], embedded[1]
    val_x, val_y = embedded[2] if val is not None else (None, None)
    return linear_probe(
        train_x,
        train_y,
        test_x,
        test_y,
        val_features=val_x,
        val_labels=val_y,
        dataset=test.name,
        **probe_options,
    )
