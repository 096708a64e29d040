"""The SigLIP 2 recipe losses in JAX: token cross-entropy (LocCa decoder), self-distillation
(SILC), masked patch distillation (TIPS) and the teacher centre's EMA.

Dtype policy as for the sigmoid loss: 16-bit and float32 inputs are computed in float32, float64
inputs in float64 (with ``jax_enable_x64``). Every function is jit-able; shapes, dtypes,
temperatures, the momentum and ``chunk_size`` are static.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from siglip_loss._recipe_validation import check_chunked_token_cross_entropy
from siglip_loss._recipe_validation import check_distillation
from siglip_loss._recipe_validation import check_token_cross_entropy
from siglip_loss._recipe_validation import check_update_center
from siglip_loss.jax._common import compute_dtype

Carry = tuple[jax.Array, jax.Array, jax.Array]


def _ids_and_scale(
    targets: jax.Array, weights: jax.Array, dtype: Any
) -> tuple[jax.Array, jax.Array]:
    """Target ids with ignored positions read as 0, and ``w_bl / (B * n_b)`` (no gradient)."""
    weight = lax.stop_gradient(jnp.asarray(weights).astype(dtype))
    ids = jnp.where(weight != 0, jnp.asarray(targets).astype(jnp.int32), 0)
    counted = jnp.sum(weight, axis=1, keepdims=True)
    # A sequence without weighted tokens adds 0 and still counts in the batch mean (no NaN).
    normaliser = jnp.where(counted > 0, counted, jnp.ones_like(counted))
    return ids, weight / (weight.shape[0] * normaliser)


def token_cross_entropy(logits: jax.Array, targets: jax.Array, *, weights: jax.Array) -> jax.Array:
    r"""Weighted next-token cross-entropy: per sequence the weighted mean, then the batch mean.

    .. math::
        L = \frac{1}{B}\sum_b \frac{1}{n_b}\sum_l w_{bl}\big(\log\textstyle\sum_v e^{z_{blv}}
        - z_{bl y_{bl}}\big), \qquad n_b = \sum_l w_{bl}\ (1 \text{ if } \sum_l w_{bl} = 0)

    The captioning loss of CapPa/LocCa (big_vision's ``weighted_softmax_xent`` with
    ``normalize=True``): pad tokens and the task prefix get weight 0. A sequence whose weights are
    all 0 adds 0 and still counts in the batch mean (no NaN, no error). Ignored positions may hold
    any id (e.g. -100). ``weights`` receive no gradient.

    Args:
        logits: ``[batch, length, vocab]`` decoder logits.
        targets: ``[batch, length]`` integer token ids, in ``[0, vocab)`` wherever weighted (JAX
            does not check indices: an id outside gives a NaN loss).
        weights: ``[batch, length]`` bool or non-negative numbers (0 = ignored token).

    Returns:
        0-d float32 array (float64 for float64 logits under x64).

    Raises:
        TypeError: ``logits`` not floating, ``targets`` not integer, ``weights`` not
            bool/integer/floating.
        ValueError: ``logits`` not ``[batch, length, vocab]``, or ``targets``/``weights`` of
            another shape than ``[batch, length]``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from siglip_loss.jax import token_cross_entropy
        >>> logits = jnp.log(jnp.array([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]]))
        >>> loss = token_cross_entropy(logits, jnp.array([[0, 1]]), weights=jnp.ones((1, 2)))
        >>> round(float(loss), 6), loss.dtype
        (0.458145, dtype('float32'))
    """
    check_token_cross_entropy(logits, targets, weights)
    dtype = compute_dtype(logits)
    ids, scale = _ids_and_scale(targets, weights, dtype)
    work = jnp.asarray(logits).astype(dtype)
    picked = jnp.take_along_axis(work, ids[..., None], axis=-1)[..., 0]
    return jnp.sum(scale * (jax.nn.logsumexp(work, axis=-1) - picked))


def _chunk_start(index: jax.Array, chunk_size: int, vocab: int) -> tuple[jax.Array, jax.Array]:
    """Where chunk ``index`` starts once clamped into the vocabulary (the last chunk overlaps the
    one before it instead of reading past the end), and where it was meant to start."""
    wanted = index * chunk_size
    return jnp.minimum(wanted, vocab - chunk_size), wanted


def _block(
    work: jax.Array,
    vocab_weight: jax.Array,
    vocab_bias: jax.Array,
    start: jax.Array,
    chunk_size: int,
) -> jax.Array:
    """``[batch, length, chunk]`` logits of vocabulary rows ``start : start + chunk_size``."""
    rows = lax.dynamic_slice_in_dim(vocab_weight, start, chunk_size).astype(work.dtype)
    bias = lax.dynamic_slice_in_dim(vocab_bias, start, chunk_size).astype(work.dtype)
    return jnp.einsum("bld,cd->blc", work, rows) + bias


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _chunked_core(
    hidden: jax.Array,
    vocab_weight: jax.Array,
    vocab_bias: jax.Array,
    ids: jax.Array,
    scale: jax.Array,
    chunk_size: int,
) -> jax.Array:
    loss, _ = _chunked_forward(hidden, vocab_weight, vocab_bias, ids, scale, chunk_size)
    return loss


def _chunked_forward(
    hidden: jax.Array,
    vocab_weight: jax.Array,
    vocab_bias: jax.Array,
    ids: jax.Array,
    scale: jax.Array,
    chunk_size: int,
) -> tuple[jax.Array, tuple[Any, ...]]:
    dtype = scale.dtype
    work = hidden.astype(dtype)
    vocab = vocab_weight.shape[0]
    count = -(-vocab // chunk_size)
    columns = jnp.arange(chunk_size, dtype=jnp.int32)

    def step(carry: Carry, index: jax.Array) -> tuple[Carry, None]:
        running_max, running_sum, target_logit = carry
        start, wanted = _chunk_start(index, chunk_size, vocab)
        block = _block(work, vocab_weight, vocab_bias, start, chunk_size)
        # Columns the clamped last chunk shares with the one before it are counted once.
        block = jnp.where(start + columns >= wanted, block, -jnp.inf)
        new_max = jnp.maximum(running_max, jnp.max(block, axis=-1))
        running_sum = running_sum * jnp.exp(running_max - new_max) + jnp.sum(
            jnp.exp(block - new_max[..., None]), axis=-1
        )
        inside = (ids >= wanted) & (ids < wanted + chunk_size)
        local = jnp.clip(ids - start, 0, chunk_size - 1)
        picked = jnp.take_along_axis(block, local[..., None], axis=-1)[..., 0]
        return (new_max, running_sum, jnp.where(inside, picked, target_logit)), None

    start_carry = (
        jnp.full(ids.shape, -jnp.inf, dtype),
        jnp.zeros(ids.shape, dtype),
        jnp.zeros(ids.shape, dtype),
    )
    (running_max, running_sum, target_logit), _ = lax.scan(
        step, start_carry, jnp.arange(count, dtype=jnp.int32)
    )
    log_sum_exp = running_max + jnp.log(running_sum)
    # A weighted id outside the vocabulary matched no chunk: NaN, as the dense form gives.
    target_logit = jnp.where((ids >= 0) & (ids < vocab), target_logit, jnp.nan)
    loss = jnp.sum(scale * (log_sum_exp - target_logit))
    return loss, (hidden, vocab_weight, vocab_bias, ids, scale, log_sum_exp)


def _chunked_backward(
    chunk_size: int, residuals: tuple[Any, ...], grad_loss: jax.Array
) -> tuple[Any, ...]:
    hidden, vocab_weight, vocab_bias, ids, scale, log_sum_exp = residuals
    dtype = scale.dtype
    work = hidden.astype(dtype)
    vocab = vocab_weight.shape[0]
    count = -(-vocab // chunk_size)
    columns = jnp.arange(chunk_size, dtype=jnp.int32)
    token_scale = scale * grad_loss.astype(dtype)  # [batch, length]

    def step(carry: Carry, index: jax.Array) -> tuple[Carry, None]:
        grad_hidden, grad_weight, grad_bias = carry
        start, wanted = _chunk_start(index, chunk_size, vocab)
        valid = start + columns >= wanted
        block = _block(work, vocab_weight, vocab_bias, start, chunk_size)
        probabilities = jnp.exp(block - log_sum_exp[..., None])
        is_target = (start + columns) == ids[..., None]
        grad_block = (probabilities - is_target.astype(dtype)) * token_scale[..., None]
        grad_block = jnp.where(valid, grad_block, 0.0)  # [batch, length, chunk]
        rows = lax.dynamic_slice_in_dim(vocab_weight, start, chunk_size).astype(dtype)
        grad_hidden = grad_hidden + jnp.einsum("blc,cd->bld", grad_block, rows)
        grad_rows = jnp.einsum("blc,bld->cd", grad_block, work)
        grad_weight = lax.dynamic_update_slice_in_dim(
            grad_weight,
            lax.dynamic_slice_in_dim(grad_weight, start, chunk_size) + grad_rows,
            start,
            axis=0,
        )
        grad_bias = lax.dynamic_update_slice_in_dim(
            grad_bias,
            lax.dynamic_slice_in_dim(grad_bias, start, chunk_size)
            + jnp.sum(grad_block, axis=(0, 1)),
            start,
            axis=0,
        )
        return (grad_hidden, grad_weight, grad_bias), None

    start_carry = (
        jnp.zeros(work.shape, dtype),
        jnp.zeros(vocab_weight.shape, dtype),
        jnp.zeros(vocab_bias.shape, dtype),
    )
    (grad_hidden, grad_weight, grad_bias), _ = lax.scan(
        step, start_carry, jnp.arange(count, dtype=jnp.int32)
    )
    return (
        grad_hidden.astype(hidden.dtype),
        grad_weight.astype(vocab_weight.dtype),
        grad_bias.astype(vocab_bias.dtype),
        None,
        None,
    )


_chunked_core.defvjp(_chunked_forward, _chunked_backward)


def chunked_token_cross_entropy(
    hidden: jax.Array,
    vocab_weight: jax.Array,
    targets: jax.Array,
    *,
    weights: jax.Array,
    vocab_bias: jax.Array | None = None,
    chunk_size: int,
) -> jax.Array:
    r""":func:`token_cross_entropy` of ``logits = hidden @ vocab_weight.T + vocab_bias`` without
    ever holding the ``[batch, length, vocab]`` logits, in forward or backward.

    A ``jax.custom_vjp`` over two ``lax.scan`` loops: forward keeps a running log-sum-exp over
    ``chunk_size`` vocabulary rows at a time; backward recomputes each chunk's logits from the
    saved ``hidden`` and the ``[batch, length]`` log-sum-exp and accumulates the gradients of
    ``hidden``, ``vocab_weight`` and ``vocab_bias``. A last chunk that would run past the vocabulary
    is shifted back and its repeated rows masked (no padded copy of the weight). Peak extra memory:
    one ``[batch, length, chunk_size]`` block in the compute dtype. Equal to the dense form (to
    float32 rounding). The scan is sequential: on an accelerator pick ``chunk_size`` large (e.g.
    16384 of Gemma's 256k; SigLIP 2, arXiv:2502.14786, section 2.2). Reverse mode only (no
    ``jax.jvp``).

    Args:
        hidden: ``[batch, length, dim]`` decoder outputs before the vocabulary projection.
        vocab_weight: ``[vocab, dim]`` projection (a Flax ``Linear`` kernel transposed).
        targets: ``[batch, length]`` integer token ids, in ``[0, vocab)`` wherever weighted (an
            id outside gives a NaN loss, as in the dense form).
        weights: ``[batch, length]`` bool or non-negative numbers (0 = ignored token; no
            gradient).
        vocab_bias: ``[vocab]`` or None.
        chunk_size: vocabulary rows per chunk (>= 1; capped at the vocabulary), static.

    Returns:
        0-d float32 array (float64 when ``hidden`` or ``vocab_weight`` is float64 under x64).

    Raises:
        TypeError: as :func:`token_cross_entropy`, and a non-int ``chunk_size``.
        ValueError: as :func:`token_cross_entropy`, ``vocab_weight``/``vocab_bias`` that do not
            match ``hidden``'s dim, or ``chunk_size < 1``.

    Examples:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> from siglip_loss.jax import chunked_token_cross_entropy, token_cross_entropy
        >>> rng = np.random.default_rng(0)
        >>> hidden = jnp.asarray(rng.normal(size=(2, 3, 4)), jnp.float32)
        >>> weight = jnp.asarray(rng.normal(size=(10, 4)), jnp.float32)
        >>> targets, weights = jnp.asarray(rng.integers(0, 10, (2, 3))), jnp.ones((2, 3))
        >>> loss = lambda h, w: chunked_token_cross_entropy(
        ...     h, w, targets, weights=weights, chunk_size=4
        ... )
        >>> value, (grad_hidden, grad_weight) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(
        ...     hidden, weight
        ... )
        >>> dense = token_cross_entropy(hidden @ weight.T, targets, weights=weights)
        >>> bool(jnp.allclose(value, dense)), grad_weight.shape
        (True, (10, 4))
    """
    check_chunked_token_cross_entropy(
        hidden, vocab_weight, targets, weights, vocab_bias, chunk_size
    )
    dtype = compute_dtype(hidden, vocab_weight)
    ids, scale = _ids_and_scale(targets, weights, dtype)
    bias = jnp.zeros(vocab_weight.shape[0], dtype) if vocab_bias is None else vocab_bias
    return _chunked_core(
        hidden, vocab_weight, bias, ids, scale, min(chunk_size, vocab_weight.shape[0])
    )


def _distillation_cross_entropy(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    center: jax.Array,
    student_temperature: float,
    teacher_temperature: float,
) -> jax.Array:
    """``-sum_k P_t log P_s`` over the last axis; the teacher side is a stop-gradient."""
    dtype = compute_dtype(student_logits, teacher_logits)
    teacher = lax.stop_gradient(
        (jnp.asarray(teacher_logits).astype(dtype) - jnp.asarray(center).astype(dtype))
        / teacher_temperature
    )
    teacher_probs = jax.nn.softmax(teacher, axis=-1)
    student_log_probs = jax.nn.log_softmax(
        jnp.asarray(student_logits).astype(dtype) / student_temperature, axis=-1
    )
    return -jnp.sum(teacher_probs * student_log_probs, axis=-1)


def self_distillation_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    *,
    center: jax.Array,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.04,
) -> jax.Array:
    r"""DINO-style self-distillation (SILC): the student's softmax against the teacher's centred,
    sharpened softmax, cross-entropy averaged over the batch.

    .. math::
        P_t(b) = \operatorname{softmax}\Big(\frac{t_b - c}{\tau_t}\Big),\quad
        P_s(b) = \operatorname{softmax}\Big(\frac{s_b}{\tau_s}\Big),\quad
        L = -\frac{1}{B}\sum_b \sum_k P_t(b)_k \log P_s(b)_k

    ``teacher_logits`` and ``center`` pass through ``lax.stop_gradient``: their gradient is 0.
    For several student views of one teacher view, repeat the teacher rows (``jnp.tile``): the
    shapes must match. SILC: arXiv:2310.13355; DINO: arXiv:2104.14294.

    Args:
        student_logits: ``[batch, classes]`` student head outputs.
        teacher_logits: ``[batch, classes]`` EMA-teacher head outputs, one row per student row.
        center: ``[classes]`` running mean of the teacher logits (:func:`update_center`).
        student_temperature: ``tau_s`` (DINO: 0.1), a Python float.
        teacher_temperature: ``tau_t`` (DINO: 0.04), a Python float.

    Returns:
        0-d float32 array (float64 for float64 logits under x64).

    Raises:
        TypeError: an argument that is not a floating array, or a temperature that is not a
            number.
        ValueError: logits not ``[batch, classes]``, a teacher of another shape than the student,
            a ``center`` that is not ``[classes]``, or a temperature that is not positive.

    Examples:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> from siglip_loss.jax import self_distillation_loss
        >>> teacher = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)), jnp.float32)
        >>> grads = jax.grad(
        ...     lambda s, t: self_distillation_loss(s, t, center=jnp.zeros(4)), argnums=(0, 1)
        ... )(jnp.zeros((3, 4)), teacher)
        >>> bool(jnp.all(grads[1] == 0))  # stop-gradient on the teacher
        True
    """
    check_distillation(
        student_logits,
        teacher_logits,
        center,
        student_temperature=student_temperature,
        teacher_temperature=teacher_temperature,
        patches=False,
    )
    return jnp.mean(
        _distillation_cross_entropy(
            student_logits, teacher_logits, center, student_temperature, teacher_temperature
        )
    )


def masked_patch_distillation_loss(
    student_patch_logits: jax.Array,
    teacher_patch_logits: jax.Array,
    mask: jax.Array,
    *,
    center: jax.Array,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.04,
) -> jax.Array:
    r"""Masked patch distillation (TIPS, iBOT-style): :func:`self_distillation_loss` per patch,
    averaged over the patches the student saw masked.

    .. math::
        L = -\frac{1}{\max(1, |M|)}\sum_{(b, j) \in M}\sum_k
        \operatorname{softmax}\Big(\frac{t_{bj} - c}{\tau_t}\Big)_k
        \log\operatorname{softmax}\Big(\frac{s_{bj}}{\tau_s}\Big)_k

    ``M``: the masked patches of the whole batch (a flat mean). No masked patch gives 0. The
    teacher side is a stop-gradient. TIPS: arXiv:2410.16512; iBOT: arXiv:2111.07832.

    Args:
        student_patch_logits: ``[batch, patches, classes]`` student patch-head outputs.
        teacher_patch_logits: ``[batch, patches, classes]`` teacher outputs on the unmasked view.
        mask: ``[batch, patches]`` bool, True where the student's patch embedding was masked.
        center: ``[classes]`` running mean of the teacher patch logits.
        student_temperature: ``tau_s`` (0.1).
        teacher_temperature: ``tau_t`` (0.04).

    Returns:
        0-d float32 array (float64 for float64 logits under x64).

    Raises:
        TypeError: logits or centre not floating arrays, a mask that is not bool, a temperature
            that is not a number.
        ValueError: logits not ``[batch, patches, classes]``, a teacher of another shape, a mask
            that is not ``[batch, patches]``, a centre that is not ``[classes]``, a temperature
            that is not positive.

    Examples:
        >>> import jax.numpy as jnp
        >>> from siglip_loss.jax import masked_patch_distillation_loss
        >>> student = jnp.zeros((1, 3, 2))
        >>> teacher = jnp.array([[[9.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
        >>> mask = jnp.array([[False, True, True]])  # the first patch is not counted
        >>> masked_patch_distillation_loss(student, teacher, mask, center=jnp.zeros(2))
        Array(0.6931472, dtype=float32)
    """
    check_distillation(
        student_patch_logits,
        teacher_patch_logits,
        center,
        student_temperature=student_temperature,
        teacher_temperature=teacher_temperature,
        patches=True,
        mask=mask,
    )
    cross_entropy = _distillation_cross_entropy(
        student_patch_logits, teacher_patch_logits, center, student_temperature, teacher_temperature
    )
    chosen = jnp.asarray(mask).astype(cross_entropy.dtype)
    return jnp.sum(cross_entropy * chosen) / jnp.maximum(jnp.sum(chosen), 1.0)


def update_center(
    center: jax.Array,
    teacher_logits: jax.Array,
    *,
    momentum: float = 0.9,
    axis_name: Any = None,
) -> jax.Array:
    r"""The teacher centre's EMA step: ``momentum * center + (1 - momentum) * batch mean``.

    .. math::
        c \leftarrow m\,c + (1 - m)\,\frac{1}{|R|}\sum_{r \in R} t_r

    ``R``: every row of ``teacher_logits`` (all axes but the last), under a stop-gradient.
    Distributed: under ``jax.jit`` on a sharded global array the mean is already global (GSPMD
    inserts the reduction); inside ``shard_map``/``pmap`` pass ``axis_name`` and the row sums and
    counts are ``lax.psum``-ed over it, so every device gets the same centre.

    Args:
        center: ``[classes]`` current centre.
        teacher_logits: ``[batch, ..., classes]`` teacher head outputs.
        momentum: ``m`` in ``[0, 1]`` (DINO: 0.9), a Python float.
        axis_name: the mesh axis (or axes) to average over inside ``shard_map``; None outside.

    Returns:
        The new ``[classes]`` centre in ``center``'s dtype.

    Raises:
        TypeError: not floating arrays, or a momentum that is not a number.
        ValueError: ``teacher_logits`` of rank < 2 or empty, a centre that is not ``[classes]``,
            or a momentum outside ``[0, 1]``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from siglip_loss.jax import update_center
        >>> update_center(jnp.zeros(2), jnp.array([[1.0, 2.0], [3.0, 4.0]]), momentum=0.5)
        Array([1. , 1.5], dtype=float32)
    """
    classes = check_update_center(center, teacher_logits, momentum)
    dtype = compute_dtype(center, teacher_logits)
    rows = lax.stop_gradient(jnp.asarray(teacher_logits).astype(dtype)).reshape(-1, classes)
    sums = jnp.sum(rows, axis=0)
    count = jnp.asarray(rows.shape[0], dtype)
    if axis_name is not None:
        sums, count = lax.psum((sums, count), axis_name)
    previous = lax.stop_gradient(jnp.asarray(center).astype(dtype))
    updated = momentum * previous + (1.0 - momentum) * (sums / count)
    return updated.astype(jnp.asarray(center).dtype)
