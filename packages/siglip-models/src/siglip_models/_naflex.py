"""SigLIP 2 NaFlex, framework-free: the position-grid resize weights and the input checks.

The weights are written once, against an array namespace ``xp`` (numpy, torch or jax.numpy)
and einops, so the PyTorch and the Flax towers (and the numpy tests) run the same formula.

For image ``b`` with a ``rows x cols`` patch grid, token ``n < rows * cols`` sits at
``(n // cols, n % cols)``; padding tokens take cell ``(0, 0)``. Along each axis the learned
``grid`` positions are resized to ``size`` outputs as ``F.interpolate(mode="bilinear",
align_corners=False, antialias=True)`` does:

.. math::
    s = \\frac{grid}{size},\\quad c_i = (i + 0.5)\\,s - 0.5,\\quad
    w_{ik} \\propto \\max\\bigl(0,\\ 1 - |k - c_i| / \\max(s, 1)\\bigr),\\quad \\sum_k w_{ik} = 1

a triangle filter with half-pixel centres, widened when shrinking (antialias). The 2-D weights
are the outer product of the row and column weights, so the resized position embedding is
``weights [batch, length, grid * grid] @ table [grid * grid, width]``: no per-image loop, no
cap on a side (big_vision's canvas of 64 gives NaN beyond it), and static shapes under
``jax.jit`` for a static ``length``.
"""

from __future__ import annotations

from typing import Any

import einops
import numpy as np


def position_resize_weights(sizes: Any, *, length: int, grid_size: int, xp: Any, dtype: Any) -> Any:
    """Weights that resize a ``grid_size x grid_size`` position table to each image's grid.

    Args:
        sizes: ``[batch, 2]`` float ``(rows, cols)`` of every image's patch grid, in ``dtype``.
        length: ``length``, the padded sequence length L of the batch.
        grid_size: side of the learned square grid (16 for the releases).
        xp: the array namespace of ``sizes`` (``numpy``, ``torch``, ``jax.numpy``).
        dtype: the float dtype of that namespace to compute in (float32 in the models).

    Returns:
        ``[batch, length, grid_size * grid_size]``; row ``n`` of image ``b`` holds the weights of
        token ``n`` over the grid cells in row-major order; padding tokens get the weights of the
        image's first token (cell (0, 0) of its resized grid, as transformers).

    Examples:
        >>> import numpy as np
        >>> from siglip_models._naflex import position_resize_weights
        >>> weights = position_resize_weights(
        ...     np.array([[1.0, 2.0]], np.float32), length=3, grid_size=2, xp=np, dtype=np.float32
        ... )
        >>> weights[0].tolist()  # one row: both grid rows averaged; the pad token repeats token 0
        [[0.5, 0.0, 0.5, 0.0], [0.0, 0.5, 0.0, 0.5], [0.5, 0.0, 0.5, 0.0]]
    """
    positions = xp.arange(length, dtype=dtype)  # [length]
    rows, cols = sizes[:, 0:1], sizes[:, 1:2]  # [batch, 1] each
    row = xp.floor(positions / cols)  # [batch, length]
    col = positions - row * cols
    valid = positions < rows * cols
    row = xp.where(valid, row, 0.0)
    col = xp.where(valid, col, 0.0)
    source = xp.arange(grid_size, dtype=dtype)  # [grid]

    def axis_weights(index: Any, size: Any) -> Any:
        scale = grid_size / size  # [batch, 1]
        support = xp.where(scale > 1.0, scale, 1.0)
        centre = (index + 0.5) * scale - 0.5  # [batch, length]
        distance = xp.abs(source - centre[..., None]) / support[..., None]
        triangle = xp.where(distance < 1.0, 1.0 - distance, 0.0)  # [batch, length, grid]
        total = einops.reduce(triangle, "batch length grid -> batch length 1", "sum")
        return triangle / total

    row_weights = axis_weights(row, rows)
    col_weights = axis_weights(col, cols)
    outer = einops.einsum(
        row_weights,
        col_weights,
        "batch length grid_row, batch length grid_col -> batch length grid_row grid_col",
    )
    return einops.rearrange(
        outer, "batch length grid_row grid_col -> batch length (grid_row grid_col)"
    )


