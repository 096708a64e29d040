"""Fused sigmoid loss for PyTorch: loss and all four gradients in one tiled float32 pass.

The loss is a scalar, so its gradients do not depend on anything computed after it: the forward
pass can compute them tile by tile next to the loss, and backward only multiplies the stored
gradients by the incoming gradient. That is exactly three ``[n, m, D]`` matmuls of work and memory
linear in the batch: no ``[n, m]`` matrix is ever kept beyond one tile.
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import torch
import torch.nn.functional as F

DEFAULT_BLOCK_SIZE = 1024
"""Tile edge: large enough that the tile matmuls run at BLAS speed, small enough that one
``[block, block]`` float32 tile (4 MiB) stays cheap."""


class BlockSums(NamedTuple):
    """Sums over one ``[n, m]`` block of sigmoid-loss terms, and their gradients (float32).

    The gradients are those of ``loss_sum`` itself: not divided by the batch and not multiplied by
    any upstream gradient. They are ``None`` when ``compute_grads`` was False.
    """

    loss_sum: torch.Tensor  # 0-d
    grad_image: torch.Tensor | None  # [n, D]
    grad_text: torch.Tensor | None  # [m, D]
    grad_scale: torch.Tensor | None  # 0-d
    grad_bias: torch.Tensor | None  # 0-d


def check_block_size(block_size: Any) -> int:
    """Return ``block_size`` (None gives the default) after checking it is a positive int."""
    if block_size is None:
        return DEFAULT_BLOCK_SIZE
    if isinstance(block_size, bool) or not isinstance(block_size, int):
        raise TypeError(
            f"block_size: expected a positive int or None, got {type(block_size).__name__}"
        )
    if block_size < 1:
        raise ValueError(f"block_size: expected a positive int or None, got {block_size}")
    return block_size


def _check_offset(positive_offset: Any) -> int | None:
    if positive_offset is None:
        return None
    if isinstance(positive_offset, bool) or not isinstance(positive_offset, int):
        raise TypeError(
            f"positive_offset: expected an int or None, got {type(positive_offset).__name__}"
        )
    return positive_offset


def _as_float32_scalar(name: str, value: Any, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if value.dim() != 0:
            raise ValueError(f"{name}: expected a 0-d tensor, got shape {tuple(value.shape)}")
        return value.detach().to(dtype=torch.float32, device=device)
    return torch.tensor(float(value), dtype=torch.float32, device=device)


def sigmoid_block_sums(
    image_block: torch.Tensor,
    text_block: torch.Tensor,
    *,
    scale: torch.Tensor | float,
    bias: torch.Tensor | float,
    positive_offset: int | None,
    block_size: int | None,
    compute_grads: bool,
) -> BlockSums:
    r"""Sum of sigmoid-loss terms over one ``[n, m]`` block, optionally with its gradients.

    .. math::
        u_{ij} = t \langle x_i, y_j \rangle + b, \qquad
        S = \sum_{i<n,\, j<m} \operatorname{softplus}(-z_{ij} u_{ij}),
        \qquad z_{ij} = +1 \text{ iff } j = i + \text{positive\_offset}, \text{ else } -1

    With :math:`G = \sigma(u) - [z = 1]`: :math:`\partial S/\partial X = t\,G Y`,
    :math:`\partial S/\partial Y = t\,G^\top X`,
    :math:`\partial S/\partial t = \sum_i \langle x_i, (G Y)_i \rangle`,
    :math:`\partial S/\partial b = \sum G`.

    The block is processed in ``block_size x block_size`` tiles; each tile's logits are computed
    once, turned into loss terms and sigmoid gradients in place, and fed to the two gradient
    matmuls. Accumulation is float32 whatever the input dtype. No autograd graph is built.

    Args:
        image_block: ``[n, dim]`` image embeddings (any float dtype).
        text_block: ``[m, dim]`` text embeddings.
        scale: the multiplier ``t`` (0-d tensor or float; used as float32, detached).
        bias: the logit bias ``b`` (0-d tensor or float; used as float32, detached).
        positive_offset: text row ``i + positive_offset`` is the positive of image row ``i``;
            ``None`` makes every pair a negative (a remote block in a ring).
        block_size: tile edge, ``None`` for :data:`DEFAULT_BLOCK_SIZE`.
        compute_grads: also compute the four gradients (about 3x the work of the loss alone).

    Returns:
        :class:`BlockSums`, every field float32 on the device of ``image_block``.

    Raises:
        TypeError, ValueError: a bad ``block_size`` / ``positive_offset`` or mismatched shapes.

    Example:
        >>> image = torch.eye(2)
        >>> sums = sigmoid_block_sums(
        ...     image,
        ...     image,
        ...     scale=10.0,
        ...     bias=-10.0,
        ...     positive_offset=0,
        ...     block_size=1,
        ...     compute_grads=False,
        ... )
        >>> round(sums.loss_sum.item(), 4)  # 2 * (softplus(0) + softplus(-10))
        1.3864
    """
    tile = check_block_size(block_size)
    offset = _check_offset(positive_offset)
    if (
        image_block.dim() != 2
        or text_block.dim() != 2
        or image_block.shape[1] != text_block.shape[1]
    ):
        raise ValueError(
            "image_block, text_block: expected [n, dim] and [m, dim] with the same dim, got "
            f"{tuple(image_block.shape)} and {tuple(text_block.shape)}"
        )
    with torch.no_grad():
        return _block_sums(
            image_block,
            text_block,
            _as_float32_scalar("scale", scale, image_block.device),
            _as_float32_scalar("bias", bias, image_block.device),
            offset,
            tile,
            compute_grads,
        )


def _block_sums(
    image_block: torch.Tensor,
    text_block: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor,
    positive_offset: int | None,
    tile: int,
    compute_grads: bool,
) -> BlockSums:
    device = image_block.device
    n, dim = image_block.shape
    m = text_block.shape[0]
    float32 = torch.float32
    text32 = text_block if text_block.dtype == float32 else None
    loss_sum = torch.zeros((), dtype=float32, device=device)
    positive_logit_sum = torch.zeros((), dtype=float32, device=device)
    if compute_grads:
        # grad_image holds G Y (unscaled) until the end: grad_scale needs <X, G Y>.
        image_times_g = torch.zeros((n, dim), dtype=float32, device=device)
        grad_text = torch.zeros((m, dim), dtype=float32, device=device)
        sigmoid_sum = torch.zeros((), dtype=float32, device=device)
    logits_buffer = torch.empty((min(tile, n), min(tile, m)), dtype=float32, device=device)
    for row_start in range(0, n, tile):
        row_stop = min(row_start + tile, n)
        image_rows = image_block[row_start:row_stop].to(float32)
        # Scaling the rows once (O(tile * dim)) lets one addmm give the logits directly.
        scaled_rows = image_rows * scale
        for col_start in range(0, m, tile):
            col_stop = min(col_start + tile, m)
            text_cols = (
                text32[col_start:col_stop]
                if text32 is not None
                else text_block[col_start:col_stop].to(float32)
            )
            logits = logits_buffer[: row_stop - row_start, : col_stop - col_start]
            torch.addmm(bias, scaled_rows, text_cols.T, out=logits)
            loss_sum += F.softplus(logits).sum()
            diagonal = None
            if positive_offset is not None:
                # Positives sit where col = row + positive_offset, a diagonal of this tile.
                diagonal_offset = row_start + positive_offset - col_start
                if -logits.shape[0] < diagonal_offset < logits.shape[1]:
                    diagonal = torch.diagonal(logits, offset=diagonal_offset)
                    # softplus(-u) = softplus(u) - u for the positive pairs.
                    positive_logit_sum += diagonal.sum()
            if not compute_grads:
                continue
            logits.sigmoid_()
            if diagonal is not None:
                diagonal -= 1.0
            sigmoid_sum += logits.sum()
            image_times_g[row_start:row_stop].addmm_(logits, text_cols)
            grad_text[col_start:col_stop].addmm_(logits.T, scaled_rows)
    loss_sum -= positive_logit_sum
    if not compute_grads:
        return BlockSums(loss_sum, None, None, None, None)
    grad_scale = _rowwise_dot_sum(image_block, image_times_g, tile)
    grad_image = image_times_g.mul_(scale)
    return BlockSums(loss_sum, grad_image, grad_text, grad_scale, sigmoid_sum)


def _rowwise_dot_sum(
    image_block: torch.Tensor, image_times_g: torch.Tensor, tile: int
) -> torch.Tensor:
    """``sum(X * (G Y))`` = ``sum(G * X Y^T)``, in row blocks so low-precision X is cast piecewise."""
    total = torch.zeros((), dtype=torch.float32, device=image_block.device)
    for start in range(0, image_block.shape[0], tile):
        rows = image_block[start : start + tile].to(torch.float32)
        total += torch.dot(rows.reshape(-1), image_times_g[start : start + tile].reshape(-1))
    return total
