"""Fused sigmoid loss for JAX: loss and all four gradients in one tiled float32 pass.

The loss is a scalar, so its gradients can be computed tile by tile next to the loss in the
``custom_vjp`` forward; the backward only multiplies them by the incoming cotangent. The tiles are
visited by ``lax.fori_loop`` with the gradient accumulators carried through the loop, so XLA
keeps one ``[block, block]`` tile alive at a time instead of materialising ``[n, m]``.
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

DEFAULT_BLOCK_SIZE = 1024
"""Tile edge: large enough for efficient matmuls, small enough that one float32 tile is 4 MiB."""


class BlockSums(NamedTuple):
    """Sums over one ``[n, m]`` block of sigmoid-loss terms, and their gradients (float32).

    The gradients are those of ``loss_sum`` itself: not divided by the batch and not multiplied by
    any upstream gradient. They are ``None`` when ``compute_grads`` was False (only the loss is
    computed then).
    """

    loss_sum: jax.Array  # 0-d
    grad_image: jax.Array | None  # [n, D]
    grad_text: jax.Array | None  # [m, D]
    grad_scale: jax.Array | None  # 0-d
    grad_bias: jax.Array | None  # 0-d


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


def sigmoid_block_sums(
    image_block: jax.Array,
    text_block: jax.Array,
    *,
    scale: jax.Array | float,
    bias: jax.Array | float,
    positive_offset: int | jax.Array | None,
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

    Tiles of ``block_size x block_size`` are visited by ``lax.fori_loop`` (a ragged last row or
    column block is handled with its own static shape), accumulating in float32. This is a plain
    function of its inputs, not differentiable itself: use it inside a ``custom_vjp`` (as
    :func:`sigmoid_loss_fused` does) or a sharded ring. Works under ``jax.jit`` and ``jax.vmap``.

    Args:
        image_block: ``[n, dim]`` image embeddings (any float dtype).
        text_block: ``[m, dim]`` text embeddings.
        scale: the multiplier ``t`` (0-d array or float, used as float32).
        bias: the logit bias ``b`` (0-d array or float, used as float32).
        positive_offset: text row ``i + positive_offset`` is the positive of image row ``i``
            (a Python int or a traced integer scalar); ``None`` makes every pair a negative.
        block_size: tile edge (static), ``None`` for :data:`DEFAULT_BLOCK_SIZE`.
        compute_grads: also compute the four gradients (static).

    Returns:
        :class:`BlockSums`, every field float32.

    Raises:
        TypeError, ValueError: a bad ``block_size`` or mismatched shapes.

    Example:
        >>> image = jnp.eye(2)
        >>> sums = sigmoid_block_sums(
        ...     image,
        ...     image,
        ...     scale=10.0,
        ...     bias=-10.0,
        ...     positive_offset=0,
        ...     block_size=1,
        ...     compute_grads=False,
        ... )
        >>> round(float(sums.loss_sum), 4)  # 2 * (softplus(0) + softplus(-10))
        1.3864
    """
    tile = check_block_size(block_size)
    if image_block.ndim != 2 or text_block.ndim != 2 or image_block.shape[1] != text_block.shape[1]:
        raise ValueError(
            "image_block, text_block: expected [n, dim] and [m, dim] with the same dim, got "
            f"{tuple(image_block.shape)} and {tuple(text_block.shape)}"
        )
    if isinstance(positive_offset, bool):
        raise TypeError(
            "positive_offset: expected an int, an integer scalar array or None, got bool"
        )
    scale32 = jnp.asarray(scale, jnp.float32)
    bias32 = jnp.asarray(bias, jnp.float32)
    offset = None if positive_offset is None else jnp.asarray(positive_offset, jnp.int32)
    return _block_sums(image_block, text_block, scale32, bias32, offset, tile, compute_grads)


class _Carry(NamedTuple):
    loss_sum: jax.Array
    sigmoid_sum: jax.Array
    image_times_g: jax.Array  # [rows, D] (G Y for the current row block, unscaled)
    grad_text: jax.Array  # [m, D]


def _varying_like(value: jax.Array, *references: Any) -> jax.Array:
    """``value`` cast to vary over every ``shard_map`` axis any of ``references`` varies over."""
    typeof = getattr(jax, "typeof", None)
    pcast = getattr(lax, "pcast", None)
    if typeof is None or pcast is None:  # older JAX: no varying-axis types to match
        return value
    axes: set[Any] = set()
    for reference in references:
        if reference is not None:
            axes |= _varying_axes(typeof(reference))
    missing = tuple(sorted(axes - _varying_axes(typeof(value)), key=str))
    return pcast(value, missing, to="varying") if missing else value


def _varying_axes(aval: Any) -> set[Any]:
    manual = getattr(aval, "manual_axis_type", None)  # JAX >= 0.10
    if manual is not None:
        return set(manual.varying)
    return set(getattr(aval, "vma", ()))  # JAX 0.6 - 0.9


