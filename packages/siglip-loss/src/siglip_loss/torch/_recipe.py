"""The SigLIP 2 recipe losses in PyTorch: token cross-entropy (LocCa decoder), self-distillation
(SILC), masked patch distillation (TIPS) and the teacher centre's EMA.

Dtype policy as for the sigmoid loss: 16-bit and float32 inputs are computed in float32, float64
inputs in float64; the loss is a 0-d tensor of that dtype.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from siglip_loss._recipe_validation import check_chunked_token_cross_entropy
from siglip_loss._recipe_validation import check_distillation
from siglip_loss._recipe_validation import check_token_cross_entropy
from siglip_loss._recipe_validation import check_update_center
from siglip_loss.torch._common import compute_dtype

_TENSOR: dict[str, Any] = {"array_types": (torch.Tensor,), "array_kind": "a torch.Tensor"}


def _ids_and_scale(
    targets: torch.Tensor, weights: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Target ids with ignored positions read as 0, and ``w_bl / (B * n_b)`` (no gradient)."""
    weight = weights.detach().to(dtype)
    ids = torch.where(weight != 0, targets.long(), torch.zeros_like(targets, dtype=torch.long))
    counted = weight.sum(dim=1, keepdim=True)
    # A sequence without weighted tokens adds 0 and still counts in the batch mean (no NaN).
    normaliser = torch.where(counted > 0, counted, torch.ones_like(counted))
    return ids, weight / (weight.shape[0] * normaliser)


def token_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, *, weights: torch.Tensor
) -> torch.Tensor:
    r"""Weighted next-token cross-entropy: per sequence the weighted mean, then the batch mean.

    .. math::
        L = \frac{1}{B}\sum_b \frac{1}{n_b}\sum_l w_{bl}\big(\log\textstyle\sum_v e^{z_{blv}}
        - z_{bl y_{bl}}\big), \qquad n_b = \sum_l w_{bl}\ (1 \text{ if } \sum_l w_{bl} = 0)

    The captioning loss of CapPa/LocCa: pad tokens and the task prefix get weight 0. A sequence
    whose weights are all 0 adds 0 and still counts in the batch mean (no NaN, no error, no host
    sync). Ignored positions may hold any id (e.g. -100). ``weights`` receive no gradient.

    Args:
        logits: ``[batch, length, vocab]`` decoder logits (float16/bfloat16/float32/float64).
        targets: ``[batch, length]`` integer token ids, in ``[0, vocab)`` wherever weighted (an id
            outside raises an index error on CPU).
        weights: ``[batch, length]`` bool or non-negative numbers (0 = ignored token).

    Returns:
        0-d float32 tensor (float64 for float64 logits).

    Raises:
        TypeError: an argument that is not a ``torch.Tensor``, ``logits`` not floating,
            ``targets`` not integer, ``weights`` not bool/integer/floating.
        ValueError: ``logits`` not ``[batch, length, vocab]``, or ``targets``/``weights`` of
            another shape than ``[batch, length]``.

    Examples:
        >>> import torch
        >>> from siglip_loss.torch import token_cross_entropy
        >>> logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]]))
        >>> token_cross_entropy(logits, torch.tensor([[0, 1]]), weights=torch.ones(1, 2))
        tensor(0.4581)
    """
    check_token_cross_entropy(logits, targets, weights, **_TENSOR)
    dtype = compute_dtype(logits)
    ids, scale = _ids_and_scale(targets, weights, dtype)
    work = logits.to(dtype)
    token_loss = torch.logsumexp(work, dim=-1) - work.gather(-1, ids[..., None])[..., 0]
    return (scale * token_loss).sum()


