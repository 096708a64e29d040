"""Chunked sigmoid loss for PyTorch: tiles of logits, gradients by ordinary autograd.

Each row block of the loss is an activation-checkpointed function: its tiles are computed and
reduced in forward, and recomputed in backward, so autograd never holds more than one row block of
logits. It costs one extra matmul per tile over the fused loss, but it is plain autograd, so it
supports what the fused loss does not: double backward and ``retain_graph=True``.

It keeps its own tile loop rather than reusing the fused block primitive (``_fused.block_sums``)
because that primitive writes every tile in place into one reused buffer under ``torch.no_grad``:
autograd cannot pass through it. (JAX's primitive is pure, and JAX's chunked loss is built on it.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from siglip_loss.torch._common import Scalar
from siglip_loss.torch._common import scale_and_bias_keeping_graph
from siglip_loss.torch._common import softplus_threshold
from siglip_loss.torch._fused import check_block_size
from siglip_loss.torch._positives import BlockGroups


def _row_block_loss_sum(
    image_rows: torch.Tensor,
    text_emb: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor,
    row_start: int,
    tile: int,
    groups: BlockGroups | None,
) -> torch.Tensor:
    """Sum of ``w softplus(-z u)`` over rows ``[row_start, row_start + rows)`` and all columns."""
    dtype = scale.dtype
    rows = image_rows.to(dtype)
    total = torch.zeros((), dtype=dtype, device=rows.device)
    row_stop = row_start + rows.shape[0]
    for col_start in range(0, text_emb.shape[0], tile):
        text_cols = text_emb[col_start : col_start + tile].to(dtype)
        logits = scale * (rows @ text_cols.T) + bias  # [rows, cols]
        if groups is None:
            # The positive of row i is column i, a diagonal of this tile: negated there, the one
            # softplus gives softplus(-z u) for every pair without a softplus(u) - u cancellation.
            diagonal_offset = row_start - col_start
            if -logits.shape[0] < diagonal_offset < logits.shape[1]:
                torch.diagonal(logits, offset=diagonal_offset).neg_()
            total = total + F.softplus(logits, threshold=softplus_threshold(dtype)).sum()
            continue
        col_stop = col_start + logits.shape[1]
        positive = (
            groups.image_groups[row_start:row_stop, None]
            == groups.text_groups[None, col_start:col_stop]
        )
        terms = F.softplus(
            torch.where(positive, -logits, logits), threshold=softplus_threshold(dtype)
        )
        if groups.image_weights is not None and groups.text_weights is not None:
            pair_weight = (
                groups.image_weights[row_start:row_stop, None]
                + groups.text_weights[None, col_start:col_stop]
            )
            terms = terms * torch.where(positive, pair_weight, torch.ones_like(pair_weight))
        total = total + terms.sum()
    return total


def sigmoid_loss_chunked(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    *,
    scale: Scalar,
    bias: Scalar,
    block_size: int | None = None,
    groups: BlockGroups | None = None,
) -> torch.Tensor:
    """Chunked sigmoid loss: ``block_size`` tiles, autograd through them, row blocks recomputed.

    Memory: one ``[block_size, block_size]`` tile in forward; one ``[block_size, batch]`` row block
    of logits and its autograd intermediates in backward. Inputs are assumed validated (see
    ``sigmoid_loss``).

    Args:
        image_emb: ``[batch, dim]`` image embeddings.
        text_emb: ``[batch, dim]`` text embeddings.
        scale: the multiplier ``t`` (float or 0-d tensor).
        bias: the logit bias ``b`` (float or 0-d tensor).
        block_size: tile edge, ``None`` for the fused loss's default.
        groups: group ids and pair weights (``_positives.block_groups``), or None (the diagonal).

    Returns:
        0-d float32 tensor (float64 for float64 inputs).
    """
    tile = check_block_size(block_size)
    scale_tensor, bias_tensor = scale_and_bias_keeping_graph(
        image_emb, text_emb, scale=scale, bias=bias
    )
    dtype, device = scale_tensor.dtype, image_emb.device
    batch = image_emb.shape[0]
    recompute = torch.is_grad_enabled() and any(
        tensor.requires_grad for tensor in (image_emb, text_emb, scale_tensor, bias_tensor)
    )
    total = torch.zeros((), dtype=dtype, device=device)
    for row_start in range(0, batch, tile):
        image_rows = image_emb[row_start : row_start + tile]
        if recompute:
            block_sum = checkpoint(
                _row_block_loss_sum,
                image_rows,
                text_emb,
                scale_tensor,
                bias_tensor,
                row_start,
                tile,
                groups,
                use_reentrant=False,
            )
        else:
            block_sum = _row_block_loss_sum(
                image_rows, text_emb, scale_tensor, bias_tensor, row_start, tile, groups
            )
        total = total + block_sum
    return total / batch
