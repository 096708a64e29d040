"""The recipe losses' numpy oracle against independent formulations: central finite differences
for its analytic gradients, a per-token loop for the token cross-entropy, and its value checks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import siglip_loss.numpy as oracle


def finite_difference(function: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    step, grad = 1e-6, np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += step
        down[index] -= step
        grad[index] = (function(up) - function(down)) / (2 * step)
    return grad


@given(seed=st.integers(0, 2**32 - 1), vocab=st.integers(1, 6), chunk_size=st.integers(1, 7))
def test_token_cross_entropy_gradients_equal_finite_differences_and_a_per_token_loop(
    seed: int, vocab: int, chunk_size: int
) -> None:
    rng = np.random.default_rng(seed)
    hidden, weight, bias = (
        rng.normal(size=(2, 3, 2)),
        rng.normal(size=(vocab, 2)),
        rng.normal(size=vocab),
    )
    targets = rng.integers(0, vocab, size=(2, 3))
    weights = rng.choice([0.0, 1.0, 0.5], size=(2, 3))
    logits = hidden @ weight.T + bias
    per_sequence = []
    for b in range(2):
        terms = [
            weights[b, t] * (np.log(np.exp(logits[b, t]).sum()) - logits[b, t, targets[b, t]])
            for t in range(3)
        ]
        per_sequence.append(sum(terms) / (weights[b].sum() or 1.0))
    loss = oracle.token_cross_entropy(logits, targets, weights=weights)
    assert loss == pytest.approx(np.mean(per_sequence), rel=1e-12, abs=1e-12)
    chunked = oracle.chunked_token_cross_entropy(
        hidden, weight, targets, weights=weights, vocab_bias=bias, chunk_size=chunk_size
    )
    assert chunked == pytest.approx(loss, rel=1e-12, abs=1e-12)
    result = oracle.chunked_token_cross_entropy_and_grads(
        hidden, weight, targets, weights=weights, vocab_bias=bias
    )

    def loss_of(h: np.ndarray, w: np.ndarray, c: np.ndarray) -> float:
        return oracle.token_cross_entropy(h @ w.T + c, targets, weights=weights)

    for got, argument, function in (
        (result.grad_hidden, hidden, lambda h: loss_of(h, weight, bias)),
        (result.grad_vocab_weight, weight, lambda w: loss_of(hidden, w, bias)),
        (result.grad_vocab_bias, bias, lambda c: loss_of(hidden, weight, c)),
    ):
        np.testing.assert_allclose(got, finite_difference(function, argument), atol=1e-7)


@given(seed=st.integers(0, 2**32 - 1), classes=st.integers(1, 5))
def test_distillation_gradients_equal_finite_differences(seed: int, classes: int) -> None:
    rng = np.random.default_rng(seed)
    student, teacher = rng.normal(size=(2, 3, classes)), rng.normal(size=(2, 3, classes))
    center, mask = rng.normal(size=classes), rng.random((2, 3)) < 0.5
    options = {"center": center, "student_temperature": 0.5, "teacher_temperature": 0.2}
    global_view = oracle.self_distillation_loss_and_grads(student[:, 0], teacher[:, 0], **options)
    np.testing.assert_allclose(
        global_view.grad_student_logits,
        finite_difference(
            lambda s: oracle.self_distillation_loss(s, teacher[:, 0], **options), student[:, 0]
        ),
        atol=1e-7,
    )
    patches = oracle.masked_patch_distillation_loss_and_grads(student, teacher, mask, **options)
    np.testing.assert_allclose(
        patches.grad_student_logits,
        finite_difference(
            lambda s: oracle.masked_patch_distillation_loss(s, teacher, mask, **options), student
        ),
        atol=1e-7,
    )
    # Masked patches only: the per-patch losses of the masked rows, averaged.
    masked_rows = [
        oracle.self_distillation_loss(student[b, j][None], teacher[b, j][None], **options)
        for b, j in zip(*np.nonzero(mask), strict=True)
    ]
    assert patches.loss == pytest.approx(np.mean(masked_rows) if masked_rows else 0.0, abs=1e-12)


def test_the_teacher_target_is_centred_and_sharpened() -> None:
    # A centre equal to the teacher row makes the target uniform: the loss is then log(classes)
    # for a uniform student, whatever the teacher temperature.
    teacher = np.array([[3.0, -1.0, 0.5]])
    loss = oracle.self_distillation_loss(
        np.zeros((1, 3)), teacher, center=teacher[0], teacher_temperature=0.01
    )
    assert loss == pytest.approx(np.log(3.0), rel=1e-12)
    # A low teacher temperature turns the target into the teacher's argmax.
    sharp = oracle.self_distillation_loss(
        np.log(np.array([[0.7, 0.2, 0.1]])),
        teacher,
        center=np.zeros(3),
        student_temperature=1.0,
        teacher_temperature=1e-3,
    )
    assert sharp == pytest.approx(-np.log(0.7), rel=1e-9)


def test_oracle_refuses_negative_weights_and_weighted_ids_outside_the_vocabulary() -> None:
    logits = np.zeros((1, 2, 3))
    with pytest.raises(ValueError, match="weights: expected finite values >= 0"):
        oracle.token_cross_entropy(logits, np.array([[0, 1]]), weights=np.array([[1.0, -1.0]]))
    with pytest.raises(ValueError, match=r"targets: expected ids in \[0, 3\)"):
        oracle.token_cross_entropy(logits, np.array([[0, 3]]), weights=np.ones((1, 2)))
    # An out-of-range id where the weight is 0 is never read.
    assert oracle.token_cross_entropy(
        logits, np.array([[0, 3]]), weights=np.array([[1, 0]])
    ) == pytest.approx(np.log(3.0))


def test_update_center_keeps_the_centre_dtype_and_momentum_one_keeps_it() -> None:
    center = np.array([0.5, -0.5], np.float32)
    assert oracle.update_center(center, np.ones((4, 2)), momentum=1.0).tolist() == [0.5, -0.5]
    updated = oracle.update_center(center, np.ones((2, 3, 2)), momentum=0.0)
    assert updated.dtype == np.float32
    assert updated.tolist() == [1.0, 1.0]
