"""The NaFlex position-grid resize weights against a float64 loop oracle (numpy path)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from siglip_models._naflex import position_resize_weights


def _axis_oracle(grid: int, size: int) -> np.ndarray:
    """``[size, grid]`` antialiased bilinear weights, half-pixel centres, one output at a time."""
    scale = grid / size
    support = max(scale, 1.0)
    weights = np.zeros((size, grid))
    for out in range(size):
        centre = (out + 0.5) * scale - 0.5
        for source in range(grid):
            weights[out, source] = max(0.0, 1.0 - abs(source - centre) / support)
        weights[out] /= weights[out].sum()
    return weights


@given(
    rows=st.integers(1, 80),
    cols=st.integers(1, 80),
    grid=st.integers(1, 17),
    padding=st.integers(0, 5),
)
def test_weights_equal_the_separable_float64_oracle_and_pad_to_cell_zero(
    rows: int, cols: int, grid: int, padding: int
) -> None:
    length = rows * cols + padding
    weights = position_resize_weights(
        np.array([[rows, cols]], np.float32), length=length, grid_size=grid, xp=np, dtype=np.float32
    )[0]
    assert weights.shape == (length, grid * grid)
    expected = np.einsum("ri,cj->rcij", _axis_oracle(grid, rows), _axis_oracle(grid, cols))
    expected = expected.reshape(rows * cols, grid * grid)
    # float32 centres and divisions against float64: a few float32 ulps of a weight <= 1.
    np.testing.assert_allclose(weights[: rows * cols], expected, atol=5e-6)
    np.testing.assert_allclose(
        weights[rows * cols :], np.tile(expected[0], (padding, 1)), atol=5e-6
    )
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
