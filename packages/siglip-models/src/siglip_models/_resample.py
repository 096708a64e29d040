"""Resampling the learned position-embedding grid to another resolution (numpy, any backend)."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

_CUBIC_A = -0.75  # the Keys coefficient torch (and so HF) uses for bicubic


def _bilinear_align_corners(source: int, target: int) -> np.ndarray:
    """``[target, source]`` weights of scipy.ndimage.zoom(order=1): end points map to end points."""
    weights = np.zeros((target, source), dtype=np.float64)
    if source == 1 or target == 1:
        weights[:, 0] = 1.0
        return weights
    positions = np.arange(target) * ((source - 1) / (target - 1))
    lower = np.minimum(np.floor(positions).astype(np.int64), source - 2)
    fraction = positions - lower
    rows = np.arange(target)
    weights[rows, lower] += 1.0 - fraction
    weights[rows, lower + 1] += fraction
    return weights


def _cubic_kernel(distance: np.ndarray) -> np.ndarray:
    distance = np.abs(distance)
    a = _CUBIC_A
    near = ((a + 2) * distance - (a + 3)) * distance * distance + 1
    far = ((a * distance - 5 * a) * distance + 8 * a) * distance - 4 * a
    return np.where(distance <= 1, near, np.where(distance < 2, far, 0.0))


def _bicubic_half_pixel(source: int, target: int) -> np.ndarray:
    """``[target, source]`` weights of torch ``interpolate(mode="bicubic", align_corners=False)``."""
    weights = np.zeros((target, source), dtype=np.float64)
    positions = (np.arange(target) + 0.5) * (source / target) - 0.5
    floor = np.floor(positions).astype(np.int64)
    fraction = positions - floor
    rows = np.arange(target)
    for offset in (-1, 0, 1, 2):
        # Taps beyond the border repeat the edge value (clamped index), as torch does.
        columns = np.clip(floor + offset, 0, source - 1)
        np.add.at(weights, (rows, columns), _cubic_kernel(offset - fraction))
    return weights


def resample_position_embedding(
    position_embedding: np.ndarray,
    new_grid: tuple[int, int],
    *,
    method: Literal["bilinear", "bicubic"] = "bilinear",
    source_grid: tuple[int, int] | None = None,
) -> np.ndarray:
    """Resample a learned position-embedding grid to a new patch grid.

    Positions are row-major over the patch grid (no class token). ``bilinear`` is big_vision's
    load-time resampling, ``scipy.ndimage.zoom(grid, zoom, order=1)``: output index ``i`` reads
    source coordinate ``i * (n_in - 1) / (n_out - 1)`` (end points aligned). ``bicubic`` is HF's
    ``interpolate_pos_encoding``: ``torch.nn.functional.interpolate(mode="bicubic",
    align_corners=False)``, source coordinate ``(i + 0.5) * n_in / n_out - 0.5``, Keys kernel
    ``a = -0.75``, edge taps clamped. Both are separable: ``out = W_h @ grid @ W_w.T``.

    Args:
        position_embedding: ``[num_positions, width]`` (or ``[1, num_positions, width]``).
        new_grid: ``(rows, columns)`` of the target patch grid.
        method: ``"bilinear"`` (big_vision) or ``"bicubic"`` (Hugging Face).
        source_grid: ``(rows, columns)`` of the source; default the square root of
            ``num_positions``.

    Returns:
        ``[rows * columns, width]`` (with the leading 1 kept if given), in the input dtype.

    Raises:
        ValueError: for a non-square source without ``source_grid``, a bad grid or method.

    Examples:
        >>> import numpy as np
        >>> from siglip_models import resample_position_embedding
        >>> grid = np.arange(4.0).reshape(4, 1)  # a 2x2 grid, width 1
        >>> resample_position_embedding(grid, (3, 3))[:, 0].tolist()
        [0.0, 0.5, 1.0, 1.0, 1.5, 2.0, 2.0, 2.5, 3.0]
    """
    array = np.asarray(position_embedding)
    leading = array.ndim == 3
    if leading:
        if array.shape[0] != 1:
            raise ValueError(
                "position_embedding must be [num_positions, width] or [1, num_positions, width], "
                f"got shape {array.shape}"
            )
        array = array[0]
    if array.ndim != 2:
        raise ValueError(
            f"position_embedding must be [num_positions, width], got shape {array.shape}"
        )
    num_positions, width = array.shape
    if source_grid is None:
        side = math.isqrt(num_positions)
        if side * side != num_positions:
            raise ValueError(
                f"position_embedding has {num_positions} positions, not a square grid; "
                "pass source_grid=(rows, columns)"
            )
        source_grid = (side, side)
    if source_grid[0] * source_grid[1] != num_positions:
        raise ValueError(f"source_grid {source_grid} does not hold {num_positions} positions")
    if len(new_grid) != 2 or min(new_grid) <= 0:
        raise ValueError(f"new_grid must be two positive ints, got {new_grid!r}")
    if method == "bilinear":
        make = _bilinear_align_corners
    elif method == "bicubic":
        make = _bicubic_half_pixel
    else:
        raise ValueError(f"method must be 'bilinear' or 'bicubic', got {method!r}")
    rows = make(source_grid[0], new_grid[0])
    columns = make(source_grid[1], new_grid[1])
    grid = array.astype(np.float64).reshape(source_grid[0], source_grid[1], width)
    resized = np.einsum("ri,ijd,cj->rcd", rows, grid, columns)
    out: np.ndarray = resized.reshape(new_grid[0] * new_grid[1], width).astype(array.dtype)
    return out[None] if leading else out
