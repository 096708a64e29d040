"""Linear probe: the C sweep, accuracy on separable and on noise features, errors."""

from __future__ import annotations

import numpy as np
import pytest

from siglip_eval import evaluate_linear_probe
from siglip_eval import linear_probe
from siglip_eval._linear_probe import _stratified_split
from siglip_eval.datasets import classification_arrays


def blobs(seed: int, count: int, classes: int = 4, dim: int = 8, spread: float = 0.5):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim)) * 3
    labels = np.arange(count) % classes
    return centers[labels] + spread * rng.normal(size=(count, dim)), labels


def test_separable_features_reach_full_accuracy() -> None:
    x, y = blobs(0, 200)
    result = linear_probe(x[:160], y[:160], x[160:], y[160:])
    assert result.metrics["top1"] == 1.0
    assert result.metrics["mean_per_class_recall"] == 1.0
    assert result.num_train + result.num_val == 160
    assert result.num_test == 40
    # 7 coarse values plus 2 per refinement (minus repeats), all inside [1e-6, 1e6].
    assert 7 <= len(result.sweep) <= 15
    assert all(1e-6 <= c <= 1e6 for c, _, _ in result.sweep)
    assert result.best_c in [c for c, _, _ in result.sweep]


def test_noise_features_stay_near_chance() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(400, 16)), rng.integers(0, 4, 400)
    result = linear_probe(x[:300], y[:300], x[300:], y[300:])
    assert result.metrics["top1"] < 0.45


def test_best_c_maximizes_validation_accuracy_then_minimizes_cross_entropy() -> None:
    x, y = blobs(2, 120)
    result = linear_probe(
        x[:80], y[:80], x[80:], y[80:], val_features=x[80:100], val_labels=y[80:100]
    )
    best = max(accuracy for _, accuracy, _ in result.sweep)
    lowest_loss = min(loss for _, accuracy, loss in result.sweep if accuracy == best)
    assert [c for c, a, loss in result.sweep if a == best and loss == lowest_loss] == [
        result.best_c
    ]


def test_tiny_c_that_ties_on_accuracy_is_not_chosen() -> None:
    # Balanced validation data: even C = 1e-6 classifies it perfectly (near-uniform probabilities),
    # but refit on the unbalanced train + validation set its bias wins and it collapses.
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 16)) * 2
    labels = np.arange(200) % 4
    features = centers[labels] + rng.normal(size=(200, 16))
    result = linear_probe(features[:150], labels[:150], features[150:], labels[150:], refinements=2)
    assert result.best_c > 1e-3
    assert result.metrics["top1"] > 0.95


def test_matches_a_direct_sklearn_fit_at_the_chosen_c() -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = blobs(3, 160, spread=3.0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    train_x, val_x, test_x = x[:80], x[80:120], x[120:]
    result = linear_probe(
        train_x,
        y[:80],
        test_x,
        y[120:],
        val_features=val_x,
        val_labels=y[80:120],
        max_iter=200,
        refinements=2,
    )
    model = LogisticRegression(C=result.best_c, max_iter=200).fit(
        np.concatenate([train_x, val_x]), y[:120]
    )
    assert result.metrics["top1"] == pytest.approx(np.mean(model.predict(test_x) == y[120:]))


def test_unseen_test_class_and_nan_are_errors() -> None:
    x, y = blobs(4, 40)
    with pytest.raises(ValueError, match=r"classes \[9\] never occur"):
        linear_probe(x, y, x[:2], np.array([9, 0]))
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"train_features.*NaN/inf in row 3"):
        linear_probe(x, y, x[:2], y[:2])


def test_evaluate_linear_probe_embeds_every_split(toys) -> None:
    colors = ["red", "green", "blue"] * 6
    names = ["red", "green", "blue"]
    labels = [names.index(c) for c in colors]
    train = classification_arrays(
        toys.solid_images(colors, noise=0.3, seed=0), labels, names, name="train"
    )
    test = classification_arrays(
        toys.solid_images(colors, noise=0.3, seed=1), labels, names, name="test"
    )
    result = evaluate_linear_probe(toys.color_encoder(), train, test, progress=False)
    assert result.metrics["top1"] == 1.0
    assert result.to_dict()["num_test"] == 18
    other = classification_arrays(
        toys.solid_images(colors[:2]), [0, 1], ["red", "green"], name="other"
    )
    with pytest.raises(ValueError, match="class list"):
        evaluate_linear_probe(toys.color_encoder(), train, other, progress=False)


def test_validation_split_is_stratified_seeded_and_keeps_singletons_for_fitting() -> None:
    labels = np.array([0] * 10 + [1] * 20 + [2] * 30 + [3])
    fit_rows, val_rows = _stratified_split(labels, 0.2, 0, dataset="d")
    assert sorted(np.concatenate([fit_rows, val_rows]).tolist()) == list(range(labels.size))
    assert np.bincount(labels[val_rows], minlength=4).tolist() == [2, 4, 6, 0]
    assert 60 in fit_rows  # the single image of class 3 cannot be held out
    again = _stratified_split(labels, 0.2, 0, dataset="d")
    assert all((a == b).all() for a, b in zip((fit_rows, val_rows), again))
    other_seed = _stratified_split(labels, 0.2, 1, dataset="d")
    assert not np.array_equal(other_seed[1], val_rows)


def test_too_few_images_for_a_validation_split_is_an_error() -> None:
    x, y = blobs(5, 8)  # 4 classes x 2 images: 20% holds out 2 images, fewer than the classes
    with pytest.raises(ValueError, match=r"too few images .*pass val_features"):
        linear_probe(x, y, x, y)
