"""Chunked sigmoid loss for JAX: tiles of logits, gradients by ordinary autodiff.

Row blocks are visited by ``lax.scan``; each row block is a ``jax.checkpoint`` function whose
column tiles are another ``lax.scan``, so reverse mode keeps one row block of logits at a time and
recomputes it in the backward pass. Plain autodiff: higher-order derivatives work.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from siglip_loss.jax._fused import check_block_size
from siglip_loss.jax._reference import compute_dtype


def _tile_loss_sum(
    scaled_rows: jax.Array, text_cols: jax.Array, bias: jax.Array, diagonal_offset: Any
) -> jax.Array:
    """Sum of ``softplus(-z u)`` over one tile; positives where ``col = row + diagonal_offset``."""
    logits = scaled_rows @ text_cols.T + bias  # [rows, cols]
    rows, cols = logits.shape
    row_index = lax.broadcasted_iota(jnp.int32, (rows, cols), 0)
    col_index = lax.broadcasted_iota(jnp.int32, (rows, cols), 1)
    # softplus(-z u) directly (no softplus(u) - u cancellation on the positives).
    signed_logits = jnp.where(col_index == row_index + diagonal_offset, logits, -logits)
    return jnp.sum(jax.nn.softplus(-signed_logits))


def _row_block_loss_sum(
    image_rows: jax.Array,
    row_start: Any,
    text_emb: jax.Array,
    scale: jax.Array,
    bias: jax.Array,
    tile: int,
) -> jax.Array:
    """Sum over rows ``[row_start, row_start + rows)`` and all columns, tile by tile."""
    dtype = scale.dtype
    scaled_rows = image_rows.astype(dtype) * scale
    batch = text_emb.shape[0]
    col_tile = min(tile, batch)
    full_col_blocks, last_cols = divmod(batch, col_tile)
    full_cols = text_emb[: full_col_blocks * col_tile].reshape(full_col_blocks, col_tile, -1)

    def column_step(total: jax.Array, block: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        text_cols, col_start = block
        tile_sum = _tile_loss_sum(scaled_rows, text_cols.astype(dtype), bias, row_start - col_start)
        return total + tile_sum, None

    col_starts = jnp.arange(full_col_blocks, dtype=jnp.int32) * col_tile
    total, _ = lax.scan(column_step, jnp.zeros((), dtype), (full_cols, col_starts))
    if last_cols:
        col_start = full_col_blocks * col_tile
        text_cols = text_emb[col_start:].astype(dtype)
        total = total + _tile_loss_sum(scaled_rows, text_cols, bias, row_start - col_start)
    return total


def sigmoid_loss_chunked(
    image_emb: jax.Array,
    text_emb: jax.Array,
    *,
    scale: jax.Array | float,
    bias: jax.Array | float,
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
    dtype = compute_dtype(image_emb, text_emb)
    scale_array = jnp.asarray(scale).astype(dtype)
    bias_array = jnp.asarray(bias).astype(dtype)
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
