"""Group ids of the multi-positive sigmoid loss: the per-row weights and each tile's positives.

Pair ``(i, j)`` is a positive iff ``image_groups[i] == text_groups[j]``. Nothing here builds an
``[n, m]`` matrix: ``inverse_counts`` counts each id's matches with one sort of the other side
(``O((n + m) log m)``), and ``positive_pairs`` lists the positives of one tile from the column
block's sorted ids, in time and memory linear in the tile's edge and its number of positives.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from siglip_loss._validation import PositiveWeighting


class BlockGroups(NamedTuple):
    """Where the positives of an ``[n, m]`` block are, and how much each one weighs.

    ``image_weights[i]`` is ``1 / (2 k_i)`` and ``text_weights[j]`` is ``1 / (2 k'_j)`` (0 for
    an id without a match), so that a positive weighs ``image_weights[i] + text_weights[j]``
    under ``positive_weighting="inverse_count"``; both are None under ``"uniform"``.
    """

    image_groups: torch.Tensor  # [n] int64
    text_groups: torch.Tensor  # [m] int64
    image_weights: torch.Tensor | None  # [n], compute dtype
    text_weights: torch.Tensor | None  # [m], compute dtype

    @property
    def weighted(self) -> bool:
        return self.image_weights is not None


def as_group_ids(groups: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Integer group ids as a contiguous int64 tensor on ``device`` (comparable across dtypes)."""
    return groups.to(device=device, dtype=torch.int64).contiguous()


def match_counts(ids: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """How many entries of ``pool`` equal each entry of ``ids`` (int64, the shape of ``ids``)."""
    sorted_pool = torch.sort(pool).values
    return torch.searchsorted(sorted_pool, ids, right=True) - torch.searchsorted(sorted_pool, ids)


def half_inverse_counts(ids: torch.Tensor, pool: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``1 / (2 k)`` for each id, with ``k`` its matches in ``pool`` (0 where there is none)."""
    counts = match_counts(ids, pool).to(dtype)
    return torch.where(counts > 0, 0.5 / counts.clamp_min(1), torch.zeros_like(counts))


def block_groups(
    image_groups: torch.Tensor,
    text_groups: torch.Tensor,
    *,
    positive_weighting: PositiveWeighting,
    dtype: torch.dtype,
    all_image_groups: torch.Tensor | None = None,
    all_text_groups: torch.Tensor | None = None,
) -> BlockGroups:
    """The :class:`BlockGroups` of one block; counts over ``all_*_groups`` when given.

    Args:
        image_groups: ``[n]`` int64 ids of the block's image rows.
        text_groups: ``[m]`` int64 ids of the block's text rows.
        positive_weighting: ``"uniform"`` (no weights) or ``"inverse_count"``.
        dtype: the compute dtype of the weights.
        all_image_groups: the ids of every image the loss sees (default ``image_groups``): a
            distributed loss counts a text's positives over the global batch.
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


class SortedColumns(NamedTuple):
    """A column block's group ids in sorted order, and where each came from."""

    ids: torch.Tensor  # [cols] int64, ascending
    order: torch.Tensor  # [cols] int64: ids[k] = text_groups[col_start + order[k]]


def sort_columns(text_groups: torch.Tensor, col_start: int, col_stop: int) -> SortedColumns:
    ids, order = torch.sort(text_groups[col_start:col_stop])
    return SortedColumns(ids, order)


def positive_pairs(
    row_groups: torch.Tensor, columns: SortedColumns
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The positives of a ``[rows, cols]`` tile: ``(row index, column index)``, or None.

    Each row's matches are one run of the sorted column ids (found by two binary searches), so
    the pairs cost ``O(rows log cols + positives)`` in time and ``O(positives)`` in memory.
    """
    first = torch.searchsorted(columns.ids, row_groups)
    counts = torch.searchsorted(columns.ids, row_groups, right=True) - first
    total = int(counts.sum())
    if total == 0:
        return None
    device = row_groups.device
    rows = torch.arange(row_groups.shape[0], device=device)
    row_of = torch.repeat_interleave(rows, counts, output_size=total)
    run_start = torch.repeat_interleave(first, counts, output_size=total)
    position_in_run = torch.arange(total, device=device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts, output_size=total
    )
    column_of = columns.order[run_start + position_in_run]
    return row_of, column_of
