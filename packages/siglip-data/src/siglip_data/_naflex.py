"""SigLIP 2 NaFlex preprocessing: native aspect ratio, a patch budget, padded patch sequences.

An image is resized (aspect ratio kept up to less than one patch per side) to the largest grid of
``patch_size`` patches that fits ``max_num_patches``, cut into patches and padded to exactly
``max_num_patches`` rows, with a mask and the grid's ``(rows, cols)``. Two orders of operations
are offered, because the references differ:

- ``order="hf"`` (transformers' ``Siglip2ImageProcessorPil``): resize the uint8 image with
  Pillow's bilinear filter (antialiased when shrinking), then scale to [-1, 1].
- ``order="big_vision"`` (``pp/proj/image_text/ops_naflex.py``): scale to [-1, 1] first, then
  resize the float image with an antialiased triangle filter (``tf.image.resize(bilinear,
  antialias=True)``), no rounding to uint8 in between.

The patch layout is written once, as an einops pattern (:data:`PATCH_PATTERN`) that numpy, torch
and JAX arrays all go through: patches row-major over the grid, each flattened in
``(patch_row, patch_col, channel)`` order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any
from typing import Literal

import einops
import numpy as np
import numpy.typing as npt
from PIL import Image

from siglip_data._image import ImageSource
from siglip_data._image import decode_image
from siglip_data._image import normalize_uint8_pixels
from siglip_data._resample import fast_resize_matches_pillow
from siglip_data._resample import resize_exact
from siglip_data._resample import resolve_backend

NaflexOrder = Literal["hf", "big_vision"]
NAFLEX_ORDERS: tuple[str, ...] = ("hf", "big_vision")
# The sequence lengths SigLIP 2 NaFlex was trained at, one drawn per batch (paper 2.4.2).
TRAINING_SEQUENCE_LENGTHS: tuple[int, ...] = (128, 256, 576, 784, 1024)

PATCH_PATTERN = (
    "... (rows patch_row) (cols patch_col) channel -> ... (rows cols) (patch_row patch_col channel)"
)
"""The one spelling of the NaFlex patch layout: image ``[..., height, width, channel]`` ->
patches ``[..., rows * cols, patch_row * patch_col * channel]`` (row-major grid, each patch in
``(patch_row, patch_col, channel)`` order). :func:`unpatchify` runs it backwards."""

_UNPATCH_PATTERN = " -> ".join(reversed(PATCH_PATTERN.split(" -> ")))


def _require_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def naflex_target_size(
    height: int, width: int, *, patch_size: int, max_num_patches: int, eps: float = 1e-5
) -> tuple[int, int]:
    """The NaFlex resize target: the largest patch grid within the budget, aspect ratio kept.

    Binary search on a scale ``s`` in ``[eps / 10, 100]`` until the interval is narrower than
    ``eps``; a scale gives sides ``max(p, ceil(side * s / p) * p)`` and is feasible when
    ``(H' / p) * (W' / p) <= max_num_patches``; the largest feasible scale found is used. This is
    transformers' ``get_image_size_for_max_num_patches`` (Python floats; big_vision runs the same
    search in TF float32 and may differ by one patch at exact boundaries). Small images are
    enlarged: 224 x 224 becomes 256 x 256 at 256 patches of 16.

    Args:
        height: image height in pixels.
        width: image width in pixels.
        patch_size: patch side ``p``.
        max_num_patches: the patch budget (the sequence length the image is padded to).
        eps: the search precision.

    Returns:
        ``(height', width')``, each a multiple of ``patch_size``, at least one patch, with
        ``height' * width' / patch_size**2 <= max_num_patches``.

    Raises:
        ValueError: a non-positive size, patch size or budget.

    Examples:
        >>> from siglip_data.naflex import naflex_target_size
        >>> naflex_target_size(2200, 1700, patch_size=16, max_num_patches=256)  # an A4 scan
        (288, 224)
        >>> naflex_target_size(2200, 1700, patch_size=16, max_num_patches=1024)
        (576, 448)
    """
    height = _require_positive_int("height", height)
    width = _require_positive_int("width", width)
    patch = _require_positive_int("patch_size", patch_size)
    budget = _require_positive_int("max_num_patches", max_num_patches)

    def scaled(side: int, scale: float) -> int:
        return max(patch, math.ceil(side * scale / patch) * patch)

    low, high = eps / 10, 100.0
    while high - low >= eps:
        scale = (low + high) / 2
        if (scaled(height, scale) // patch) * (scaled(width, scale) // patch) <= budget:
            low = scale
        else:
            high = scale
    return scaled(height, low), scaled(width, low)


def patchify(image: Any, patch_size: int) -> Any:
    """Cut ``[..., height, width, channel]`` images into flattened patches (numpy, torch or JAX).

    ``einops.rearrange(image, PATCH_PATTERN, patch_row=p, patch_col=p)``.

    Args:
        image: ``[..., rows * patch_size, cols * patch_size, channel]``, any einops backend.
        patch_size: the patch side ``p``.

    Returns:
        ``[..., rows * cols, p * p * channel]`` of the input's type.

    Raises:
        ValueError: (einops' error) a side that is not a multiple of ``patch_size``.

    Examples:
        >>> import numpy as np
        >>> from siglip_data.naflex import patchify
        >>> image = np.arange(4 * 6 * 3).reshape(4, 6, 3)
        >>> patches = patchify(image, 2)  # a 2 x 3 grid of 2 x 2 patches
        >>> patches.shape, patches[1, :3].tolist()  # patch (0, 1) starts at pixel (0, 2)
        ((6, 12), [6, 7, 8])
    """
    try:
        return einops.rearrange(image, PATCH_PATTERN, patch_row=patch_size, patch_col=patch_size)
    except einops.EinopsError as error:
        raise ValueError(
            f"patchify: image sides must be multiples of patch_size={patch_size}, got shape "
            f"{tuple(image.shape)}"
        ) from error


def unpatchify(patches: Any, spatial_shape: tuple[int, int], patch_size: int) -> Any:
    """The image back from its patches (the padding rows beyond ``rows * cols`` are dropped).

    Args:
        patches: ``[..., length, p * p * channel]`` with ``length >= rows * cols``.
        spatial_shape: ``(rows, cols)`` of the patch grid.
        patch_size: the patch side ``p``.

    Returns:
        ``[..., rows * p, cols * p, channel]`` of the input's type.

    Examples:
        >>> import numpy as np
        >>> from siglip_data.naflex import patchify, unpatchify
        >>> image = np.arange(4 * 6 * 3).reshape(4, 6, 3)
        >>> bool((unpatchify(patchify(image, 2), (2, 3), 2) == image).all())
        True
    """
    rows, cols = (int(side) for side in spatial_shape)
    return einops.rearrange(
        patches[..., : rows * cols, :],
        _UNPATCH_PATTERN,
        rows=rows,
        cols=cols,
        patch_row=patch_size,
        patch_col=patch_size,
    )


@dataclasses.dataclass(frozen=True)
class NaflexPatches:
    """One image, preprocessed for a NaFlex model.

    Attributes:
        patches: float32 ``[max_num_patches, patch_size * patch_size * 3]`` in [-1, 1], the
            first ``rows * cols`` rows the patches (row-major over the grid, each in
            ``(patch_row, patch_col, channel)`` order), the rest zero padding.
        patch_mask: bool ``[max_num_patches]``, True for the valid rows (a prefix).
        spatial_shape: ``(rows, cols)`` of the patch grid.
    """

    patches: npt.NDArray[np.float32]
    patch_mask: npt.NDArray[np.bool_]
    spatial_shape: tuple[int, int]

    @property
    def patch_size(self) -> int:
        """The patch side, from the width of a patch row."""
        return math.isqrt(self.patches.shape[1] // 3)

    def image(self) -> npt.NDArray[np.float32]:
        """The resized image ``[rows * p, cols * p, 3]`` in [-1, 1], as the model sees it."""
        image: npt.NDArray[np.float32] = unpatchify(
            self.patches, self.spatial_shape, self.patch_size
        )
        return image


@dataclasses.dataclass(frozen=True)
class NaflexBatch:
    """A batch of :class:`NaflexPatches`, never ragged: every image padded to one length.

    Attributes:
        patches: float32 ``[batch, length, patch_size * patch_size * 3]``.
        patch_mask: bool ``[batch, length]``.
        spatial_shapes: int32 ``[batch, 2]`` ``(rows, cols)``.
    """

    patches: npt.NDArray[np.float32]
    patch_mask: npt.NDArray[np.bool_]
    spatial_shapes: npt.NDArray[np.int32]

    def __len__(self) -> int:
        return int(self.patches.shape[0])


def _resize_uint8(image: Image.Image, height: int, width: int) -> npt.NDArray[np.uint8]:
    """Pillow's bilinear resize (antialiased when shrinking), compiled when numba is present."""
    if image.size == (width, height):
        return np.asarray(image)
    if resolve_backend("auto") == "numba" and fast_resize_matches_pillow():
        return resize_exact(image, width, height, "pil_bilinear")
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))