def _block_sums(
    image_block: jax.Array,
    text_block: jax.Array,
    scale: jax.Array,
    bias: jax.Array,
    positive_offset: jax.Array | None,
    tile: int,
    compute_grads: bool,
) -> BlockSums:
    n, dim = image_block.shape
    m = text_block.shape[0]
    float32 = jnp.float32
    row_tile, col_tile = min(tile, n), min(tile, m)
    full_row_blocks, last_rows = divmod(n, row_tile)
    full_col_blocks, last_cols = divmod(m, col_tile)

    def zeros(shape: tuple[int, ...]) -> jax.Array:
        # Loop carries start with the inputs' varying mesh axes, or fori_loop rejects them
        # inside shard_map (the sharded ring calls this per device).
        return _varying_like(
            jnp.zeros(shape, float32), image_block, text_block, scale, bias, positive_offset
        )

    def tile_step(
        carry: _Carry, scaled_rows: jax.Array, row_start: jax.Array, col_start: Any, cols: int
    ) -> _Carry:
        rows = scaled_rows.shape[0]
        text_cols = lax.dynamic_slice_in_dim(text_block, col_start, cols).astype(float32)
        logits = (
            lax.dot_general(
                scaled_rows,
                text_cols,
                (((1,), (1,)), ((), ())),
                precision=lax.Precision.HIGHEST,
                preferred_element_type=float32,
            )
            + bias
        )
        # softplus(u) and sigmoid(u) share exp(-|u|): one exp per logit.
        exp_neg_abs = jnp.exp(-jnp.abs(logits))
        terms = jnp.maximum(logits, 0.0) + jnp.log1p(exp_neg_abs)
        if positive_offset is not None:
            row_index = lax.broadcasted_iota(jnp.int32, (rows, cols), 0) + row_start
            col_index = lax.broadcasted_iota(jnp.int32, (rows, cols), 1) + col_start
            is_positive = col_index == row_index + positive_offset
            # softplus(-u) = softplus(u) - u for the positive pairs.
            terms = terms - jnp.where(is_positive, logits, 0.0)
        loss_sum = carry.loss_sum + jnp.sum(terms)
        if not compute_grads:
            return carry._replace(loss_sum=loss_sum)
        grad_logits = jnp.where(logits >= 0, 1.0, exp_neg_abs) / (1.0 + exp_neg_abs)
        if positive_offset is not None:
            grad_logits = grad_logits - is_positive.astype(float32)
        image_times_g = carry.image_times_g + jnp.dot(
            grad_logits, text_cols, precision=lax.Precision.HIGHEST
        )
        text_update = lax.dot_general(
            grad_logits,
            scaled_rows,
            (((0,), (0,)), ((), ())),
            precision=lax.Precision.HIGHEST,
            preferred_element_type=float32,
        )
        old_text = lax.dynamic_slice_in_dim(carry.grad_text, col_start, cols)
        grad_text = lax.dynamic_update_slice_in_dim(
            carry.grad_text, old_text + text_update, col_start, axis=0
        )
        return _Carry(loss_sum, carry.sigmoid_sum + jnp.sum(grad_logits), image_times_g, grad_text)

    def row_step(
        state: tuple[jax.Array, jax.Array, jax.Array, jax.Array],
        row_start: Any,
        rows: int,
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        loss_sum, sigmoid_sum, image_times_g, grad_text = state
        image_rows = lax.dynamic_slice_in_dim(image_block, row_start, rows).astype(float32)
        scaled_rows = image_rows * scale
        carry = _Carry(
            loss_sum,
            sigmoid_sum,
            zeros((rows, dim) if compute_grads else ()),
            grad_text,
        )
        if full_col_blocks == 1:
            carry = tile_step(carry, scaled_rows, row_start, 0, col_tile)
        elif full_col_blocks > 1:
            carry = lax.fori_loop(
                0,
                full_col_blocks,
                lambda index, c: tile_step(c, scaled_rows, row_start, index * col_tile, col_tile),
                carry,
            )
        if last_cols:
            carry = tile_step(carry, scaled_rows, row_start, full_col_blocks * col_tile, last_cols)
        if compute_grads:
            image_times_g = lax.dynamic_update_slice_in_dim(
                image_times_g, carry.image_times_g, row_start, axis=0
            )
        return carry.loss_sum, carry.sigmoid_sum, image_times_g, carry.grad_text

    zero = zeros(())
    if compute_grads:
        state = (zero, zero, zeros((n, dim)), zeros((m, dim)))
    else:
        state = (zero, zero, zero, zero)
    if full_row_blocks == 1:
        state = row_step(state, 0, row_tile)
    elif full_row_blocks > 1:
        state = lax.fori_loop(
            0, full_row_blocks, lambda index, s: row_step(s, index * row_tile, row_tile), state
        )
    if last_rows:
        state = row_step(state, full_row_blocks * row_tile, last_rows)
    loss_sum, sigmoid_sum, image_times_g, grad_text = state
    if not compute_grads:
        return BlockSums(loss_sum, None, None, None, None)
    grad_scale = jnp.sum(image_block.astype(float32) * image_times_g)
    return BlockSums(loss_sum, image_times_g * scale, grad_text, grad_scale, sigmoid_sum)
