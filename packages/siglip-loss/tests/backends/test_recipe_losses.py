"""The backend's SigLIP 2 recipe losses against the numpy float64 oracle, values and gradients:
token cross-entropy (dense and chunked over the vocabulary), self-distillation, masked patch
distillation and the centre update; and their input errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import siglip_loss.numpy as oracle

# Float64 agreement: the oracle and the backends compute the same sums in another order.
TIGHT = {"rtol": 1e-10, "atol": 1e-12}


def token_problem(seed: int, batch: int, length: int, vocab: int, dim: int) -> dict[str, Any]:
    """Random hidden states, vocabulary projection, targets and weights (some sequences with no
    weighted token, some weights fractional, ignored positions holding out-of-range ids)."""
    rng = np.random.default_rng(seed)
    weights = rng.choice([0.0, 0.5, 1.0, 2.0], size=(batch, length), p=[0.3, 0.1, 0.5, 0.1])
    weights[rng.random(batch) < 0.2] = 0.0
    targets = rng.integers(0, vocab, size=(batch, length))
    targets = np.where(weights == 0, -100, targets)  # ignored ids are never read
    return {
        "hidden": rng.normal(size=(batch, length, dim)),
        "vocab_weight": rng.normal(size=(vocab, dim)) * 2.0,
        "vocab_bias": rng.normal(size=vocab),
        "targets": targets,
        "weights": weights,
    }


token_shapes = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "batch": st.integers(1, 3),
        "length": st.integers(1, 5),
        "vocab": st.integers(1, 12),
        "dim": st.integers(1, 5),
    }
)


def test_token_cross_entropy_matches_the_oracle_in_value_and_gradient(backend: Any) -> None:
    with backend.x64():

        @backend.examples(jax=4)
        @given(shape=token_shapes)
        def matches_oracle(shape: dict[str, int]) -> None:
            problem = token_problem(**shape)
            logits = problem["hidden"] @ problem["vocab_weight"].T
            want = oracle.token_cross_entropy_and_grads(
                logits, problem["targets"], weights=problem["weights"]
            )
            targets, weights = backend.array(problem["targets"]), backend.array(problem["weights"])
            loss, (grad,) = backend.value_and_grad(
                lambda z: backend.module.token_cross_entropy(z, targets, weights=weights),
                backend.array(logits),
            )
            assert backend.dtype_name(loss) == "float64"
            assert float(loss) == pytest.approx(want.loss, rel=1e-12, abs=1e-12)
            np.testing.assert_allclose(backend.to_numpy(grad), want.grad_logits, **TIGHT)

        matches_oracle()


def test_chunked_token_cross_entropy_equals_the_dense_oracle_for_any_chunk_size(
    backend: Any,
) -> None:
    with backend.x64():

        @backend.examples(jax=4)
        @given(shape=token_shapes, chunk_size=st.integers(1, 14), with_bias=st.booleans())
        def matches_oracle(shape: dict[str, int], chunk_size: int, with_bias: bool) -> None:
            problem = token_problem(**shape)
            bias = problem["vocab_bias"] if with_bias else None
            want = oracle.chunked_token_cross_entropy_and_grads(
                problem["hidden"],
                problem["vocab_weight"],
                problem["targets"],
                weights=problem["weights"],
                vocab_bias=bias,
            )
            assert oracle.chunked_token_cross_entropy(
                problem["hidden"],
                problem["vocab_weight"],
                problem["targets"],
                weights=problem["weights"],
                vocab_bias=bias,
                chunk_size=chunk_size,
            ) == pytest.approx(want.loss, rel=1e-12, abs=1e-12)
            targets, weights = backend.array(problem["targets"]), backend.array(problem["weights"])
            arrays = [backend.array(problem["hidden"]), backend.array(problem["vocab_weight"])]
            if with_bias:
                arrays.append(backend.array(problem["vocab_bias"]))

            def loss_of(hidden: Any, vocab_weight: Any, *vocab_bias: Any) -> Any:
                return backend.module.chunked_token_cross_entropy(
                    hidden,
                    vocab_weight,
                    targets,
                    weights=weights,
                    vocab_bias=vocab_bias[0] if vocab_bias else None,
                    chunk_size=chunk_size,
                )

            loss, grads = backend.value_and_grad(loss_of, *arrays)
            assert float(loss) == pytest.approx(want.loss, rel=1e-12, abs=1e-12)
            expected = (want.grad_hidden, want.grad_vocab_weight, want.grad_vocab_bias)
            for got, wanted in zip(grads, expected, strict=False):
                np.testing.assert_allclose(backend.to_numpy(got), wanted, **TIGHT)

        matches_oracle()


def test_token_losses_in_16_bit_and_float32_compute_in_float32(backend: Any) -> None:
    problem = token_problem(seed=3, batch=2, length=4, vocab=9, dim=3)
    targets, weights = backend.array(problem["targets"]), backend.array(problem["weights"] > 0)
    bool_weights = (problem["weights"] > 0).astype(np.float64)
    logits = problem["hidden"] @ problem["vocab_weight"].T
    for dtype in ("bfloat16", "float32"):
        hidden = backend.array(problem["hidden"], dtype)
        vocab_weight = backend.array(problem["vocab_weight"], dtype)
        rounded = backend.to_numpy(hidden) @ backend.to_numpy(vocab_weight).T
        want = oracle.token_cross_entropy(rounded, problem["targets"], weights=bool_weights)
        chunked = backend.jit(
            lambda h, w: backend.module.chunked_token_cross_entropy(
                h, w, targets, weights=weights, chunk_size=4
            )
        )(hidden, vocab_weight)
        dense = backend.jit(
            lambda z: backend.module.token_cross_entropy(z, targets, weights=weights)
        )(backend.array(logits, dtype))
        assert backend.dtype_name(chunked) == backend.dtype_name(dense) == "float32"
        assert float(chunked) == pytest.approx(want, rel=1e-5)
        # The dense form sees logits rounded to the dtype: a bfloat16 ulp at |z| ~ 10 is ~0.06.
        tolerance = 0.1 if dtype == "bfloat16" else 1e-5
        assert float(dense) == pytest.approx(
            oracle.token_cross_entropy(logits, problem["targets"], weights=bool_weights),
            rel=tolerance,
        )


def test_a_sequence_without_weighted_tokens_adds_zero_and_counts_in_the_batch_mean(
    backend: Any,
) -> None:
    logits = np.log(np.array([[[0.5, 0.5], [0.5, 0.5]], [[0.9, 0.1], [0.9, 0.1]]]))
    weights = np.array([[1.0, 1.0], [0.0, 0.0]])
    got = backend.module.token_cross_entropy(
        backend.array(logits, "float32"),
        backend.array(np.array([[0, 1], [-1, 7]])),
        weights=backend.array(weights),
    )
    assert float(got) == pytest.approx(np.log(2.0) / 2, rel=1e-6)


def test_a_weighted_id_outside_the_vocabulary_is_never_a_silent_loss(backend: Any) -> None:
    # numpy and torch on CPU raise; JAX (no index checks) returns NaN, dense and chunked alike.
    hidden, vocab_weight = (
        backend.array(np.zeros((1, 2, 4)), "float32"),
        backend.array(np.zeros((3, 4)), "float32"),
    )
    targets, weights = backend.array(np.array([[0, 7]])), backend.array(np.ones((1, 2)))
    logits = backend.array(np.zeros((1, 2, 3)), "float32")
    calls = (
        lambda: backend.module.token_cross_entropy(logits, targets, weights=weights),
        lambda: backend.module.chunked_token_cross_entropy(
            hidden, vocab_weight, targets, weights=weights, chunk_size=2
        ),
    )
    for call in calls:
        if backend.name == "jax":
            assert np.isnan(float(call()))
        else:
            with pytest.raises((ValueError, IndexError, RuntimeError)):
                call()


def distillation_problem(seed: int, batch: int, patches: int, classes: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "student": rng.normal(size=(batch, patches, classes)) * 0.3,
        "teacher": rng.normal(size=(batch, patches, classes)) * 0.2,
        "center": rng.normal(size=classes) * 0.1,
        "mask": rng.random((batch, patches)) < 0.5,
    }


distillation_shapes = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "batch": st.integers(1, 4),
        "patches": st.integers(1, 4),
        "classes": st.integers(1, 9),
    }
)
temperatures = st.fixed_dictionaries(
    {
        "student_temperature": st.sampled_from([0.1, 0.5, 1.0]),
        "teacher_temperature": st.sampled_from([0.04, 0.07, 1.0]),
    }
)


def test_self_distillation_loss_matches_the_oracle_and_leaves_the_teacher_without_gradient(
    backend: Any,
) -> None:
    with backend.x64():

        @backend.examples(jax=4)
        @given(shape=distillation_shapes, temperature=temperatures)
        def matches_oracle(shape: dict[str, int], temperature: dict[str, float]) -> None:
            problem = distillation_problem(**shape)
            student, teacher = problem["student"][:, 0], problem["teacher"][:, 0]
            want = oracle.self_distillation_loss_and_grads(
                student, teacher, center=problem["center"], **temperature
            )

            def loss_of(student: Any, teacher: Any, center: Any) -> Any:
                loss = backend.module.self_distillation_loss(
                    student, teacher, center=center, **temperature
                )
                # Keeps teacher and center in the graph: their gradient must then be exactly 0.
                return loss + 0.0 * (teacher.sum() + center.sum())

            loss, grads = backend.value_and_grad(
                loss_of, *(backend.array(a) for a in (student, teacher, problem["center"]))
            )
            assert float(loss) == pytest.approx(want.loss, rel=1e-12, abs=1e-12)
            np.testing.assert_allclose(
                backend.to_numpy(grads[0]), want.grad_student_logits, **TIGHT
            )
            assert not backend.to_numpy(grads[1]).any()
            assert not backend.to_numpy(grads[2]).any()

        matches_oracle()


def test_masked_patch_distillation_loss_matches_the_oracle_over_masked_patches_only(
    backend: Any,
) -> None:
    with backend.x64():

        @backend.examples(jax=4)
        @given(shape=distillation_shapes, temperature=temperatures)
        def matches_oracle(shape: dict[str, int], temperature: dict[str, float]) -> None:
            problem = distillation_problem(**shape)
            mask = backend.array(problem["mask"])
            want = oracle.masked_patch_distillation_loss_and_grads(
                problem["student"],
                problem["teacher"],
                problem["mask"],
                center=problem["center"],
                **temperature,
            )

            def loss_of(student: Any, teacher: Any, center: Any) -> Any:
                loss = backend.module.masked_patch_distillation_loss(
                    student, teacher, mask, center=center, **temperature
                )
                return loss + 0.0 * (teacher.sum() + center.sum())

            loss, grads = backend.value_and_grad(
                loss_of,
                *(backend.array(problem[k]) for k in ("student", "teacher", "center")),
            )
            assert float(loss) == pytest.approx(want.loss, rel=1e-12, abs=1e-12)
            np.testing.assert_allclose(
                backend.to_numpy(grads[0]), want.grad_student_logits, **TIGHT
            )
            assert not backend.to_numpy(grads[1]).any()
            assert not backend.to_numpy(grads[2]).any()

        matches_oracle()


def test_update_center_is_the_ema_of_the_batch_mean(backend: Any) -> None:
    problem = distillation_problem(seed=1, batch=3, patches=4, classes=5)
    for teacher in (problem["teacher"], problem["teacher"][:, 0]):
        want = oracle.update_center(problem["center"].astype(np.float32), teacher, momentum=0.75)
        got = backend.module.update_center(
            backend.array(problem["center"], "float32"),
            backend.array(teacher, "float32"),
            momentum=0.75,
        )
        assert backend.dtype_name(got) == "float32"
        np.testing.assert_allclose(backend.to_numpy(got), want, rtol=1e-6, atol=1e-7)


def bad_calls(backend: Any) -> dict[str, tuple[Any, type[Exception], str]]:
    """Each entry: a call with one bad argument, the error it raises and a phrase of its message."""
    module, array = backend.module, backend.array
    logits, targets = array(np.zeros((2, 3, 5)), "float32"), array(np.zeros((2, 3), np.int32))
    weights = array(np.ones((2, 3)), "float32")
    hidden, vocab_weight = array(np.zeros((2, 3, 4)), "float32"), array(np.zeros((5, 4)), "float32")
    student, center = array(np.zeros((2, 6)), "float32"), array(np.zeros(6), "float32")
    patches, mask = array(np.zeros((2, 3, 6)), "float32"), array(np.ones((2, 3), bool))
    return {
        "float targets": (
            lambda: module.token_cross_entropy(logits, weights, weights=weights),
            TypeError,
            "targets: expected an integer dtype",
        ),
        "weights of another shape": (
            lambda: module.token_cross_entropy(logits, targets, weights=array(np.ones((2, 4)))),
            ValueError,
            "weights: expected shape [2, 3]",
        ),
        "logits of rank 2": (
            lambda: module.token_cross_entropy(logits[0], targets, weights=weights),
            ValueError,
            "logits: expected rank 3",
        ),
        "integer logits": (
            lambda: module.token_cross_entropy(
                array(np.zeros((2, 3, 5), np.int32)), targets, weights=weights
            ),
            TypeError,
            "logits: expected a floating dtype",
        ),
        "vocab_weight of another dim": (
            lambda: module.chunked_token_cross_entropy(
                hidden, vocab_weight[:, :3], targets, weights=weights, chunk_size=2
            ),
            ValueError,
            "vocab_weight: expected [vocab, 4]",
        ),
        "vocab_bias of another size": (
            lambda: module.chunked_token_cross_entropy(
                hidden,
                vocab_weight,
                targets,
                weights=weights,
                vocab_bias=array(np.zeros(4), "float32"),
                chunk_size=2,
            ),
            ValueError,
            "vocab_bias: expected shape [5]",
        ),
        "chunk_size 0": (
            lambda: module.chunked_token_cross_entropy(
                hidden, vocab_weight, targets, weights=weights, chunk_size=0
            ),
            ValueError,
            "chunk_size: expected a positive int",
        ),
        "teacher of another shape": (
            lambda: module.self_distillation_loss(student, student[:, :5], center=center),
            ValueError,
            "teacher_logits: expected the student's shape [2, 6]",
        ),
        "teacher with fewer rows": (
            lambda: module.masked_patch_distillation_loss(
                patches, patches[:1], mask, center=center
            ),
            ValueError,
            "teacher_logits: expected the student's shape [2, 3, 6]",
        ),
        "center of another size": (
            lambda: module.self_distillation_loss(student, student, center=center[:5]),
            ValueError,
            "center: expected shape [6]",
        ),
        "zero temperature": (
            lambda: module.self_distillation_loss(
                student, student, center=center, teacher_temperature=0.0
            ),
            ValueError,
            "teacher_temperature: expected a finite positive float",
        ),
        "float mask": (
            lambda: module.masked_patch_distillation_loss(
                patches, patches, array(np.ones((2, 3)), "float32"), center=center
            ),
            TypeError,
            "mask: expected a bool dtype",
        ),
        "mask of another shape": (
            lambda: module.masked_patch_distillation_loss(
                patches, patches, array(np.ones((2, 4), bool)), center=center
            ),
            ValueError,
            "mask: expected shape [2, 3]",
        ),
        "momentum above 1": (
            lambda: module.update_center(center, student, momentum=1.5),
            ValueError,
            "momentum: expected a float in [0, 1]",
        ),
    }


BAD_CALLS = [
    "float targets",
    "weights of another shape",
    "logits of rank 2",
    "integer logits",
    "vocab_weight of another dim",
    "vocab_bias of another size",
    "chunk_size 0",
    "teacher of another shape",
    "teacher with fewer rows",
    "center of another size",
    "zero temperature",
    "float mask",
    "mask of another shape",
    "momentum above 1",
]


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_input_raises_an_error_naming_the_argument(backend: Any, case: str) -> None:
    call, error, phrase = bad_calls(backend)[case]
    with pytest.raises(error, match=None) as raised:
        call()
    assert phrase in str(raised.value)
