"""The float64 oracle of the SigLIP 2 recipe losses: token cross-entropy (LocCa decoder),
self-distillation (SILC), masked patch distillation (TIPS) and the teacher centre, with analytic
gradients. Written for clarity, not speed; torch and JAX are tested against it."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from siglip_loss._recipe_validation import check_chunked_token_cross_entropy
from siglip_loss._recipe_validation import check_distillation
from siglip_loss._recipe_validation import check_token_cross_entropy
from siglip_loss._recipe_validation import check_update_center

Float64Array = npt.NDArray[np.float64]


class TokenCrossEntropyAndGrads(NamedTuple):
    """The token cross-entropy and its gradient with respect to the logits (float64)."""

    loss: float
    grad_logits: Float64Array  # [batch, length, vocab]


class ChunkedTokenCrossEntropyAndGrads(NamedTuple):
    """The token cross-entropy of ``hidden @ vocab_weight.T + vocab_bias`` and its gradients."""

    loss: float
    grad_hidden: Float64Array  # [batch, length, dim]
    grad_vocab_weight: Float64Array  # [vocab, dim]
    grad_vocab_bias: Float64Array  # [vocab]


class DistillationLossAndGrads(NamedTuple):
    """A distillation loss and its gradient with respect to the student logits (float64).

    The teacher side is a stop-gradient: the gradients with respect to ``teacher_logits`` and
    ``center`` are zero by definition.
    """

    loss: float
    grad_student_logits: Float64Array  # the student's shape


def _array(value: Any) -> Any:
    return value if hasattr(value, "dtype") else np.asarray(value)


def _log_softmax(x: Float64Array) -> Float64Array:
    shifted = x - np.max(x, axis=-1, keepdims=True)
    result: Float64Array = shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
    return result


def _checked_token_weights(targets: Any, weights: Any, vocab: int) -> tuple[Any, Float64Array]:
    weight = np.asarray(weights, dtype=np.float64)
    if np.any(weight < 0) or not np.all(np.isfinite(weight)):
        raise ValueError("weights: expected finite values >= 0 (0 = ignored token)")
    # Ignored positions may hold any id (a pad of -100 or vocab); they read token 0 instead.
    ids = np.where(weight != 0, np.asarray(targets, dtype=np.int64), 0)
    if np.any((ids < 0) | (ids >= vocab)):
        raise ValueError(f"targets: expected ids in [0, {vocab}) wherever weights != 0")
    return ids, weight


def _per_sequence_scale(weight: Float64Array) -> Float64Array:
    # 1 / (batch * tokens counted in the sequence); a sequence with no weighted token counts 1
    # (it adds 0 to the loss and still counts in the batch mean), so no NaN and no data-dependent
    # error, the same rule under jax.jit and in torch.
    counted = weight.sum(axis=1)
    normaliser = np.where(counted > 0, counted, 1.0)
    scale: Float64Array = weight / (weight.shape[0] * normaliser[:, None])
    return scale


def token_cross_entropy_and_grads(
    logits: Any, targets: Any, *, weights: Any
) -> TokenCrossEntropyAndGrads:
    r"""Weighted token cross-entropy and its analytic gradient (float64). See
    :func:`token_cross_entropy`.

    .. math::
        \frac{\partial L}{\partial z_{blv}} = \frac{w_{bl}}{B\,n_b}
        \big(\operatorname{softmax}(z_{bl})_v - [v = y_{bl}]\big)

    Examples:
        >>> import numpy as np
        >>> from siglip_loss.numpy import token_cross_entropy_and_grads
        >>> result = token_cross_entropy_and_grads(
        ...     np.zeros((1, 2, 4)), np.array([[1, 2]]), weights=np.array([[1.0, 0.0]])
        ... )
        >>> (
        ...     round(result.loss, 4),
        ...     result.grad_logits[0, 0].tolist(),
        ...     result.grad_logits[0, 1].tolist(),
        ... )
        (1.3863, [0.25, -0.75, 0.25, 0.25], [0.0, 0.0, 0.0, 0.0])
    """
    logits, targets, weights = _array(logits), _array(targets), _array(weights)
    _, _, vocab = check_token_cross_entropy(logits, targets, weights)
    ids, weight = _checked_token_weights(targets, weights, vocab)
    log_probs = _log_softmax(np.asarray(logits, dtype=np.float64))  # [batch, length, vocab]
    token_loss = -np.take_along_axis(log_probs, ids[..., None], axis=-1)[..., 0]
    scale = _per_sequence_scale(weight)  # [batch, length]
    one_hot = np.eye(vocab)[ids]
    grad = scale[..., None] * (np.exp(log_probs) - one_hot)
    return TokenCrossEntropyAndGrads(float(np.sum(scale * token_loss)), grad)


def token_cross_entropy(logits: Any, targets: Any, *, weights: Any) -> float:
    r"""Weighted next-token cross-entropy: per sequence the weighted mean, then the batch mean.

    .. math::
        L = \frac{1}{B}\sum_b \frac{1}{n_b}\sum_l w_{bl}\big(\log\textstyle\sum_v e^{z_{blv}}
        - z_{bl y_{bl}}\big), \qquad n_b = \sum_l w_{bl}\ (1 \text{ if } \sum_l w_{bl} = 0)

    The captioning loss of CapPa/LocCa (big_vision's ``weighted_softmax_xent`` with
    ``normalize=True``): pad tokens and the task prefix get weight 0. A sequence whose weights are
    all 0 adds 0 and still counts in the batch mean (no NaN, no error: the same rule in every
    backend, also under ``jax.jit``). Ignored positions may hold any id (e.g. -100).

    Args:
        logits: ``[batch, length, vocab]`` decoder logits (any floating dtype).
        targets: ``[batch, length]`` integer token ids, in ``[0, vocab)`` wherever weighted.
        weights: ``[batch, length]`` bool or non-negative numbers (0 = ignored token).

    Returns:
        The loss as a Python float (computed in float64).

    Raises:
        TypeError: ``logits`` not floating, ``targets`` not integer, ``weights`` not
            bool/integer/floating.
        ValueError: ``logits`` not ``[batch, length, vocab]``, ``targets`` or ``weights`` of
            another shape, a negative weight, or a weighted target outside ``[0, vocab)``.

    Examples:
        >>> import numpy as np
        >>> from siglip_loss.numpy import token_cross_entropy
        >>> logits = np.log(np.array([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]]))
        >>> round(token_cross_entropy(logits, np.array([[0, 1]]), weights=np.ones((1, 2))), 6)
        0.458145
    """
    return token_cross_entropy_and_grads(logits, targets, weights=weights).loss


def chunked_token_cross_entropy(
    hidden: Any,
    vocab_weight: Any,
    targets: Any,
    *,
    weights: Any,
    vocab_bias: Any = None,
    chunk_size: int,
) -> float:
    r""":func:`token_cross_entropy` of ``logits = hidden @ vocab_weight.T + vocab_bias``, computed
    over ``chunk_size`` vocabulary rows at a time (running log-sum-exp).

    Never holds more than ``[batch, length, chunk_size]`` logits; equal to the dense form.

    Args:
        hidden: ``[batch, length, dim]`` decoder outputs before the vocabulary projection.
        vocab_weight: ``[vocab, dim]`` projection (an ``nn.Linear(dim, vocab).weight``).
        targets: ``[batch, length]`` integer token ids.
        weights: ``[batch, length]`` bool or non-negative numbers (0 = ignored token).
        vocab_bias: ``[vocab]`` or None.
        chunk_size: vocabulary rows per chunk (>= 1; the last chunk may be shorter).

    Returns:
        The loss as a Python float (float64).

    Raises:
        TypeError: as :func:`token_cross_entropy`, and a non-int ``chunk_size``.
        ValueError: as :func:`token_cross_entropy`, ``vocab_weight``/``vocab_bias`` not
            matching ``hidden``'s dim, or ``chunk_size < 1``.

    Examples:
        >>> import numpy as np
        >>> from siglip_loss.numpy import chunked_token_cross_entropy, token_cross_entropy
        >>> rng = np.random.default_rng(0)
        >>> hidden, weight = rng.normal(size=(2, 3, 4)), rng.normal(size=(10, 4))
        >>> targets, weights = rng.integers(0, 10, (2, 3)), np.ones((2, 3))
        >>> chunked = chunked_token_cross_entropy(
        ...     hidden, weight, targets, weights=weights, chunk_size=3
        ... )
        >>> bool(
        ...     np.isclose(
        ...         chunked, token_cross_entropy(hidden @ weight.T, targets, weights=weights)
        ...     )
        ... )
        True
    """
    hidden, vocab_weight, targets, weights = map(_array, (hidden, vocab_weight, targets, weights))
    if vocab_bias is not None:
        vocab_bias = _array(vocab_bias)
    _, _, _, vocab = check_chunked_token_cross_entropy(
        hidden, vocab_weight, targets, weights, vocab_bias, chunk_size
    )
    ids, weight = _checked_token_weights(targets, weights, vocab)
    work = np.asarray(hidden, dtype=np.float64)
    matrix = np.asarray(vocab_weight, dtype=np.float64)
    bias = np.zeros(vocab) if vocab_bias is None else np.asarray(vocab_bias, dtype=np.float64)
    running_max = np.full(ids.shape, -np.inf)
    running_sum = np.zeros(ids.shape)
    target_logit = np.zeros(ids.shape)
    for start in range(0, vocab, chunk_size):
        stop = min(start + chunk_size, vocab)
        block = work @ matrix[start:stop].T + bias[start:stop]  # [batch, length, chunk]
        new_max = np.maximum(running_max, block.max(axis=-1))
        running_sum = running_sum * np.exp(running_max - new_max) + np.exp(
            block - new_max[..., None]
        ).sum(axis=-1)
        running_max = new_max
        inside = (ids >= start) & (ids < stop)
        local = np.clip(ids - start, 0, stop - start - 1)
        picked = np.take_along_axis(block, local[..., None], axis=-1)[..., 0]
        target_logit = np.where(inside, picked, target_logit)
    token_loss = running_max + np.log(running_sum) - target_logit
    return float(np.sum(_per_sequence_scale(weight) * token_loss))


def chunked_token_cross_entropy_and_grads(
    hidden: Any,
    vocab_weight: Any,
    targets: Any,
    *,
    weights: Any,
    vocab_bias: Any = None,
) -> ChunkedTokenCrossEntropyAndGrads:
    """The loss of :func:`chunked_token_cross_entropy` with its gradients, computed densely
    (float64; the chain rule through ``logits = hidden @ vocab_weight.T + vocab_bias``).

    Examples:
        >>> import numpy as np
        >>> from siglip_loss.numpy import chunked_token_cross_entropy_and_grads
        >>> result = chunked_token_cross_entropy_and_grads(
        ...     np.ones((1, 1, 2)), np.zeros((3, 2)), np.array([[0]]), weights=np.ones((1, 1))
        ... )
        >>> round(result.loss, 4), result.grad_vocab_bias.round(4).tolist()
        (1.0986, [-0.6667, 0.3333, 0.3333])
    """
    hidden, vocab_weight, targets, weights = map(_array, (hidden, vocab_weight, targets, weights))
    if vocab_bias is not None:
        vocab_bias = _array(vocab_bias)
    _, _, _, vocab = check_chunked_token_cross_entropy(
        hidden, vocab_weight, targets, weights, vocab_bias, 1
    )
    work = np.asarray(hidden, dtype=np.float64)
    matrix = np.asarray(vocab_weight, dtype=np.float64)
    bias = np.zeros(vocab) if vocab_bias is None else np.asarray(vocab_bias, dtype=np.float64)
    dense = token_cross_entropy_and_grads(work @ matrix.T + bias, targets, weights=weights)
    grad_logits = dense.grad_logits  # [batch, length, vocab]
    return ChunkedTokenCrossEntropyAndGrads(
        dense.loss,
        np.einsum("blv,vd->bld", grad_logits, matrix),
        np.einsum("blv,bld->vd", grad_logits, work),
        grad_logits.sum(axis=(0, 1)),
    )


def _distillation_terms(
    student_logits: Any,
    teacher_logits: Any,
    center: Any,
    student_temperature: float,
    teacher_temperature: float,
) -> tuple[Float64Array, Float64Array]:
    """Per-row cross-entropy ``-sum_k P_t log P_s`` and its gradient with respect to the student."""
    teacher = np.asarray(teacher_logits, dtype=np.float64)
    teacher_probs = np.exp(
        _log_softmax((teacher - np.asarray(center, dtype=np.float64)) / teacher_temperature)
    )
    student_log_probs = _log_softmax(
        np.asarray(student_logits, dtype=np.float64) / student_temperature
    )
    cross_entropy: Float64Array = -np.sum(teacher_probs * student_log_probs, axis=-1)
    grad: Float64Array = (np.exp(student_log_probs) - teacher_probs) / student_temperature
    return cross_entropy, grad


def self_distillation_loss_and_grads(
    student_logits: Any,
    teacher_logits: Any,
    *,
    center: Any,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.04,
) -> DistillationLossAndGrads:
    r""":func:`self_distillation_loss` and its gradient with respect to the student (float64).

    .. math::
        \frac{\partial L}{\partial s_{bk}} = \frac{1}{B\,\tau_s}\big(P_s(b)_k - P_t(b)_k\big)

    Examples:
        >>> import numpy as np
        >>> from siglip_loss.numpy import self_distillation_loss_and_grads
        >>> result = self_distillation_loss_and_grads(
        ...     np.zeros((1, 2)),
        ...     np.array([[1.0, 0.0]]),
        ...     center=np.zeros(2),
        ...     student_temperature=1.0,
        ...     teacher_temperature=1.0,
        ... )
        >>> round(result.loss, 4), result.grad_student_logits.round(4).tolist()
        (0.6931, [[-0.2311, 0.2311]])
    """
    student_logits, teacher_logits, center = map(_array, (student_logits, teacher_logits, center))
    shape = check_distillation(
        student_logits,
        teacher_logits,
        center,
        student_temperature=student_temperature,
        teacher_temperature=teacher_temperature,
        patches=False,
    )
    cross_entropy, grad = _distillation_terms(
        student_logits, teacher_logits, center, student_temperature, teacher_temperature
    )
    return DistillationLossAndGrads(float(np.mean(cross_entropy)), grad / shape[0])


def self_distillation_loss(
    student_logits: Any,
    teacher_logits: Any,
    *,
    center: Any,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.04,
) -> float:
    r"""DINO-style self-distillation (SILC): the student's softmax against the teacher's centred,
    sharpened softmax, cross-entropy averaged over the batch.

    .. math::
        P_t(b) = \operatorname{softmax}\Big(\frac{t_b - c}{\tau_t}\Big),\quad
        P_s(b) = \operatorname{softmax}\Big(\frac{s_b}{\tau_s}\Big),\quad
        L = -\frac{1}{B}\sum_b \sum_k P_t(b)_k \log P_s(b)_k

    The teacher side (``teacher_logits`` and ``center``) is a stop-gradient. For several student
    views of one teacher view (SILC's local crops), repeat the teacher rows: the shapes must
    match. SILC: Naeem et al., arXiv:2310.13355; DINO: Caron et al., arXiv:2104.14294.

    Args:
        student_logits: ``[batch, classes]`` student head outputs (prototype scores).
        teacher_logits: ``[batch, classes]`` teacher head outputs, one row per student row.
        center: ``[classes]`` running mean of the teacher logits (:func:`update_center`).
        student_temperature: ``tau_s`` (DINO: 0.1).
        teacher_temperature: ``tau_t`` (DINO: 0.04; lower sharpens the targets).

    Returns:
        The loss as a Python float (float64).

    Raises:
        TypeError: an argument that is not a floating array, or a temperature that is not a
            number.
        ValueError: logits not ``[batch, classes]``, a teacher of another shape than the student,
            a ``center`` that is not ``[classes]``, or a temperature that is not positive.

    Examples:
        >>> import numpy as np
        >>> from siglip_loss.numpy import self_distillation_loss
        >>> round(
        ...     self_distillation_loss(np.zeros((3, 4)), np.zeros((3, 4)), center=np.zeros(4)), 4
        ... )  # uniform targets and predictions: log(4)
        1.3863
    """
    return self_distillation_loss_and_grads(
        student_logits,
        teacher_logits,
        center=center,
        student_temperature=student_temperature,
        teacher_temperature=teacher_temperature,
    ).loss


def masked_patch_distillation_loss_and_grads(
    student_patch_logits: Any,
    teacher_patch_logits: Any,
    mask: Any,
    *,
    center: Any,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.04,
) -> DistillationLossAndGrads:
    """:func:`masked_patch_distillation_loss` and its gradient with respect to the student
    (float64); unmasked patches get zero gradient.

    Examples:
        >>> import numpy as np
        >>> from siglip_loss.numpy import masked_patch_distillation_loss_and_grads
        >>> result = masked_patch_distillation_loss_and_grads(
        ...     np.zeros((1, 2, 2)),
        ...     np.array([[[1.0, 0.0], [1.0, 0.0]]]),
        ...     np.array([[True, False]]),
        ...     center=np.zeros(2),
        ...     student_temperature=1.0,
        ...     teacher_temperature=1.0,
        ... )
        >>> round(result.loss, 4), result.grad_student_logits.round(4).tolist()
        (0.6931, [[[-0.2311, 0.2311], [0.0, 0.0]]])
    """
    student, teacher, mask, center = map(
        _array, (student_patch_logits, teacher_patch_logits, mask, center)
    )
    check_distillation(
        student,
        teacher,
        center,
        student_temperature=student_temperature,
        teacher_temperature=teacher_temperature,
        patches=True,
        mask=mask,
    )
    cross_entropy, grad = _distillation_terms(
        student, teacher, center, student_temperature, teacher_temperature
    )
    chosen = np.asarray(mask, dtype=np.float64)
    masked = max(float(chosen.sum()), 1.0)
    return DistillationLossAndGrads(
        float(np.sum(chosen * cross_entropy) / masked), grad * (chosen / masked)[..., None]
    )


def masked_patch_distillation_loss(
    student_patch_logits: Any,
    teacher_patch_logits: Any,
    mask: Any,
    *,
    center: Any,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.04,
) -> float:
    r"""Masked patch distillation (TIPS, iBOT-style): :func:`self_distillation_loss` per patch,
    averaged over the patches the student saw masked.

    .. math::
        L = -\frac{1}{\max(1, |M|)}\sum_{(b, j) \in M}\sum_k
        \operatorname{softmax}\Big(\frac{t_{bj} - c}{\tau_t}\Big)_k
        \log\operatorname{softmax}\Big(\frac{s_{bj}}{\tau_s}\Big)_k

    ``M`` is the set of masked patches of the whole batch (a flat mean: an image with more masked
    patches weighs more; with a fixed masking ratio the per-image mean is the same). No masked
    patch gives 0. The teacher side is a stop-gradient. TIPS: Maninis et al., arXiv:2410.16512;
    iBOT: Zhou et al., arXiv:2111.07832.

    Args:
        student_patch_logits: ``[batch, patches, classes]`` student patch-head outputs (input
            with the masked patch embeddings replaced by the mask token).
        teacher_patch_logits: ``[batch, patches, classes]`` teacher outputs on the unmasked view.
        mask: ``[batch, patches]`` bool, True where the student's patch was masked.
        center: ``[classes]`` running mean of the teacher patch logits.
        student_temperature: ``tau_s`` (0.1).
        teacher_temperature: ``tau_t`` (0.04).

    Returns:
        The loss as a Python float (float64).

    Raises:
        TypeError: logits or centre not floating arrays, a mask that is not bool, a temperature
            that is not a number.
        ValueError: logits not ``[batch, patches, classes]``, a teacher of another shape, a mask
            that is not ``[batch, patches]``, a centre that is not ``[classes]``, a temperature
            that is not positive.

    Examples:
        >>> import numpy as np
        >>> from siglip_loss.numpy import masked_patch_distillation_loss
        >>> student = np.zeros((1, 3, 2))
        >>> teacher = np.array([[[9.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
        >>> mask = np.array([[False, True, True]])  # the first patch is not counted
        >>> round(masked_patch_distillation_loss(student, teacher, mask, center=np.zeros(2)), 4)
        0.6931
    """
    return masked_patch_distillation_loss_and_grads(
        student_patch_logits,
        teacher_patch_logits,
        mask,
        center=center,
        student_temperature=student_temperature,
        teacher_temperature=teacher_temperature,
    ).loss


def update_center(center: Any, teacher_logits: Any, *, momentum: float = 0.9) -> npt.NDArray[Any]:
    r"""The teacher centre's EMA step: ``momentum * center + (1 - momentum) * batch mean``.

    .. math::
        c \leftarrow m\,c + (1 - m)\,\frac{1}{|R|}\sum_{r \in R} t_r

    ``R`` is every row of ``teacher_logits`` (all axes but the last: images, or images x patches
    for the TIPS centre). This oracle is single-process; the torch and JAX versions reduce the
    mean over ranks/devices.

    Args:
        center: ``[classes]`` current centre.
        teacher_logits: ``[batch, ..., classes]`` teacher head outputs.
        momentum: ``m`` in ``[0, 1]`` (DINO: 0.9).

    Returns:
        The new ``[classes]`` centre in ``center``'s dtype (computed in float64).

    Raises:
        TypeError: not floating arrays, or a momentum that is not a number.
        ValueError: ``teacher_logits`` of rank < 2 or empty, a centre that is not ``[classes]``,
            or a momentum outside ``[0, 1]``.

    Examples:
        >>> import numpy as np
        >>> from siglip_loss.numpy import update_center
        >>> update_center(np.zeros(2), np.array([[1.0, 2.0], [3.0, 4.0]]), momentum=0.5)
        array([1. , 1.5])
    """
    center, teacher_logits = _array(center), _array(teacher_logits)
    classes = check_update_center(center, teacher_logits, momentum)
    rows = np.asarray(teacher_logits, dtype=np.float64).reshape(-1, classes)
    updated = momentum * np.asarray(center, dtype=np.float64) + (1.0 - momentum) * rows.mean(axis=0)
    result: npt.NDArray[Any] = updated.astype(center.dtype)
    return result
