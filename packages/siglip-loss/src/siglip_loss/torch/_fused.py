"""Fused sigmoid loss for PyTorch: loss and all four gradients in one tiled pass.

The loss is a scalar, so its gradients do not depend on anything computed after it: the forward
pass can compute them tile by tile next to the loss, and backward only multiplies the stored
gradients by the incoming gradient. That is exactly three ``[n, m, D]`` matmuls of work and memory
linear in the batch: no ``[n, m]`` matrix is ever kept beyond one tile.
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import torch

from siglip_loss import _validation as validation
from siglip_loss.torch._common import Scalar
from siglip_loss.torch._common import detached_scale_and_bias
from siglip_loss.torch._common import scale_and_bias_keeping_graph
from siglip_loss.torch._common import softplus_threshold
from siglip_loss.torch._positives import BlockGroups
from siglip_loss.torch._positives import SortedColumns
from siglip_loss.torch._positives import positive_pairs
from siglip_loss.torch._positives import sort_columns

DEFAULT_BLOCK_SIZE = 2048
"""Tile edge: large enough that the tile matmuls run near BLAS peak on a CPU (D = 768), small
enough that one ``[block, block]`` float32 tile (16 MiB) stays cheap next to the gradients."""


class BlockSums(NamedTuple):
    """Sums over one ``[n, m]`` block of sigmoid-loss terms, and their gradients.

    float32, or float64 when an input is float64 (the backend's ``compute_dtype``).

    The gradients are those of ``loss_sum`` itself: not divided by the batch and not multiplied by
    any upstream gradient. They are ``None`` when ``compute_grads`` was False.
    """

    loss_sum: torch.Tensor  # 0-d
    grad_image: torch.Tensor | None  # [n, D]
    grad_text: torch.Tensor | None  # [m, D]
    grad_scale: torch.Tensor | None  # 0-d
    grad_bias: torch.Tensor | None  # 0-d


def check_block_size(block_size: Any) -> int:
    """Return ``block_size`` (None gives :data:`DEFAULT_BLOCK_SIZE`) once checked positive int."""
    return validation.check_block_size(block_size, default=DEFAULT_BLOCK_SIZE)


def _check_offset(positive_offset: Any) -> int | None:
    if positive_offset is None:
        return None
    if isinstance(positive_offset, bool) or not isinstance(positive_offset, int):
        raise TypeError(
            f"positive_offset: expected an int or None, got {type(positive_offset).__name__}"
        )
    return positive_offset


def sigmoid_block_sums(
    image_block: torch.Tensor,
    text_block: torch.Tensor,
    *,
    scale: Scalar,
    bias: Scalar,
    positive_offset: int | None,
    block_size: int | None,
    compute_grads: bool,
    groups: BlockGroups | None = None,
) -> BlockSums:
    r"""Sum of sigmoid-loss terms over one ``[n, m]`` block, optionally with its gradients.

    .. math::
        u_{ij} = t \langle x_i, y_j \rangle + b, \qquad
        S = \sum_{i<n,\, j<m} w_{ij} \operatorname{softplus}(-z_{ij} u_{ij}),
        \qquad z_{ij} = +1 \text{ iff } j = i + \text{positive\_offset}, \text{ else } -1

    (``w = 1``), or with ``groups``: :math:`z_{ij} = +1` iff the group ids of image ``i`` and
    text ``j`` are equal, and :math:`w_{ij}` the pair weight of a positive (1 for a negative).
    With :math:`G = w \odot (\sigma(u) - [z = 1])`: :math:`\partial S/\partial X = t\,G Y`,
    :math:`\partial S/\partial Y = t\,G^\top X`,
    :math:`\partial S/\partial t = \sum_i \langle x_i, (G Y)_i \rangle`,
    :math:`\partial S/\partial b = \sum G`.

    The block is processed in ``block_size x block_size`` tiles; each tile's logits are computed
    once, turned into loss terms and sigmoid gradients in place, and fed to the two gradient
    matmuls. Accumulation is float32 for 16- and 32-bit inputs, float64 when an input is float64.
    No autograd graph is built.

    Args:
        image_block: ``[n, dim]`` image embeddings (any float dtype).
        text_block: ``[m, dim]`` text embeddings.
        scale: the multiplier ``t`` (0-d tensor or float; used detached, in the compute dtype).
        bias: the logit bias ``b`` (0-d tensor or float; used detached, in the compute dtype).
        positive_offset: text row ``i + positive_offset`` is the positive of image row ``i``;
            ``None`` makes every pair a negative (a remote block in a ring).
        block_size: tile edge, ``None`` for :data:`DEFAULT_BLOCK_SIZE`.
        compute_grads: also compute the four gradients (about 3x the work of the loss alone).
        groups: the block's group ids and pair weights (``_positives.block_groups``); they place
            the positives instead of ``positive_offset``.

    Returns:
        :class:`BlockSums`, every field float32 (float64 if an input is float64) on the device of
        ``image_block``.

    Raises:
        TypeError: ``block_size`` or ``positive_offset`` is not an int.
        ValueError: ``block_size < 1``, the blocks are not ``[n, dim]`` and ``[m, dim]``, or
            ``scale``/``bias`` is a tensor that is not 0-d.

    Examples:
        >>> import torch
        >>> from siglip_loss.torch._fused import sigmoid_block_sums
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
    scale_tensor, bias_tensor = detached_scale_and_bias(
        image_block, text_block, scale=scale, bias=bias
    )
    with torch.no_grad():
        return block_sums(
            image_block,
            text_block,
            scale_tensor,
            bias_tensor,
            positive_offset=offset,
            tile=tile,
            need_image=compute_grads,
            need_text=compute_grads,
            need_scalars=compute_grads,
            groups=groups,
        )


def block_sums(
    image_block: torch.Tensor,
    text_block: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor,
    *,
    positive_offset: int | None,
    tile: int,
    need_image: bool,
    need_text: bool,
    need_scalars: bool,
    groups: BlockGroups | None = None,
) -> BlockSums:
    """The tile loop behind :func:`sigmoid_block_sums`, computing only the gradients asked for.

    ``scale`` and ``bias`` are 0-d tensors of the compute dtype; runs without autograd. A gradient
    not asked for is ``None`` and costs nothing: each embedding gradient is one matmul per tile, the
    scalar gradients come almost free from whichever embedding gradient is computed.

    With ``groups`` (``positive_offset`` is then ignored) the positives of each tile are listed
    from the column block's sorted ids (``_positives.positive_pairs``) and only those entries are
    touched: the extra memory is the ``O(n + m)`` ids, weights and sort orders plus the index of
    one tile's positives, never an ``[n, m]`` or ``[block, block]`` mask.
    """
    device = image_block.device
    n, dim = image_block.shape
    m = text_block.shape[0]
    dtype = scale.dtype
    text_in_dtype = text_block if text_block.dtype == dtype else None
    loss_sum = torch.zeros((), dtype=dtype, device=device)
    need_grads = need_image or need_text or need_scalars
    # -G Y (unscaled) serves grad_image and grad_scale; skip it only when G^T X gives grad_scale.
    need_image_times_g = need_image or (need_scalars and not need_text)
    # Accumulators start uninitialised: the first tile of each row (column) block writes them.
    if need_image_times_g:
        image_times_g = torch.empty((n, dim), dtype=dtype, device=device)
    if need_text:
        grad_text = torch.empty((m, dim), dtype=dtype, device=device)
    if need_grads:
        negated_sigmoid_sum = torch.zeros((), dtype=dtype, device=device)
    # One flat buffer holds every tile (a ragged one as a contiguous view of its first elements).
    tile_buffer = torch.empty(min(tile, n) * min(tile, m), dtype=dtype, device=device)
    linear_above = softplus_threshold(dtype)
    negated_bias = -bias
    sorted_columns = []
    if groups is not None:
        positive_offset = None
        # Each column block's ids sorted once, for all its tiles: O(m) memory.
        sorted_columns = [
            sort_columns(groups.text_groups, start, min(start + tile, m))
            for start in range(0, m, tile)
        ]
    for row_start in range(0, n, tile):
        row_stop = min(row_start + tile, n)
        # -t X_rows, once per row block: one addmm then gives the negated logits -u directly.
        negated_scaled_rows = image_block[row_start:row_stop].to(dtype) * -scale
        for col_start in range(0, m, tile):
            col_stop = min(col_start + tile, m)
            if text_in_dtype is not None:
                text_cols = text_in_dtype[col_start:col_stop]
            else:
                text_cols = text_block[col_start:col_stop].to(dtype)
            rows, cols = row_stop - row_start, col_stop - col_start
            values = tile_buffer[: rows * cols].view(rows, cols)
            torch.addmm(negated_bias, negated_scaled_rows, text_cols.T, out=values)  # z u
            diagonal = None
            if positive_offset is not None:
                # Positives sit where col = row + positive_offset: one diagonal of this tile.
                diagonal_offset = row_start + positive_offset - col_start
                if -rows < diagonal_offset < cols:
                    diagonal = torch.diagonal(values, offset=diagonal_offset)
                    diagonal.neg_()
            positives = None
            if groups is not None:
                positives = _tile_positives(
                    groups, sorted_columns[col_start // tile], row_start, row_stop, col_start, cols
                )
            if positives is not None:
                # Only the positives' entries are touched: negated, they become z u there too.
                flat = values.view(-1)
                negated_logits = flat.index_select(0, positives.flat_index)  # -u of each positive
                flat.index_copy_(0, positives.flat_index, -negated_logits)
                if positives.weight is not None:
                    # w softplus(-u) instead of softplus(-u): add (w - 1) softplus(-u).
                    loss_sum += torch.dot(
                        positives.weight - 1.0,
                        torch.nn.functional.softplus(negated_logits, threshold=linear_above),
                    )
            # In place, one pass: softplus with beta = -1 gives -softplus(-z u), minus each term.
            torch.ops.aten.softplus.out(values, -1.0, linear_above, out=values)
            loss_sum -= values.sum()
            if not need_grads:
                continue
            # exp(-softplus(-z u)) - 1 = sigmoid(z u) - 1 = -z sigmoid(-z u): that is -G on the
            # negatives and +G on the positives, with no cancellation anywhere.
            values.expm1_()
            if diagonal is not None:
                diagonal.neg_()
            if positives is not None:
                flat = values.view(-1)
                positive_g = flat.index_select(0, positives.flat_index)  # +G / w there
                if positives.weight is None:
                    positive_g.neg_()
                else:
                    positive_g.mul_(-positives.weight)
                flat.index_copy_(0, positives.flat_index, positive_g)
            negated_g = values  # -G everywhere now
            negated_sigmoid_sum += negated_g.sum()
            if need_image_times_g:
                rows_g = image_times_g[row_start:row_stop]  # accumulates -G Y
                if col_start == 0:
                    torch.mm(negated_g, text_cols, out=rows_g)
                else:
                    rows_g.addmm_(negated_g, text_cols)
            if need_text:
                cols_g = grad_text[col_start:col_stop]  # (-G)^T (-t X) = t G^T X
                if row_start == 0:
                    torch.mm(negated_g.T, negated_scaled_rows, out=cols_g)
                else:
                    cols_g.addmm_(negated_g.T, negated_scaled_rows)
    if not need_grads:
        return BlockSums(loss_sum, None, None, None, None)
    grad_scale = grad_bias = None
    if need_scalars:
        grad_bias = -negated_sigmoid_sum
        if need_image_times_g:
            # dS/dt = sum G * X Y^T = <X, G Y>.
            grad_scale = -_blockwise_dot(image_block, image_times_g, tile)
        else:
            # dS/dt = <Y, G^T X> = <Y, grad_text> / t.
            grad_scale = _blockwise_dot(text_block, grad_text, tile) / scale
    return BlockSums(
        loss_sum,
        image_times_g.mul_(-scale) if need_image else None,
        grad_text if need_text else None,
        grad_scale,
        grad_bias,
    )


class _TilePositives(NamedTuple):
    flat_index: torch.Tensor  # flat indices into the row-major [rows, cols] tile
    weight: torch.Tensor | None  # [positives] pair weights (inverse_count), None when uniform


def _tile_positives(
    groups: BlockGroups,
    columns: SortedColumns,
    row_start: int,
    row_stop: int,
    col_start: int,
    cols: int,
) -> _TilePositives | None:
    """The positives of one tile as flat indices, with their weights; None when it has none."""
    pairs = positive_pairs(groups.image_groups[row_start:row_stop], columns)
    if pairs is None:
        return None
    row_of, column_of = pairs
    weight = None
    if groups.image_weights is not None and groups.text_weights is not None:
        weight = (
            groups.image_weights[row_start + row_of] + groups.text_weights[col_start + column_of]
        )
    return _TilePositives(row_of * cols + column_of, weight)


def _blockwise_dot(embeddings: torch.Tensor, accumulator: torch.Tensor, tile: int) -> torch.Tensor:
    """``sum(embeddings * accumulator)``, casting ``embeddings`` one row block at a time."""
    total = torch.zeros((), dtype=accumulator.dtype, device=accumulator.device)
    for start in range(0, embeddings.shape[0], tile):
        rows = embeddings[start : start + tile].to(accumulator.dtype)
        total += torch.dot(rows.reshape(-1), accumulator[start : start + tile].reshape(-1))
    return total


class _DoubleBackwardError(torch.autograd.Function):
    """Identity on ``gradient`` whose backward raises: the fused gradients are not differentiable.

    ``anchor`` (the input the gradient belongs to) only ties the result into the graph, so that
    differentiating it reaches this backward and its message instead of a generic autograd error.
    """

    @staticmethod
    def forward(ctx: Any, gradient: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        return gradient.view_as(gradient)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise RuntimeError(
            "sigmoid_loss(implementation='fused') does not support double backward (its "
            "gradients are computed in closed form, not by autograd). Use "
            "implementation='chunked' or 'reference' for gradient penalties or create_graph=True."
        )


class _FusedSigmoidLoss(torch.autograd.Function):
    """Loss in forward, gradients computed in the same tiled pass; backward scales them."""

    @staticmethod
    def forward(
        ctx: Any,
        image_emb: torch.Tensor,
        text_emb: torch.Tensor,
        scale: torch.Tensor,
        bias: torch.Tensor,
        tile: int,
        needs: tuple[bool, bool, bool, bool],
        groups: BlockGroups | None,
    ) -> torch.Tensor:
        need_image, need_text, need_scale, need_bias = needs
        sums = block_sums(
            image_emb,
            text_emb,
            *detached_scale_and_bias(image_emb, text_emb, scale=scale, bias=bias),
            positive_offset=0,
            tile=tile,
            need_image=need_image,
            need_text=need_text,
            need_scalars=need_scale or need_bias,
            groups=groups,
        )
        batch = image_emb.shape[0]
        ctx.batch = batch
        ctx.gradients = list(sums[1:])
        ctx.input_dtypes = (image_emb.dtype, text_emb.dtype, scale.dtype, bias.dtype)
        # Saved only to anchor the double-backward error; holding them costs no memory.
        ctx.save_for_backward(image_emb, text_emb, scale, bias)
        return sums.loss_sum / batch

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        gradients = ctx.gradients
        if gradients is None:
            raise RuntimeError(
                "sigmoid_loss(implementation='fused'): backward through the same loss twice "
                "(retain_graph=True) is not supported, because the fused loss hands its stored "
                "gradients over on the first backward to save memory. Use "
                "implementation='chunked' for that."
            )
        # Drop our references so that autograd may take the tensors over without a copy.
        ctx.gradients = None
        create_graph = torch.is_grad_enabled()
        results: list[torch.Tensor | None] = []
        inputs = ctx.saved_tensors
        for gradient, dtype, anchor in zip(gradients, ctx.input_dtypes, inputs, strict=True):
            if gradient is None:
                results.append(None)
                continue
            # The stored gradients are of the sum; one in-place multiply gives d(loss)/d(input).
            factor = grad_output.detach().to(gradient.dtype) / ctx.batch
            gradient = gradient.mul_(factor).to(dtype)
            if create_graph:
                gradient = _DoubleBackwardError.apply(gradient, anchor)
            results.append(gradient)
        return (*results, None, None, None)


@torch.compiler.disable
def sigmoid_loss_fused(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    *,
    scale: Scalar,
    bias: Scalar,
    block_size: int | None = None,
    groups: BlockGroups | None = None,
) -> torch.Tensor:
    """Fused sigmoid loss: one tiled pass for the loss and, when needed, its four gradients.

    Gradients are computed only for the inputs that require them and only when autograd is
    recording (not under ``torch.no_grad()``). Inputs are assumed validated (see ``sigmoid_loss``).
    Under ``torch.compile`` this function is a graph break: it runs eagerly, the rest compiles.

    Args:
        image_emb: ``[batch, dim]`` image embeddings.
        text_emb: ``[batch, dim]`` text embeddings.
        scale: the multiplier ``t`` (float or 0-d tensor, possibly requiring grad).
        bias: the logit bias ``b`` (float or 0-d tensor, possibly requiring grad).
        block_size: tile edge, ``None`` for :data:`DEFAULT_BLOCK_SIZE`.
        groups: group ids and pair weights (``_positives.block_groups``), or None (the diagonal).

    Returns:
        0-d float32 tensor (float64 for float64 inputs).
    """
    tile = check_block_size(block_size)
    scale_tensor, bias_tensor = scale_and_bias_keeping_graph(
        image_emb, text_emb, scale=scale, bias=bias
    )
    grad_enabled = torch.is_grad_enabled()
    needs = tuple(
        grad_enabled and tensor.requires_grad
        for tensor in (image_emb, text_emb, scale_tensor, bias_tensor)
    )
    if not any(needs):
        with torch.no_grad():
            sums = block_sums(
                image_emb,
                text_emb,
                scale_tensor.detach(),
                bias_tensor.detach(),
                positive_offset=0,
                tile=tile,
                need_image=False,
                need_text=False,
                need_scalars=False,
                groups=groups,
            )
        return sums.loss_sum / image_emb.shape[0]
    loss: torch.Tensor = _FusedSigmoidLoss.apply(
        image_emb, text_emb, scale_tensor, bias_tensor, tile, needs, groups
    )
    return loss