def _triangle_weights(source: int, target: int) -> npt.NDArray[np.float64]:
    """``[target, source]`` antialiased bilinear weights with half-pixel centres (TF's
    ``scale_and_translate`` triangle kernel): the filter widens by the shrink factor."""
    scale = source / target
    support = max(scale, 1.0)
    centres = (np.arange(target) + 0.5) * scale - 0.5
    distance = np.abs(np.arange(source)[None, :] - centres[:, None]) / support
    weights = np.maximum(0.0, 1.0 - distance)
    normalised: npt.NDArray[np.float64] = weights / weights.sum(axis=1, keepdims=True)
    return normalised


def resize_antialiased_float(
    pixels: npt.NDArray[np.float32], height: int, width: int
) -> npt.NDArray[np.float32]:
    """Separable antialiased bilinear resize of a float ``[h, w, c]`` image (big_vision's order).

    ``out = W_rows @ image @ W_cols.T`` per channel, weights from a triangle filter with
    half-pixel centres widened by the shrink factor, as ``tf.image.resize(method="bilinear",
    antialias=True)``; computed in float64, returned as float32.
    """
    rows = _triangle_weights(pixels.shape[0], height)
    cols = _triangle_weights(pixels.shape[1], width)
    resized = np.einsum("hy,yxc,wx->hwc", rows, pixels.astype(np.float64), cols, optimize=True)
    out: npt.NDArray[np.float32] = resized.astype(np.float32)
    return out


