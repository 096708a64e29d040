"""Chunked sigmoid loss for JAX: the fused block primitive's loss, differentiated by autodiff.

Row blocks are visited by ``lax.scan``. Each row block's loss is the loss-only path of the fused
block primitive (``_fused.block_sums`` with no gradient asked for: a ``fori_loop`` over column
tiles), wrapped in ``jax.checkpoint``; so reverse mode keeps one row block of logits at a time and
recomputes it in the backward pass. ``block_sums`` is a pure JAX function, so ordinary autodiff
goes through it and higher-order derivatives work; the tile loop and the placement of the
positives exist once, in ``_fused.py``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from siglip_loss.jax._common import Scalar
from siglip_loss.jax._common import scale_and_bias_in_compute_dtype
from siglip_loss.jax._fused import block_sums
from siglip_loss.jax._fused import check_block_size
from siglip_loss.jax._positives import BlockGroups


def _row_block_loss_sum(
    image_rows: jax.Array,
    row_start: Any,
    text_emb: jax.Array,
    scale: jax.Array,
    bias: jax.Array,
    row_groups: BlockGroups | None,
    tile: int,
) -> jax.Array:
    """Sum of ``w softplus(-z u)`` over rows ``[row_start, row_start + rows)`` and all columns."""
    # Local row i is global row row_start + i, whose positive is text column row_start + i
    # (without groups; with groups, row_groups holds these rows' ids and weights).
    return block_sums(
        image_rows,
        text_emb,
        scale,
        bias,
        positive_offset=row_start,
        tile=tile,
        need_image=False,
        need_text=False,
        need_scalars=False,
        groups=row_groups,
    ).loss_sum


def sigmoid_loss_chunked(
    image_emb: jax.Array,
    text_emb: jax.Array,
    *,
    scale: Scalar,
    bias: Scalar,
    block_size: int | None = None,
    groups: BlockGroups | None = None,
) -> jax.Array:
    """Chunked sigmoid loss: ``block_size`` tiles, autodiff through them, row blocks rematerialised.

    Memory: one ``[block_size, block_size]`` tile without differentiation; one
    ``[block_size, batch]`` row block of logits and its residuals in the backward pass. Inputs are
    assumed validated (see ``sigmoid_loss``).

    Args:
        image_emb: ``[batch, dim]`` image embeddings.
        text_emb: ``[batch, dim]`` text embeddings.
        scale: the multiplier ``t`` (float or 0-d array).
        bias: the logit bias ``b`` (float or 0-d array).
        block_size: tile edge (static), ``None`` for the fused loss's default.
        groups: group ids and pair weights (``_positives.block_groups``), or None (the diagonal).

    Returns:
        0-d float32 array (float64 for float64 inputs).
    """
    tile = check_block_size(block_size)
    scale_array, bias_array = scale_and_bias_in_compute_dtype(
        image_emb, text_emb, scale=scale, bias=bias
    )
    dtype = scale_array.dtype
    batch = image_emb.shape[0]
    row_tile = min(tile, batch)
    full_row_blocks, last_rows = divmod(batch, row_tile)
    row_block = jax.checkpoint(_row_block_loss_sum, static_argnums=(6,))

    def rows_of(values: jax.Array | None, start: int, stop: int, blocks: int) -> Any:
        # A row-indexed array (ids, weights) cut like the image rows; None stays None.
        if values is None:
            return None
        part = values[start:stop]
        return part if blocks == 0 else part.reshape(blocks, -1)

    def row_groups_of(start: int, stop: int, blocks: int = 0) -> BlockGroups | None:
        if groups is None:
            return None
        return BlockGroups(
            rows_of(groups.image_groups, start, stop, blocks),
            groups.text_groups,
            rows_of(groups.image_weights, start, stop, blocks),
            groups.text_weights,
        )

    def row_step(total: jax.Array, block: tuple[Any, ...]) -> tuple[jax.Array, None]:
        image_rows, row_start, row_groups = block
        return total + row_block(
            image_rows, row_start, text_emb, scale_array, bias_array, row_groups, tile
        ), None

    full = full_row_blocks * row_tile
    full_rows = image_emb[:full].reshape(full_row_blocks, row_tile, -1)
    row_starts = jnp.arange(full_row_blocks, dtype=jnp.int32) * row_tile
    scanned_groups = row_groups_of(0, full, full_row_blocks)
    if scanned_groups is not None:
        # The text side is the same for every row block: close over it instead of scanning it.
        text_side = (scanned_groups.text_groups, scanned_groups.text_weights)

        def row_step_grouped(total: jax.Array, block: tuple[Any, ...]) -> tuple[jax.Array, None]:
            image_rows, row_start, row_ids, row_weights = block
            row_groups = BlockGroups(row_ids, text_side[0], row_weights, text_side[1])
            return row_step(total, (image_rows, row_start, row_groups))

        total, _ = lax.scan(
            row_step_grouped,
            jnp.zeros((), dtype),
            (full_rows, row_starts, scanned_groups.image_groups, scanned_groups.image_weights),
        )
    else:
        total, _ = lax.scan(
            lambda t, b: row_step(t, (*b, None)), jnp.zeros((), dtype), (full_rows, row_starts)
        )
    if last_rows:
        total = total + row_block(
            image_emb[full:],
            jnp.int32(full),
            text_emb,
            scale_array,
            bias_array,
            row_groups_of(full, batch),
            tile,
        )
    return total / batch
