"""Image decoding and SigLIP preprocessing: squash-resize to a square, scale to [-1, 1].

The released SigLIP / SigLIP 2 checkpoints were trained with big_vision's
``resize(RES)|value_range(-1, 1)``: ``tf.image.resize(method="bilinear", antialias=False)`` straight
to RES x RES (aspect ratio not preserved, no crop), then ``x / 127.5 - 1``. HF processors use
Pillow bicubic (SigLIP) or Pillow bilinear (SigLIP 2 fixed-res) instead. All three are offered.
"""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image
from PIL import ImageOps

from siglip_data._resample import ResizeBackend
from siglip_data._resample import fast_resize_matches_pillow
from siglip_data._resample import resize_exact
from siglip_data._resample import resolve_backend

ImageSource = Image.Image | str | os.PathLike | bytes | bytearray | memoryview | np.ndarray
Resample = Literal["bicubic", "bilinear", "pil_bilinear"]
RESAMPLE_METHODS: tuple[str, ...] = ("bicubic", "bilinear", "pil_bilinear")

_EXIF_ORIENTATION = 0x0112
_WHITE = (255, 255, 255, 255)


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Optional training augmentation: random resized crop then horizontal flip.

    SigLIP was trained without augmentation (big_vision: resize only); keep this off to reproduce
    it. The crop follows the Inception recipe: area fraction ``scale``, aspect ratio ``ratio``
    (log-uniform), fallback to the whole image after 10 tries.

    Attributes:
        scale: (min, max) fraction of the image area kept by the crop.
        ratio: (min, max) aspect ratio (width / height) of the crop.
        flip: flip horizontally with probability 0.5. Captions with "left"/"right" become wrong.
    """

    scale: tuple[float, float] = (0.9, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = False

    def __post_init__(self) -> None:
        low, high = self.scale
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {self.scale}")
        low, high = self.ratio
        if not 0.0 < low <= high:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {self.ratio}")

    def crop_box(
        self, width: int, height: int, rng: np.random.Generator
    ) -> tuple[int, int, int, int]:
        """A random (left, top, right, bottom) crop box inside a ``width`` x ``height`` image."""
        area = width * height
        log_ratio = np.log(self.ratio)
        for _ in range(10):
            target_area = area * rng.uniform(*self.scale)
            aspect = float(np.exp(rng.uniform(*log_ratio)))
            crop_width = round(np.sqrt(target_area * aspect))
            crop_height = round(np.sqrt(target_area / aspect))
            if 0 < crop_width <= width and 0 < crop_height <= height:
                left = int(rng.integers(0, width - crop_width + 1))
                top = int(rng.integers(0, height - crop_height + 1))
                return left, top, left + crop_width, top + crop_height
        return 0, 0, width, height


def decode_image(image: ImageSource, *, draft_size: int | None = None) -> Image.Image:
    """Open any image source as an 8-bit RGB Pillow image, the way a user expects to see it.

    - EXIF orientation is applied (phone photos come out upright);
    - transparency (RGBA, LA, palette with transparency) is composited onto white, as HF does;
    - palette, grayscale, CMYK, YCbCr, 16-bit and float images become RGB.

    Args:
        image: a PIL image, a path, encoded bytes, or a uint8 ``[height, width]`` /
            ``[height, width, 3|4]`` array.
        draft_size: for JPEG files, let libjpeg decode at 1/2, 1/4 or 1/8 scale (DCT-domain
            downscaling, several times faster) as long as both sides stay >= ``draft_size``.
            Pixels then differ slightly from a full decode; None decodes at full size.

    Returns:
        A loaded ``"RGB"`` PIL image.

    Raises:
        TypeError: unsupported source type.
        FileNotFoundError: the path does not exist.
        PIL.UnidentifiedImageError, OSError: the bytes are not a decodable image (or truncated).
    """
    if isinstance(image, Image.Image):
        opened = image
    elif isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image path {str(path)!r} does not exist")
        opened = Image.open(path)
    elif isinstance(image, (bytes, bytearray, memoryview)):
        opened = Image.open(io.BytesIO(bytes(image)))
    elif isinstance(image, np.ndarray):
        opened = _array_to_image(image)
    else:
        raise TypeError(
            "image must be a PIL image, a path, bytes or a uint8 numpy array, "
            f"got {type(image).__name__}"
        )
    if draft_size is not None and opened.format == "JPEG":
        opened.draft("RGB", (draft_size, draft_size))
    opened.load()
    if opened.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        transposed = ImageOps.exif_transpose(opened)
        if transposed is not None:
            opened = transposed
    return _to_rgb(opened)


def _array_to_image(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        raise TypeError(f"image arrays must be uint8, got dtype {array.dtype}")
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4)):
        return Image.fromarray(
            array.squeeze(2) if array.ndim == 3 and array.shape[2] == 1 else array
        )
    raise ValueError(
        f"image arrays must be [height, width] or [height, width, 1|3|4], got {array.shape}"
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # Pillow clips wide grayscale into 0..255 instead of scaling it.
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        scaled = np.clip(np.rint(values * (255.0 / peak)), 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE)
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _check_resample(resample: str) -> None:
    if resample not in RESAMPLE_METHODS:
        raise ValueError(f"resample must be one of {RESAMPLE_METHODS}, got {resample!r}")


def resize_bilinear_tf(pixels: npt.NDArray, height: int, width: int) -> npt.NDArray[np.float32]:
    """Bilinear resize exactly like ``tf.image.resize(..., "bilinear", antialias=False)``.

    Half-pixel centres: output pixel ``o`` samples source coordinate ``(o + 0.5) * in / out - 0.5``
    clamped at 0, interpolating linearly between its two neighbours (edge repeated). No
    antialiasing, so downscaling aliases exactly as big_vision's preprocessing did.

    Args:
        pixels: ``[in_height, in_width, channels]`` (any real dtype).
        height: output height.
        width: output width.

    Returns:
        float32 ``[height, width, channels]`` (not rounded).
    """
    source = np.asarray(pixels)
    if source.ndim == 2:
        source = source[:, :, None]
    channels = source.shape[2]
    rows_low, rows_high, rows_weight = _linear_taps(source.shape[0], height)
    cols_low, cols_high, cols_weight = _linear_taps(source.shape[1], width)
    # Gather the four neighbours in the input dtype on [rows, width * channels] views (cheap),
    # then convert only height x width values; in-place arithmetic avoids temporaries.
    channel_offsets = np.arange(channels)
    flat_low = (cols_low[:, None] * channels + channel_offsets).ravel()
    flat_high = (cols_high[:, None] * channels + channel_offsets).ravel()
    column_weight = np.repeat(cols_weight, channels)[None, :]
    top = source[rows_low].reshape(height, -1)
    bottom = source[rows_high].reshape(height, -1)
    # TF's order: interpolate along x within the top and bottom rows, then along y.
    upper = np.take(top, flat_low, axis=1).astype(np.float32)
    step = np.take(top, flat_high, axis=1).astype(np.float32)
    step -= upper
    step *= column_weight
    upper += step
    lower = np.take(bottom, flat_low, axis=1).astype(np.float32)
    step = np.take(bottom, flat_high, axis=1).astype(np.float32)
    step -= lower
    step *= column_weight
    lower += step
    lower -= upper
    lower *= rows_weight[:, None]
    upper += lower
    resized: npt.NDArray[np.float32] = upper.reshape(height, width, channels)
    return resized


def _linear_taps(
    in_size: int, out_size: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float32]]:
    scale = in_size / out_size
    coordinate = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
    coordinate = np.maximum(coordinate, 0.0)
    low = np.floor(coordinate).astype(np.intp)
    low = np.minimum(low, in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    weight = (coordinate - low).astype(np.float32)
    return low, high, weight


def resize_image(
    image: Image.Image,
    *,
    size: int,
    resample: Resample = "bicubic",
    box: tuple[int, int, int, int] | None = None,
    resize_backend: ResizeBackend = "auto",
) -> npt.NDArray:
    """Squash-resize an RGB image (or the ``box`` region of it) to ``size`` x ``size``.

    Returns uint8 ``[size, size, 3]`` for the Pillow filters and float32 (unrounded, 0..255) for
    ``"bilinear"`` (the big_vision kernel works in float). The Pillow filters run in Pillow or,
    with ``resize_backend="numba"`` (the ``"auto"`` choice when numba is installed), in compiled
    kernels that give the same bytes about 3x faster (see ``siglip_data._resample``).
    """
    _check_resample(resample)
    backend = resolve_backend(resize_backend)
    if resample == "bilinear":
        pixels = np.asarray(image)
        if box is not None:
            left, top, right, bottom = box
            pixels = pixels[top:bottom, left:right]
        return resize_bilinear_tf(pixels, size, size)
    if image.size == (size, size) and box is None:
        return np.asarray(image)
    if backend == "numba" and image.mode == "RGB" and fast_resize_matches_pillow():
        return resize_exact(image, size, size, resample, box)
    pil_filter = Image.Resampling.BICUBIC if resample == "bicubic" else Image.Resampling.BILINEAR
    return np.asarray(image.resize((size, size), pil_filter, box=box))


def preprocess_image(
    image: ImageSource,
    *,
    size: int,
    resample: Resample = "bicubic",
    augmentation: Augmentation | None = None,
    rng: np.random.Generator | None = None,
    dtype: Literal["float32", "uint8"] = "float32",
    jpeg_draft: bool = False,
    resize_backend: ResizeBackend = "auto",
) -> npt.NDArray:
    """Decode and preprocess one image for a fixed-resolution SigLIP model.

    ``pixels = resize(decode(image), size x size) * 2 / 255 - 1``: decode to RGB (EXIF orientation,
    transparency on white), squash-resize to a square (no crop, aspect ratio not kept, as the
    reference), scale [0, 255] to [-1, 1].

    Args:
        image: a PIL image, a path, encoded bytes or a uint8 array (see :func:`decode_image`).
        size: the model's square resolution (224, 256, 384, 512).
        resample: ``"bicubic"`` (Pillow, as HF ``SiglipImageProcessor``), ``"bilinear"``
            (``tf.image.resize`` bilinear without antialias, as big_vision trained the released
            checkpoints) or ``"pil_bilinear"`` (Pillow, as HF SigLIP 2 fixed-res processors).
        augmentation: optional training :class:`Augmentation` (needs ``rng``).
        rng: random generator used by the augmentation.
        dtype: ``"float32"`` for [-1, 1] or ``"uint8"`` for the resized 0..255 pixels (rounded),
            to normalize later on the accelerator.
        jpeg_draft: decode large JPEGs at a reduced scale (still >= ``size``) before resizing:
            2-4x faster on photos, pixels within a few levels of the exact path. Off by default
            (exact parity with the reference); ignored with ``augmentation`` (crops need detail).
        resize_backend: who runs the Pillow filters (``"bicubic"``, ``"pil_bilinear"``):
            ``"pillow"``, ``"numba"`` (compiled kernels, same bytes, about 3x faster; needs
            ``siglip-data[fast]``) or ``"auto"`` (numba when installed).

    Returns:
        ``[size, size, 3]`` float32 in [-1, 1] (or uint8).

    Raises:
        ValueError: bad ``size``, ``resample``, ``dtype`` or ``resize_backend``; augmentation
            without ``rng``.
        ImportError: ``resize_backend="numba"`` without numba installed.
        OSError: undecodable image (see :func:`decode_image`).

    Examples:
        >>> from PIL import Image
        >>> preprocess_image(Image.new("RGB", (64, 48), "white"), size=32).max()
        np.float32(1.0)
    """
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    _check_resample(resample)
    if dtype not in ("float32", "uint8"):
        raise ValueError(f"dtype must be 'float32' or 'uint8', got {dtype!r}")
    if augmentation is not None and rng is None:
        raise ValueError("augmentation needs rng (a numpy Generator), got rng=None")
    resolve_backend(resize_backend)  # a bad name fails before any decoding
    draft_size = int(size) if jpeg_draft and augmentation is None else None
    rgb = decode_image(image, draft_size=draft_size)
    box = None
    flip = False
    if augmentation is not None:
        assert rng is not None
        box = augmentation.crop_box(rgb.width, rgb.height, rng)
        flip = augmentation.flip and bool(rng.random() < 0.5)
    resized = resize_image(
        rgb, size=int(size), resample=resample, box=box, resize_backend=resize_backend
    )
    if flip:
        resized = resized[:, ::-1]
    return scale_pixels(resized, dtype=dtype)


def scale_pixels(
    resized: npt.NDArray, *, dtype: Literal["float32", "uint8"] = "float32"
) -> npt.NDArray:
    """Resized 0..255 pixels (uint8, or float from the ``"bilinear"`` kernel) -> ``dtype``.

    ``"float32"``: [-1, 1] by :func:`normalize_uint8_pixels`'s formula; ``"uint8"``: rounded.
    """
    if dtype == "uint8":
        if resized.dtype == np.uint8:
            contiguous: npt.NDArray = np.ascontiguousarray(resized)
            return contiguous
        rounded: npt.NDArray = np.clip(np.rint(resized), 0, 255).astype(np.uint8)
        return rounded
    if resized.dtype == np.uint8:
        return normalize_uint8_pixels(resized)
    return _to_unit_range(resized)


def normalize_uint8_pixels(
    pixels: npt.NDArray[np.uint8], *, out: npt.NDArray[np.float32] | None = None
) -> npt.NDArray[np.float32]:
    """uint8 pixels -> float32 in [-1, 1]: the package's one uint8 scaling.

    ``float32(x) * float32(2 / 255) - float32(1)``, each operation rounded once in float32, so
    0 -> -1, 255 -> 1 (exactly) and the values equal what ``preprocess_image`` returns for the
    same resized pixels. HF's ``(x / 255 - 0.5) / 0.5`` and big_vision's ``x / 127.5 - 1`` agree
    with it within a few float32 ulps. Use it on batches decoded with ``dtype="uint8"`` (e.g.
    on the accelerator's side of the transfer).

    Args:
        pixels: uint8 ``[..., 3]`` (any shape).
        out: optional float32 array of the same shape to write the result into.

    Returns:
        float32 pixels of the same shape (``out`` when given).

    Raises:
        TypeError: ``pixels`` is not uint8.

    Examples:
        >>> import numpy as np
        >>> normalize_uint8_pixels(np.array([0, 51, 255], dtype=np.uint8))
        array([-1. , -0.6,  1. ], dtype=float32)
    """
    if pixels.dtype != np.uint8:
        raise TypeError(f"pixels must be uint8, got {pixels.dtype}")
    return _to_unit_range(pixels, out=out)


def _to_unit_range(
    values: npt.NDArray, *, out: npt.NDArray[np.float32] | None = None
) -> npt.NDArray[np.float32]:
    # The formula of normalize_uint8_pixels, also applied to the "bilinear" kernel's unrounded
    # float values (big_vision scales those without rounding them first).
    pixels: npt.NDArray[np.float32] = np.multiply(
        values, np.float32(2.0 / 255.0), out=out, dtype=np.float32
    )
    pixels -= np.float32(1.0)
    return pixels