class _ChunkedTokenCrossEntropy(torch.autograd.Function):
    """Forward and backward loop over vocabulary chunks; only ``[batch, length]`` statistics
    (the log-sum-exp) are kept between them, each chunk's logits are recomputed in backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,
        vocab_weight: torch.Tensor,
        vocab_bias: torch.Tensor | None,
        ids: torch.Tensor,
        scale: torch.Tensor,
        chunk_size: int,
    ) -> torch.Tensor:
        dtype = scale.dtype
        work = hidden.detach().to(dtype)
        vocab = vocab_weight.shape[0]
        running_max = torch.full(ids.shape, -torch.inf, dtype=dtype, device=hidden.device)
        running_sum = torch.zeros(ids.shape, dtype=dtype, device=hidden.device)
        target_logit = torch.zeros(ids.shape, dtype=dtype, device=hidden.device)
        for start in range(0, vocab, chunk_size):
            block = _logits_block(work, vocab_weight, vocab_bias, start, chunk_size)
            stop = start + block.shape[-1]
            new_max = torch.maximum(running_max, block.amax(dim=-1))
            running_sum = running_sum * torch.exp(running_max - new_max) + torch.exp(
                block - new_max[..., None]
            ).sum(dim=-1)
            running_max = new_max
            inside = (ids >= start) & (ids < stop)
            local = (ids - start).clamp(0, stop - start - 1)
            picked = block.gather(-1, local[..., None])[..., 0]
            target_logit = torch.where(inside, picked, target_logit)
        log_sum_exp = running_max + torch.log(running_sum)
        # A weighted id outside the vocabulary matched no chunk: NaN, as a dense gather would
        # fail, instead of a silently wrong loss (on CPU the public function raises first).
        target_logit = torch.where((ids >= 0) & (ids < vocab), target_logit, torch.nan)
        ctx.save_for_backward(hidden, vocab_weight, vocab_bias, ids, scale, log_sum_exp)
        ctx.chunk_size = chunk_size
        return (scale * (log_sum_exp - target_logit)).sum()

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_loss: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        hidden, vocab_weight, vocab_bias, ids, scale, log_sum_exp = ctx.saved_tensors
        chunk_size: int = ctx.chunk_size
        dtype = scale.dtype
        work = hidden.detach().to(dtype)
        flat_hidden = work.reshape(-1, work.shape[-1])  # [batch * length, dim]
        token_scale = scale * grad_loss.to(dtype)  # [batch, length]
        want_hidden, want_weight, want_bias = ctx.needs_input_grad[:3]
        grad_hidden = torch.zeros_like(work) if want_hidden else None
        grad_weight = (
            torch.empty(vocab_weight.shape, dtype=dtype, device=hidden.device)
            if want_weight
            else None
        )
        grad_bias = (
            torch.empty(vocab_weight.shape[0], dtype=dtype, device=hidden.device)
            if want_bias
            else None
        )
        for start in range(0, vocab_weight.shape[0], chunk_size):
            block = _logits_block(work, vocab_weight, vocab_bias, start, chunk_size)
            stop = start + block.shape[-1]
            grad_block = torch.exp(block - log_sum_exp[..., None])  # softmax over the vocab
            inside = (ids >= start) & (ids < stop)
            local = (ids - start).clamp(0, stop - start - 1)
            grad_block.scatter_add_(-1, local[..., None], -inside.to(dtype)[..., None])
            grad_block *= token_scale[..., None]  # [batch, length, chunk]
            if grad_hidden is not None:
                grad_hidden += grad_block @ vocab_weight[start:stop].to(dtype)
            if grad_weight is not None:
                grad_weight[start:stop] = grad_block.reshape(-1, stop - start).T @ flat_hidden
            if grad_bias is not None:
                grad_bias[start:stop] = grad_block.sum(dim=(0, 1))
        return (
            None if grad_hidden is None else grad_hidden.to(hidden.dtype),
            None if grad_weight is None else grad_weight.to(vocab_weight.dtype),
            None if grad_bias is None else grad_bias.to(vocab_bias.dtype),
            None,
            None,
            None,
        )


def _logits_block(
    work: torch.Tensor,
    vocab_weight: torch.Tensor,
    vocab_bias: torch.Tensor | None,
    start: int,
    chunk_size: int,
) -> torch.Tensor:
    """``[batch, length, chunk]`` logits of vocabulary rows ``start : start + chunk_size``."""
    block = work @ vocab_weight[start : start + chunk_size].to(work.dtype).T
    if vocab_bias is not None:
        block = block + vocab_bias[start : start + chunk_size].to(work.dtype)
    return block


def chunked_token_cross_entropy(
    hidden: torch.Tensor,
    vocab_weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    weights: torch.Tensor,
    vocab_bias: torch.Tensor | None = None,
    chunk_size: int,
) -> torch.Tensor:
    r""":func:`token_cross_entropy` of ``logits = hidden @ vocab_weight.T + vocab_bias`` without
    ever holding the ``[batch, length, vocab]`` logits, in forward or backward.

    Forward keeps a running log-sum-exp over ``chunk_size`` vocabulary rows at a time; backward
    recomputes each chunk's logits from the saved ``hidden`` and the ``[batch, length]``
    log-sum-exp, and writes that chunk's rows of the weight gradient. Peak extra memory: one
    ``[batch, length, chunk_size]`` block in the compute dtype, plus the float32 copy of
    ``hidden`` for 16-bit inputs. Equal to the dense form (to float32 rounding). Double
    backward is not supported. The paper chunks its 256k-token vocabulary this way (SigLIP 2,
    arXiv:2502.14786, section 2.2).

    Args:
        hidden: ``[batch, length, dim]`` decoder outputs before the vocabulary projection.
        vocab_weight: ``[vocab, dim]`` projection (``nn.Linear(dim, vocab).weight``).
        targets: ``[batch, length]`` integer token ids, in ``[0, vocab)`` wherever weighted
            (outside: ``ValueError`` on CPU, a NaN loss on other devices).
        weights: ``[batch, length]`` bool or non-negative numbers (0 = ignored token; no
            gradient).
        vocab_bias: ``[vocab]`` or None.
        chunk_size: vocabulary rows per chunk (>= 1; the last chunk may be shorter), e.g. 16384.

    Returns:
        0-d float32 tensor (float64 when ``hidden`` or ``vocab_weight`` is float64).

    Raises:
        TypeError: as :func:`token_cross_entropy`, and a non-int ``chunk_size``.
        ValueError: as :func:`token_cross_entropy`, ``vocab_weight``/``vocab_bias`` that do not
            match ``hidden``'s dim, ``chunk_size < 1``, or (CPU) a weighted id outside the
            vocabulary.

    Examples:
        >>> import torch
        >>> from siglip_loss.torch import chunked_token_cross_entropy, token_cross_entropy
        >>> generator = torch.Generator().manual_seed(0)
        >>> hidden = torch.randn(2, 3, 4, generator=generator, requires_grad=True)
        >>> head = torch.nn.Linear(4, 10)
        >>> targets, weights = torch.randint(0, 10, (2, 3), generator=generator), torch.ones(2, 3)
        >>> chunked = chunked_token_cross_entropy(
        ...     hidden, head.weight, targets, weights=weights, vocab_bias=head.bias, chunk_size=3
        ... )
        >>> dense = token_cross_entropy(head(hidden), targets, weights=weights)
        >>> torch.allclose(chunked, dense)
        True
        >>> chunked.backward()  # gradients for hidden, head.weight and head.bias, chunk by chunk
    """
    check_chunked_token_cross_entropy(
        hidden, vocab_weight, targets, weights, vocab_bias, chunk_size, **_TENSOR
    )
    dtype = compute_dtype(hidden, vocab_weight)
    ids, scale = _ids_and_scale(targets, weights, dtype)
    vocab = vocab_weight.shape[0]
    # Checked where it costs no device synchronisation, as the dense gather does on CPU.
    if ids.device.type == "cpu" and ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
        raise ValueError(f"targets: expected ids in [0, {vocab}) wherever weights != 0")
    loss: torch.Tensor = _ChunkedTokenCrossEntropy.apply(
        hidden, vocab_weight, vocab_bias, ids, scale, chunk_size
    )
    return loss


def _distillation_cross_entropy(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    center: torch.Tensor,
    student_temperature: float,
    teacher_temperature: float,
) -> torch.Tensor:
    """``-sum_k P_t log P_s`` over the last axis; the teacher side is detached."""
    dtype = compute_dtype(student_logits, teacher_logits)
    teacher = (teacher_logits.detach().to(dtype) - center.detach().to(dtype)) / teacher_temperature
    teacher_probs = torch.softmax(teacher, dim=-1)
    student_log_probs = torch.log_softmax(student_logits.to(dtype) / student_temperature, dim=-1)
    return -(teacher_probs * student_log_probs).sum(dim=-1)


def self_distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    center: torch.Tensor,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.04,
) -> torch.Tensor:
    r"""DINO-style self-distillation (SILC): the student's softmax against the teacher's centred,
    sharpened softmax, cross-entropy averaged over the batch.

    .. math::
        P_t(b) = \operatorname{softmax}\Big(\frac{t_b - c}{\tau_t}\Big),\quad
        P_s(b) = \operatorname{softmax}\Big(\frac{s_b}{\tau_s}\Big),\quad
        L = -\frac{1}{B}\sum_b \sum_k P_t(b)_k \log P_s(b)_k

    ``teacher_logits`` and ``center`` are detached (stop-gradient): only the student is trained.
    For several student views of one teacher view (SILC's local crops), repeat the teacher rows
    (``teacher.repeat(views, 1)``): the shapes must match. SILC: arXiv:2310.13355; DINO:
    arXiv:2104.14294.

    Args:
        student_logits: ``[batch, classes]`` student head outputs.
        teacher_logits: ``[batch, classes]`` EMA-teacher head outputs, one row per student row.
        center: ``[classes]`` running mean of the teacher logits (:func:`update_center`).
        student_temperature: ``tau_s`` (DINO: 0.1).
        teacher_temperature: ``tau_t`` (DINO: 0.04; lower sharpens the targets).

    Returns:
        0-d float32 tensor (float64 when a logits tensor is float64).

    Raises:
        TypeError: an argument that is not a floating ``torch.Tensor``, or a temperature that is
            not a number.
        ValueError: logits not ``[batch, classes]``, a teacher of another shape than the student,
            a ``center`` that is not ``[classes]``, or a temperature that is not positive.

    Examples:
        >>> import torch
        >>> from siglip_loss.torch import self_distillation_loss
        >>> student = torch.zeros(3, 4, requires_grad=True)
        >>> teacher = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
        >>> loss = self_distillation_loss(student, teacher, center=torch.zeros(4))
        >>> loss.backward()
        >>> student.grad.shape, teacher.grad is None
        (torch.Size([3, 4]), True)
    """
    check_distillation(
        student_logits,
        teacher_logits,
        center,
        student_temperature=student_temperature,
        teacher_temperature=teacher_temperature,
        patches=False,
        **_TENSOR,
    )
    return _distillation_cross_entropy(
        student_logits, teacher_logits, center, student_temperature, teacher_temperature
    ).mean()


def masked_patch_distillation_loss(
    student_patch_logits: torch.Tensor,
    teacher_patch_logits: torch.Tensor,
    mask: torch.Tensor,
    *,
    center: torch.Tensor,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.04,
) -> torch.Tensor:
    r"""Masked patch distillation (TIPS, iBOT-style): :func:`self_distillation_loss` per patch,
    averaged over the patches the student saw masked.

    .. math::
        L = -\frac{1}{\max(1, |M|)}\sum_{(b, j) \in M}\sum_k
        \operatorname{softmax}\Big(\frac{t_{bj} - c}{\tau_t}\Big)_k
        \log\operatorname{softmax}\Big(\frac{s_{bj}}{\tau_s}\Big)_k

    ``M``: the masked patches of the whole batch (a flat mean). No masked patch gives 0. The
    teacher side is detached. TIPS: arXiv:2410.16512; iBOT: arXiv:2111.07832.

    Args:
        student_patch_logits: ``[batch, patches, classes]`` student patch-head outputs.
        teacher_patch_logits: ``[batch, patches, classes]`` teacher outputs on the unmasked view.
        mask: ``[batch, patches]`` bool, True where the student's patch embedding was masked.
        center: ``[classes]`` running mean of the teacher patch logits.
        student_temperature: ``tau_s`` (0.1).
        teacher_temperature: ``tau_t`` (0.04).

    Returns:
        0-d float32 tensor (float64 when a logits tensor is float64).

    Raises:
        TypeError: logits or centre not floating tensors, a mask that is not bool, a temperature
            that is not a number.
        ValueError: logits not ``[batch, patches, classes]``, a teacher of another shape, a mask
            that is not ``[batch, patches]``, a centre that is not ``[classes]``, a temperature
            that is not positive.

    Examples:
        >>> import torch
        >>> from siglip_loss.torch import masked_patch_distillation_loss
        >>> student = torch.zeros(1, 3, 2)
        >>> teacher = torch.tensor([[[9.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
        >>> mask = torch.tensor([[False, True, True]])  # the first patch is not counted
        >>> masked_patch_distillation_loss(student, teacher, mask, center=torch.zeros(2))
        tensor(0.6931)
    """
    check_distillation(
        student_patch_logits,
        teacher_patch_logits,
        center,
        student_temperature=student_temperature,
        teacher_temperature=teacher_temperature,
        patches=True,
        mask=mask,
        **_TENSOR,
    )
    cross_entropy = _distillation_cross_entropy(
        student_patch_logits, teacher_patch_logits, center, student_temperature, teacher_temperature
    )
    chosen = mask.to(cross_entropy.dtype)
    return (cross_entropy * chosen).sum() / chosen.sum().clamp_min(1.0)


@torch.no_grad()
def update_center(
    center: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    momentum: float = 0.9,
    group: dist.ProcessGroup | None = None,
) -> torch.Tensor:
    r"""The teacher centre's EMA step: ``momentum * center + (1 - momentum) * batch mean``.

    .. math::
        c \leftarrow m\,c + (1 - m)\,\frac{1}{|R|}\sum_{r \in R} t_r

    ``R``: every row of ``teacher_logits`` (all axes but the last). Distributed: when
    ``torch.distributed`` is initialised, the row sums and row counts are all-reduced (SUM) over
    ``group`` (None: the default group), so ``R`` is the global batch (ranks may hold different
    batch sizes) and every rank gets the same centre, as in DINO. Returns a new tensor (no
    gradient); assign it back (``center = update_center(center, ...)`` or ``buffer.copy_(...)``).

    Args:
        center: ``[classes]`` current centre.
        teacher_logits: ``[batch, ..., classes]`` teacher head outputs.
        momentum: ``m`` in ``[0, 1]`` (DINO: 0.9).
        group: the process group to average over when distributed (None: the default group).

    Returns:
        The new ``[classes]`` centre in ``center``'s dtype (computed in float32, float64 for
        float64).

    Raises:
        TypeError: not floating tensors, or a momentum that is not a number.
        ValueError: ``teacher_logits`` of rank < 2 or empty, a centre that is not ``[classes]``,
            or a momentum outside ``[0, 1]``.

    Examples:
        >>> import torch
        >>> from siglip_loss.torch import update_center
        >>> update_center(torch.zeros(2), torch.tensor([[1.0, 2.0], [3.0, 4.0]]), momentum=0.5)
        tensor([1.0000, 1.5000])
    """
    classes = check_update_center(center, teacher_logits, momentum, **_TENSOR)
    dtype = compute_dtype(center, teacher_logits)
    rows = teacher_logits.detach().to(dtype).reshape(-1, classes)
    sums = rows.sum(dim=0)
    count = torch.tensor(float(rows.shape[0]), dtype=dtype, device=rows.device)
    if dist.is_available() and dist.is_initialized():
        totals = torch.cat([sums, count[None]])
        dist.all_reduce(totals, op=dist.ReduceOp.SUM, group=group)
        sums, count = totals[:-1], totals[-1]
    updated = momentum * center.detach().to(dtype) + (1.0 - momentum) * (sums / count)
    return updated.to(center.dtype)
