"""Group ids of the multi-positive sigmoid loss in JAX: ids and per-row weights, no [n, m] array.

Pair ``(i, j)`` is a positive iff ``image_groups[i] == text_groups[j]``. The tile loops compare
the ids of one tile at a time (XLA fuses the comparison into the tile's elementwise pass); the
``inverse_count`` weights come from one sort of the other side's ids, ``O((n + m) log m)``.
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from siglip_loss._validation import PositiveWeighting


class BlockGroups(NamedTuple):
    """Where the positives of an ``[n, m]`` block are, and how much each one weighs (a pytree).

    ``image_weights[i]`` is ``1 / (2 k_i)`` and ``text_weights[j]`` is ``1 / (2 k'_j)`` (0 for an
    id without a match), so that a positive weighs ``image_weights[i] + text_weights[j]`` under
    ``positive_weighting="inverse_count"``; both are None under ``"uniform"``.
    """

    image_groups: jax.Array  # [n] int32 (int64 with x64)
    text_groups: jax.Array  # [m]
    image_weights: jax.Array | None  # [n], compute dtype
    text_weights: jax.Array | None  # [m]


def as_group_ids(groups: Any) -> jax.Array:
    """Integer group ids as JAX's default integer (int32, or int64 with ``jax_enable_x64``).

    One dtype for both sides, so that comparing them passes strict dtype promotion. Without x64,
    64-bit ids keep their low 32 bits (equal ids stay equal).
    """
    return jnp.asarray(groups).astype(jax.dtypes.canonicalize_dtype(np.int64))


def half_inverse_counts(ids: jax.Array, pool: jax.Array, dtype: Any) -> jax.Array:
    """``1 / (2 k)`` for each id, with ``k`` its matches in ``pool`` (0 where there is none)."""
    sorted_pool = jnp.sort(pool)
    counts = jnp.searchsorted(sorted_pool, ids, side="right") - jnp.searchsorted(
        sorted_pool, ids, side="left"
    )
    counts = counts.astype(dtype)
    return jnp.where(counts > 0, 0.5 / jnp.maximum(counts, 1), 0).astype(dtype)


def block_groups(
    image_groups: jax.Array,
    text_groups: jax.Array,
    *,
    positive_weighting: PositiveWeighting,
    dtype: Any,
    all_image_groups: jax.Array | None = None,
    all_text_groups: jax.Array | None = None,
) -> BlockGroups:
    """The :class:`BlockGroups` of one block; counts over ``all_*_groups`` when given.

    Args:
        image_groups: ``[n]`` ids of the block's image rows (:func:`as_group_ids`).
        text_groups: ``[m]`` ids of the block's text rows.
        positive_weighting: ``"uniform"`` (no weights) or ``"inverse_count"``.
        dtype: the compute dtype of the weights.
        all_image_groups: the ids of every image the loss sees (default ``image_groups``): the
            sharded loss counts a text's positives over the global batch.
        all_text_groups: the ids of every text the loss sees (default ``text_groups``).

    Returns:
        The block's groups and weights.
    """
    if positive_weighting == "uniform":
        return BlockGroups(image_groups, text_groups, None, None)
    every_text = text_groups if all_text_groups is None else all_text_groups
    every_image = image_groups if all_image_groups is None else all_image_groups
    return BlockGroups(
        image_groups,
        text_groups,
        half_inverse_counts(image_groups, every_text, dtype),
        half_inverse_counts(text_groups, every_image, dtype),
    )
