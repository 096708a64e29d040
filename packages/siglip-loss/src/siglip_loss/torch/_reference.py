"""Dense PyTorch reference losses: one [batch, batch] logits matrix, autograd for gradients."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from siglip_loss.torch._common import Scalar
from siglip_loss.torch._common import check_inputs
from siglip_loss.torch._common import compute_dtype
from siglip_loss.torch._common import scalar_keeping_graph
from siglip_loss.torch._common import scale_and_bias_keeping_graph
from siglip_loss.torch._positives import BlockGroups


def l2_normalize(x: torch.Tensor, *, dim: int = -1, eps: float = 1e-8) -> torch.Tensor:
    """``x / max(||x||, eps)`` along ``dim``: zero vectors give zeros (and zero gradients), not NaN.

    Computed in float32 (or float64) and returned in the dtype of ``x``.

    Args:
        x: tensor of any shape, e.g. ``[batch, dim]``.
        dim: the axis to normalise over.
        eps: the smallest norm divided by.

    Examples:
        >>> import torch
        >>> from siglip_loss.torch import l2_normalize
        >>> l2_normalize(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
        tensor([[0.6000, 0.8000],
                [0.0000, 0.0000]])
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x: expected a floating dtype, got {str(x.dtype).removeprefix('torch.')}")
    work = x.to(compute_dtype(x))
    squared_norm = (work * work).sum(dim=dim, keepdim=True)
    return (work * torch.rsqrt(squared_norm.clamp_min(eps * eps))).to(x.dtype)


def sigmoid_loss_reference(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    *,
    scale: Scalar,
    bias: Scalar,
    groups: BlockGroups | None = None,
) -> torch.Tensor:
    """Dense sigmoid loss: builds the whole ``[batch, text_batch]`` logits matrix. See ``sigmoid_loss``.

    Inputs are assumed validated (``sigmoid_loss`` checks them once for every implementation).
    """
    scale_tensor, bias_tensor = scale_and_bias_keeping_graph(
        image_emb, text_emb, scale=scale, bias=bias
    )
    dtype = scale_tensor.dtype
    image, text = image_emb.to(dtype), text_emb.to(dtype)
    batch = image.shape[0]
    logits = scale_tensor * (image @ text.T) + bias_tensor  # [batch, text_batch]
    if groups is None:
        labels = 2.0 * torch.eye(batch, dtype=dtype, device=image.device) - 1.0
        return -F.logsigmoid(labels * logits).sum() / batch
    positive = groups.image_groups[:, None] == groups.text_groups[None, :]
    terms = -F.logsigmoid(torch.where(positive, logits, -logits))
    if groups.image_weights is not None and groups.text_weights is not None:
        pair_weight = groups.image_weights[:, None] + groups.text_weights[None, :]
        terms = terms * torch.where(positive, pair_weight, torch.ones_like(pair_weight))
    return terms.sum() / batch


def softmax_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, *, scale: Scalar) -> torch.Tensor:
    r"""CLIP's symmetric InfoNCE loss, the baseline.

    .. math::
        L = \tfrac{1}{2}\big(\operatorname{CE}(tXY^\top, I) + \operatorname{CE}(tYX^\top, I)\big)

    Args:
        image_emb: ``[batch, dim]`` image embeddings (float16/bfloat16/float32/float64).
        text_emb: ``[batch, dim]`` text embeddings.
        scale: positive multiplier ``t``; a Python float or a 0-d tensor (differentiable).

    Returns:
        0-d float32 (float64 for float64 inputs) tensor.

    Examples:
        >>> import torch
        >>> from siglip_loss.torch import softmax_loss
        >>> round(softmax_loss(torch.zeros(4, 3), torch.zeros(4, 3), scale=10.0).item(), 4)
        1.3863
    """
    check_inputs(image_emb, text_emb, scale=scale, bias=None)
    dtype = compute_dtype(image_emb, text_emb)
    image, text = image_emb.to(dtype), text_emb.to(dtype)
    logits = scalar_keeping_graph("scale", scale, dtype=dtype, device=image.device) * (
        image @ text.T
    )
    targets = torch.arange(image.shape[0], device=image.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))
