"""Position-embedding resampling against scipy (bilinear) and exact identities."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
from hypothesis import given
from hypothesis import strategies as st

from siglip_models import resample_position_embedding


@given(
    source=st.integers(1, 9),
    target=st.integers(1, 12),
    width=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_bilinear_equals_scipy_zoom_order_1_like_big_vision(
    source: int, target: int, width: int, seed: int
) -> None:
    grid = np.random.default_rng(seed).normal(size=(source, source, width))
    # big_vision's resample_posemb: scipy.ndimage.zoom(grid, (new/old, new/old, 1), order=1)
    expected = scipy.ndimage.zoom(grid, (target / source, target / source, 1), order=1)
    if expected.shape[:2] != (target, target):  # zoom rounds the size; skip odd ratios
        return
    got = resample_position_embedding(grid.reshape(-1, width), (target, target))
    np.testing.assert_allclose(got.reshape(target, target, width), expected, atol=1e-10)


@given(side=st.integers(1, 8), method=st.sampled_from(["bilinear", "bicubic"]))
def test_same_grid_is_identity(side: int, method: str) -> None:
    grid = np.random.default_rng(side).normal(size=(side * side, 3))
    got = resample_position_embedding(grid, (side, side), method=method)  # type: ignore[arg-type]
    np.testing.assert_allclose(got, grid, atol=1e-12)


@given(
    source=st.integers(2, 8),
    target=st.integers(1, 12),
    method=st.sampled_from(["bilinear", "bicubic"]),
)
def test_constant_grid_stays_constant(source: int, target: int, method: str) -> None:
    grid = np.full((source * source, 2), 3.5)
    got = resample_position_embedding(grid, (target, target), method=method)  # type: ignore[arg-type]
    np.testing.assert_allclose(got, 3.5, atol=1e-12)


def test_keeps_leading_axis_and_dtype() -> None:
    grid = np.zeros((1, 16, 5), dtype=np.float32)
    out = resample_position_embedding(grid, (3, 2))
    assert out.shape == (1, 6, 5)
    assert out.dtype == np.float32


def test_non_square_source_needs_source_grid() -> None:
    with pytest.raises(ValueError, match="source_grid"):
        resample_position_embedding(np.zeros((6, 2)), (3, 3))
    out = resample_position_embedding(np.zeros((6, 2)), (3, 3), source_grid=(2, 3))
    assert out.shape == (9, 2)
    with pytest.raises(ValueError, match="method"):
        resample_position_embedding(np.zeros((4, 2)), (3, 3), method="nearest")  # type: ignore[arg-type]
