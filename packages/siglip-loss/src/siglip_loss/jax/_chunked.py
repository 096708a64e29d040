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


def _row_block_loss_sum(
    image_rows: jax.Array,
    row_start: Any,
    text_emb: jax.Array,
    scale: jax.Array,
    bias: jax.Array,
    tile: int,
) -> jax.Array:
    """Sum of ``softplus(-z u)`` over rows ``[row_start, row_start + rows)`` and all columns."""
    # Local row i is global row row_start + i, whose positive is text column row_start + i.
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
    ).loss_sum


def sigmoid_loss_chunked(
    image_emb: jax.Array,
    text_emb: jax.Array,
    *,
    scale: Scalar,
    bias: Scalar,
    block_size: int | None = None,
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
    row_block = jax.checkpoint(_row_block_loss_sum, static_argnums=(5,))

    def row_step(total: jax.Array, block: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        image_rows, row_start = block
        return total + row_block(
            image_rows, row_start, text_emb, scale_array, bias_array, tile
        ), None

    full_rows = image_emb[: full_row_blocks * row_tile].reshape(full_row_blocks, row_tile, -1)
    row_starts = jnp.arange(full_row_blocks, dtype=jnp.int32) * row_tile
    total, _ = lax.scan(row_step, jnp.zeros((), dtype), (full_rows, row_starts))
    if last_rows:
        row_start = full_row_blocks * row_tile
        total = total + row_block(
            image_emb[row_start:], jnp.int32(row_start), text_emb, scale_array, bias_array, tile
        )
    return total / batch