def naflex_preprocess(
    image: ImageSource,
    *,
    patch_size: int = 16,
    max_num_patches: int = 256,
    order: NaflexOrder = "hf",
) -> NaflexPatches:
    """Preprocess one image for a SigLIP 2 NaFlex model at its native aspect ratio.

    Decode to RGB (EXIF orientation, transparency on white), resize to
    :func:`naflex_target_size`, scale to [-1, 1], cut into patches with :func:`patchify`, pad
    with zero rows to ``max_num_patches``.

    Args:
        image: a PIL image, a path, encoded bytes or a uint8 array.
        patch_size: the model's patch side (16 for the releases).
        max_num_patches: the sequence length: the patch budget and the padded length (256 is
            transformers' default; the releases were trained at 128 to 1024).
        order: ``"hf"`` (resize the uint8 image with Pillow bilinear, then scale: transformers'
            ``Siglip2ImageProcessorPil``, within one uint8 level) or ``"big_vision"`` (scale
            first, then resize the float image with an antialiased triangle filter).

    Returns:
        :class:`NaflexPatches`.

    Raises:
        ValueError: a bad ``patch_size``, ``max_num_patches`` or ``order``.
        OSError: an image that cannot be decoded.

    Examples:
        >>> import numpy as np
        >>> from siglip_data.naflex import naflex_preprocess
        >>> wide = np.zeros((24, 200, 3), np.uint8)  # a line of text, 24 pixels high
        >>> record = naflex_preprocess(wide, patch_size=16, max_num_patches=16)
        >>> record.spatial_shape, record.patches.shape, int(record.patch_mask.sum())
        ((1, 9), (16, 768), 9)
    """
    patch = _require_positive_int("patch_size", patch_size)
    budget = _require_positive_int("max_num_patches", max_num_patches)
    if order not in NAFLEX_ORDERS:
        raise ValueError(f"order must be one of {NAFLEX_ORDERS}, got {order!r}")
    rgb = decode_image(image)
    height, width = naflex_target_size(
        rgb.height, rgb.width, patch_size=patch, max_num_patches=budget
    )
    if order == "hf":
        pixels = normalize_uint8_pixels(_resize_uint8(rgb, height, width))
    else:
        pixels = resize_antialiased_float(normalize_uint8_pixels(np.asarray(rgb)), height, width)
    valid = patchify(pixels, patch)
    patches = np.zeros((budget, valid.shape[1]), dtype=np.float32)
    patches[: len(valid)] = valid
    mask = np.zeros(budget, dtype=bool)
    mask[: len(valid)] = True
    return NaflexPatches(patches, mask, (height // patch, width // patch))


def collate_naflex(records: Sequence[NaflexPatches]) -> NaflexBatch:
    """Stack NaFlex records of one sequence length into a :class:`NaflexBatch`.

    Args:
        records: at least one record, all with the same ``max_num_patches`` and patch size.

    Returns:
        ``patches [batch, length, 3 * p * p]`` float32, ``patch_mask [batch, length]`` bool,
        ``spatial_shapes [batch, 2]`` int32.

    Raises:
        ValueError: no records, or records of different lengths or patch sizes (a batch is never
            ragged: preprocess the batch with one ``max_num_patches``).

    Examples:
        >>> import numpy as np
        >>> from siglip_data.naflex import collate_naflex, naflex_preprocess
        >>> images = [np.zeros((32, 64, 3), np.uint8), np.zeros((64, 16, 3), np.uint8)]
        >>> batch = collate_naflex(
        ...     [naflex_preprocess(image, max_num_patches=8) for image in images]
        ... )
        >>> batch.patches.shape, batch.spatial_shapes.tolist()
        ((2, 8, 768), [[2, 4], [4, 1]])
    """
    if not records:
        raise ValueError("collate_naflex needs at least one record")
    shapes = {record.patches.shape for record in records}
    if len(shapes) > 1:
        raise ValueError(
            "collate_naflex: every record of a batch must have the same [max_num_patches, "
            f"3 * patch_size**2], got {sorted(shapes)}; preprocess the batch with one "
            "max_num_patches"
        )
    return NaflexBatch(
        patches=np.stack([record.patches for record in records]),
        patch_mask=np.stack([record.patch_mask for record in records]),
        spatial_shapes=np.asarray([record.spatial_shape for record in records], dtype=np.int32),
    )


@dataclasses.dataclass(frozen=True)
class NaflexOptions:
    """NaFlex batches from :class:`~siglip_data.ImageTextDataset` (instead of square pixels).

    Each batch draws its sequence length from ``sequence_lengths`` with a generator seeded by
    ``(seed, epoch, stream, position of the batch's first sample)``: a pure function of the
    stream, so resuming from a ``state_dict`` gives the same lengths. Every image of a batch is
    preprocessed with that length as ``max_num_patches``; batches are never ragged.

    Attributes:
        sequence_lengths: the lengths to draw from, uniformly (default ``(256,)``;
            :data:`TRAINING_SEQUENCE_LENGTHS` is SigLIP 2's ``(128, 256, 576, 784, 1024)``).
        patch_size: the model's patch side (default 16).
        order: ``"hf"`` (default) or ``"big_vision"`` (see :func:`naflex_preprocess`).

    Raises:
        ValueError: no lengths, a non-positive length or patch size, an unknown order.

    Examples:
        >>> from siglip_data.naflex import NaflexOptions
        >>> NaflexOptions(sequence_lengths=(128, 256), patch_size=16).sequence_lengths
        (128, 256)
    """

    sequence_lengths: tuple[int, ...] = (256,)
    patch_size: int = 16
    order: NaflexOrder = "hf"

    def __post_init__(self) -> None:
        lengths = tuple(self.sequence_lengths)
        if not lengths:
            raise ValueError("NaflexOptions.sequence_lengths must not be empty")
        for length in lengths:
            _require_positive_int("NaflexOptions.sequence_lengths[...]", length)
        object.__setattr__(self, "sequence_lengths", tuple(int(length) for length in lengths))
        _require_positive_int("NaflexOptions.patch_size", self.patch_size)
        if self.order not in NAFLEX_ORDERS:
            raise ValueError(
                f"NaflexOptions.order must be one of {NAFLEX_ORDERS}, got {self.order!r}"
            )

    def sequence_length(self, seed: int, epoch: int, stream: int, position: int) -> int:
        """The length of the batch whose first sample is ``position`` of the stream."""
        if len(self.sequence_lengths) == 1:
            return self.sequence_lengths[0]
        rng = np.random.default_rng([seed, epoch, stream, position, 3])
        return self.sequence_lengths[int(rng.integers(len(self.sequence_lengths)))]
