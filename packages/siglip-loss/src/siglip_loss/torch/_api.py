"""The public PyTorch sigmoid loss: one function, four implementations behind ``implementation=``."""

from __future__ import annotations

import torch

from siglip_loss._validation import AUTO_DENSE_MAX_BATCH
from siglip_loss._validation import Implementation
from siglip_loss._validation import PositiveWeighting
from siglip_loss._validation import check_implementation
from siglip_loss.torch._chunked import sigmoid_loss_chunked
from siglip_loss.torch._common import Scalar
from siglip_loss.torch._common import check_inputs
from siglip_loss.torch._common import compute_dtype
from siglip_loss.torch._fused import check_block_size
from siglip_loss.torch._fused import sigmoid_loss_fused
from siglip_loss.torch._positives import BlockGroups
from siglip_loss.torch._positives import as_group_ids
from siglip_loss.torch._positives import block_groups
from siglip_loss.torch._reference import sigmoid_loss_reference


def sigmoid_loss(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    *,
    scale: Scalar,
    bias: Scalar,
    image_groups: torch.Tensor | None = None,
    text_groups: torch.Tensor | None = None,
    positive_weighting: PositiveWeighting = "uniform",
    implementation: Implementation = "auto",
    block_size: int | None = None,
) -> torch.Tensor:
    r"""The SigLIP sigmoid loss, with one positive per row or several (group ids).

    .. math::
        L = \frac{1}{N} \sum_{i,j} w_{ij} \operatorname{softplus}\big(-z_{ij}
        (t \langle x_i, y_j \rangle + b)\big),
        \quad z_{ii} = 1,\ z_{ij} = -1 \ (i \ne j),\ w_{ij} = 1

    Divided by the number of images N (the number of positive pairs without groups), not N².
    With ``image_groups`` and ``text_groups``, pair ``(i, j)`` is a positive
    (:math:`z_{ij} = 1`) iff ``image_groups[i] == text_groups[j]``: several captions of one image,
    or repeated captions, are no longer pushed apart as negatives. The text batch M may then
    differ from N, and a row or column may have no positive. ``positive_weighting="inverse_count"``
    weighs a positive :math:`w_{ij} = \tfrac{1}{2}(1/k_i + 1/k'_j)` (``k_i`` positives in row
    ``i``, ``k'_j`` in column ``j``; negatives weigh 1); unique ids give the standard loss with
    either weighting. Differentiable in all four float inputs. Inputs may be
    float16/bfloat16/float32 (accumulated in float32, gradients returned in the input dtype) or
    float64 (computed in float64).

    Implementations (all give the same value and gradients up to float32 rounding):

    - ``"fused"``: tiles of ``block_size x block_size``; the loss and the gradients of the inputs
      that require them are computed in one pass (three matmuls per tile), backward only scales
      them. Memory linear in N. No double backward; one backward per forward.
    - ``"chunked"``: the same tiles with ordinary autograd; each row block is recomputed in
      backward (activation checkpointing), so memory is O(block_size x N). Supports double
      backward.
    - ``"reference"``: the dense ``[N, N]`` logits matrix and autograd (memory O(N²)).
    - ``"auto"`` (default): ``"fused"`` when autograd will need a gradient (grad mode on and an
      input requires grad) or when ``N > 4096``; ``"reference"`` otherwise.

    Args:
        image_emb: ``[batch, dim]`` image embeddings, used as given (normalise them first, e.g.
            with :func:`l2_normalize`).
        text_emb: ``[batch, dim]`` text embeddings; row ``i`` is the caption of image ``i``
            (``[text_batch, dim]`` with groups).
        scale: the positive multiplier ``t = exp(log_scale)``, not its log; Python float or 0-d tensor.
        bias: the logit bias ``b``; Python float or 0-d tensor.
        image_groups: ``[batch]`` integer tensor, the group id of each image; None (with
            ``text_groups`` None) for the diagonal positives.
        text_groups: ``[text_batch]`` integer tensor, the group id of each text.
        positive_weighting: ``"uniform"`` (every pair weighs 1) or ``"inverse_count"``.
        implementation: ``"auto"``, ``"fused"``, ``"chunked"`` or ``"reference"``.
        block_size: tile edge for ``"fused"``/``"chunked"`` (default 2048; larger tiles run the
            matmuls closer to peak, smaller ones use less memory). Any value works for any N.

    Returns:
        0-d float32 tensor (float64 for float64 inputs).

    Raises:
        ValueError: a shape is not ``[batch, dim]``, the batches differ without groups, the dims
            differ, a batch is 0, only one group tensor is given, a group tensor is not one id
            per row, ``scale`` is not finite and positive, ``block_size < 1``, or
            ``implementation`` / ``positive_weighting`` is unknown.
        TypeError: an embedding is not a floating tensor, a group tensor is not an integer
            tensor, or ``block_size`` is not an int.

    Reference: Zhai et al., arXiv:2303.15343, eq. 1.

    Examples:
        >>> import torch
        >>> from siglip_loss.torch import l2_normalize, sigmoid_loss
        >>> _ = torch.manual_seed(0)
        >>> image = l2_normalize(torch.randn(8, 16))
        >>> text = l2_normalize(torch.randn(8, 16))
        >>> loss = sigmoid_loss(image, text, scale=10.0, bias=-10.0)
        >>> loss.shape
        torch.Size([])
        >>> fused = sigmoid_loss(image, text, scale=10.0, bias=-10.0, implementation="fused")
        >>> torch.allclose(loss, fused)
        True
        >>> # Five captions per image: 8 images, 40 captions, no false negatives among them.
        >>> captions = l2_normalize(image.repeat_interleave(5, dim=0) + torch.randn(40, 16))
        >>> image_ids = torch.arange(8)
        >>> grouped = sigmoid_loss(
        ...     image,
        ...     captions,
        ...     scale=10.0,
        ...     bias=-10.0,
        ...     image_groups=image_ids,
        ...     text_groups=image_ids.repeat_interleave(5),
        ... )
        >>> grouped.shape
        torch.Size([])
    """
    check_inputs(
        image_emb,
        text_emb,
        scale=scale,
        bias=bias,
        image_groups=image_groups,
        text_groups=text_groups,
        positive_weighting=positive_weighting,
    )
    implementation = check_implementation(implementation)
    check_block_size(block_size)
    groups = None
    if image_groups is not None and text_groups is not None:
        groups = _groups(image_emb, text_emb, image_groups, text_groups, positive_weighting)
    if implementation == "auto":
        implementation = _choose(image_emb, text_emb, scale, bias)
    if implementation == "fused":
        fused: torch.Tensor = sigmoid_loss_fused(
            image_emb, text_emb, scale=scale, bias=bias, block_size=block_size, groups=groups
        )
        return fused
    if implementation == "chunked":
        return sigmoid_loss_chunked(
            image_emb, text_emb, scale=scale, bias=bias, block_size=block_size, groups=groups
        )
    return sigmoid_loss_reference(image_emb, text_emb, scale=scale, bias=bias, groups=groups)


def _groups(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    image_groups: torch.Tensor,
    text_groups: torch.Tensor,
    positive_weighting: PositiveWeighting,
) -> BlockGroups:
    device = image_emb.device
    return block_groups(
        as_group_ids(image_groups, device),
        as_group_ids(text_groups, device),
        positive_weighting=positive_weighting,
        dtype=compute_dtype(image_emb, text_emb),
    )


def _choose(
    image_emb: torch.Tensor, text_emb: torch.Tensor, scale: Scalar, bias: Scalar
) -> Implementation:
    needs_grad = torch.is_grad_enabled() and any(
        isinstance(value, torch.Tensor) and value.requires_grad
        for value in (image_emb, text_emb, scale, bias)
    )
    pairs = image_emb.shape[0] * text_emb.shape[0]
    if needs_grad or pairs > AUTO_DENSE_MAX_BATCH**2:
        return "fused"
    return "reference"