def check_naflex_inputs(
    patches_shape: tuple[int, ...],
    patch_mask: np.ndarray | None,
    spatial_shapes: np.ndarray | None,
    *,
    patch_size: int,
) -> None:
    """Reject NaFlex inputs that would silently give wrong embeddings.

    Args:
        patches_shape: shape of ``patches``, which must be ``[batch, length, 3 * patch_size**2]``.
        patch_mask: ``[batch, length]`` (bool or 0/1) as numpy, or None when not concrete (traced
            under ``jax.jit``: only the shapes are checked then).
        spatial_shapes: ``[batch, 2]`` integer ``(rows, cols)`` as numpy, or None when traced.
        patch_size: the model's patch side.

    Raises:
        ValueError: naming the problem: a last axis other than ``3 * patch_size**2``; mask or
            shapes of the wrong shape; a side of zero (or negative); more valid patches than
            ``length``; a mask that is not a prefix of ones, or whose count is not
            ``rows * cols``.
    """
    features = 3 * patch_size * patch_size
    if len(patches_shape) != 3 or patches_shape[-1] != features:
        raise ValueError(
            f"patches must be [batch, length, 3 * patch_size**2 = {features}] (patch_size "
            f"{patch_size}, (patch_row, patch_col, channel) order), got shape {tuple(patches_shape)}"
        )
    batch, length = patches_shape[0], patches_shape[1]
    if spatial_shapes is not None:
        if spatial_shapes.shape != (batch, 2):
            raise ValueError(
                f"spatial_shapes must be [batch={batch}, 2] (rows, cols), got shape "
                f"{spatial_shapes.shape}"
            )
        if spatial_shapes.dtype.kind not in "iu":
            raise ValueError(f"spatial_shapes must hold integers, got dtype {spatial_shapes.dtype}")
        if (spatial_shapes <= 0).any():
            image = int(np.flatnonzero((spatial_shapes <= 0).any(axis=1))[0])
            raise ValueError(
                f"spatial_shapes[{image}] = {spatial_shapes[image].tolist()}: every image needs at "
                "least one patch per side"
            )
        counts = spatial_shapes.astype(np.int64).prod(axis=1)
        if (counts > length).any():
            image = int(np.flatnonzero(counts > length)[0])
            raise ValueError(
                f"image {image} has {int(counts[image])} valid patches "
                f"({spatial_shapes[image].tolist()}) but the sequence holds only {length}: "
                "preprocess with max_num_patches <= length"
            )
    if patch_mask is not None:
        if patch_mask.shape != (batch, length):
            raise ValueError(
                f"patch_mask must be [batch={batch}, length={length}], got shape {patch_mask.shape}"
            )
        valid = patch_mask.astype(bool)
        if patch_mask.dtype != np.bool_ and not np.isin(patch_mask, (0, 1)).all():
            raise ValueError("patch_mask must be bool or hold only 0 and 1")
        count = valid.sum(axis=1)
        prefix = np.arange(length)[None, :] < count[:, None]
        if (valid != prefix).any():
            image = int(np.flatnonzero((valid != prefix).any(axis=1))[0])
            raise ValueError(
                f"patch_mask[{image}] is not a prefix of ones (valid patches first, padding "
                "last), as naflex_preprocess writes it"
            )
        if spatial_shapes is not None:
            counts = spatial_shapes.astype(np.int64).prod(axis=1)
            if (count != counts).any():
                image = int(np.flatnonzero(count != counts)[0])
                raise ValueError(
                    f"image {image}: patch_mask has {int(count[image])} valid patches but "
                    f"spatial_shapes {spatial_shapes[image].tolist()} gives {int(counts[image])}"
                )


def naflex_only_message(method: str) -> str:
    """The error for a fixed-resolution call on a NaFlex model."""
    return (
        f"{method}: this is a SigLIP 2 NaFlex model (linear patch embedding, variable sequence "
        "length); call encode_image_naflex(patches, patch_mask, spatial_shapes) with inputs from "
        "siglip_data.naflex.naflex_preprocess"
    )


def fixed_only_message(method: str) -> str:
    """The error for a NaFlex call on a fixed-resolution model."""
    return (
        f"{method}: this is a fixed-resolution model (patch conv, square images); NaFlex inputs "
        "need a NaFlex checkpoint (model_type 'siglip2', e.g. siglip2-base-patch16-naflex); call "
        "encode_image(pixels) here"
    )
