"""Seeded augmentation of whole uint8 batches held in memory (numpy only).

Random resized crop, horizontal flip where the caller allows it, colour jitter (brightness,
contrast, saturation), grayscale and background variation (images with an alpha channel are
composited onto a random plain colour or gradient instead of white). Batch ``step`` of a run is a
pure function of ``(seed, step)``: a loader that stores its step in its resume state resumes the
augmentation exactly, and two ranks that draw the same global batch augment it identically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import numpy.typing as npt

# Mixed into the seed so that augmentation draws differ from a loader's sampling draws.
_STREAM = 0x5EED_A06


@dataclasses.dataclass(frozen=True)
class BatchAugmentation:
    """What :func:`augment_batch` does; every field has a neutral value that turns it off.

    Attributes:
        crop_scale: (min, max) fraction of the image area a random crop keeps ((1, 1): none).
        crop_ratio: (min, max) aspect ratio (width / height) of the crop, log-uniform.
        flip: mirror each allowed image with probability 0.5.
        brightness: multiply pixel values by a factor in [1 - brightness, 1 + brightness].
        contrast: scale around the image mean by a factor in [1 - contrast, 1 + contrast].
        saturation: blend with the gray image by a factor in [1 - saturation, 1 + saturation].
        grayscale: probability of turning the image gray (after the jitter).
        background: probability that a transparent background becomes a random plain colour or
            vertical gradient instead of white.
    """

    crop_scale: tuple[float, float] = (0.6, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.4
    grayscale: float = 0.15
    background: float = 0.5

    def __post_init__(self) -> None:
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {self.crop_scale}")
        low, high = self.crop_ratio
        if not 0.0 < low <= high:
            raise ValueError(f"crop_ratio must satisfy 0 < min <= max, got {self.crop_ratio}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("grayscale", "background"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)}")

    @classmethod
    def off(cls) -> BatchAugmentation:
        """The neutral augmentation: :func:`augment_batch` only composites onto white."""
        return cls(
            crop_scale=(1.0, 1.0),
            crop_ratio=(1.0, 1.0),
            flip=False,
            brightness=0.0,
            contrast=0.0,
            saturation=0.0,
            grayscale=0.0,
            background=0.0,
        )

    def fingerprint(self) -> str:
        """A short hash of the fields (a loader's resume state records it)."""
        payload = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _crop_boxes(
    config: BatchAugmentation, count: int, height: int, width: int, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """``[count, 4]`` (top, left, crop_height, crop_width), each inside the image."""
    area = rng.uniform(*config.crop_scale, size=count) * height * width
    low_ratio, high_ratio = config.crop_ratio
    aspect = np.exp(rng.uniform(np.log(low_ratio), np.log(high_ratio), size=count))
    crop_width = np.minimum(np.sqrt(area * aspect), width)
    crop_height = np.minimum(np.sqrt(area / aspect), height)
    top = rng.uniform(0.0, 1.0, size=count) * (height - crop_height)
    left = rng.uniform(0.0, 1.0, size=count) * (width - crop_width)
    return np.stack([top, left, crop_height, crop_width], axis=1)


def _resample(
    images: npt.NDArray[np.float32], boxes: npt.NDArray[np.float64]
) -> npt.NDArray[np.float32]:
    """Bilinear resize of each image's box back to the full ``[height, width]``."""
    count, height, width, _ = images.shape
    top, left, crop_height, crop_width = boxes.T
    rows = top[:, None] + (np.arange(height) + 0.5)[None, :] * (crop_height / height)[:, None] - 0.5
    cols = left[:, None] + (np.arange(width) + 0.5)[None, :] * (crop_width / width)[:, None] - 0.5
    rows = np.clip(rows, 0, height - 1)
    cols = np.clip(cols, 0, width - 1)
    row0 = np.floor(rows).astype(np.int64)
    col0 = np.floor(cols).astype(np.int64)
    row1 = np.minimum(row0 + 1, height - 1)
    col1 = np.minimum(col0 + 1, width - 1)
    row_weight = (rows - row0)[:, :, None, None].astype(np.float32)
    col_weight = (cols - col0)[:, None, :, None].astype(np.float32)
    batch = np.arange(count)[:, None, None]

    def gather(r: npt.NDArray[np.int64], c: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return images[batch, r[:, :, None], c[:, None, :]]

    upper = gather(row0, col0) * (1 - col_weight) + gather(row0, col1) * col_weight
    lower = gather(row1, col0) * (1 - col_weight) + gather(row1, col1) * col_weight
    resampled: npt.NDArray[np.float32] = upper * (1 - row_weight) + lower * row_weight
    return resampled


def _backgrounds(
    config: BatchAugmentation, count: int, height: int, width: int, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """``[count, height, width, 3]`` in [0, 1]: white, or a random colour / vertical gradient."""
    varied = rng.random(size=count) < config.background
    gradient = rng.random(size=count) < 0.5
    first = rng.uniform(0.0, 1.0, size=(count, 3))
    second = rng.uniform(0.0, 1.0, size=(count, 3))
    ramp = np.linspace(0.0, 1.0, height)[None, :, None]
    colours = np.where(
        gradient[:, None, None],
        first[:, None, :] * (1 - ramp) + second[:, None, :] * ramp,
        first[:, None, :],
    )
    colours = np.where(varied[:, None, None], colours, 1.0)
    return np.broadcast_to(colours[:, :, None, :], (count, height, width, 3)).astype(np.float32)


def augment_batch(
    pixels: npt.NDArray[np.uint8],
    *,
    config: BatchAugmentation,
    seed: int,
    step: int,
    flippable: npt.NDArray[np.bool_] | None = None,
) -> npt.NDArray[np.uint8]:
    """Augment a batch of uint8 images; batch ``step`` of ``seed`` always comes out the same.

    Steps, per image: random resized crop (``crop_scale``, ``crop_ratio``; bilinear), mirror
    (``flip``, only where ``flippable``), brightness / contrast / saturation jitter, grayscale
    with probability ``grayscale``, then, for RGBA input, compositing
    ``rgb * alpha + background * (1 - alpha)`` onto white or, with probability ``background``, a
    random plain colour or vertical gradient. ``BatchAugmentation.off()`` leaves only the
    composite onto white (what evaluation sees).

    Args:
        pixels: ``[batch, height, width, channels]`` uint8, channels 3 (RGB) or 4 (RGBA).
        config: what to do.
        seed: the run's data seed.
        step: the batch number (the loader's resume state).
        flippable: ``[batch]`` bool, whether mirroring keeps each image's meaning (default: all).

    Returns:
        ``[batch, height, width, 3]`` uint8.

    Raises:
        ValueError: ``pixels`` is not uint8 ``[batch, height, width, 3|4]``, or ``flippable``
            has another length.

    Examples:
        >>> import numpy as np
        >>> from siglip_data.augment import BatchAugmentation, augment_batch
        >>> rgba = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 4), dtype=np.uint8)
        >>> first = augment_batch(rgba, config=BatchAugmentation(), seed=0, step=3)
        >>> (
        ...     first.shape,
        ...     bool(
        ...         (first == augment_batch(rgba, config=BatchAugmentation(), seed=0, step=3)).all()
        ...     ),
        ... )
        ((2, 8, 8, 3), True)
    """
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] not in (3, 4):
        raise ValueError(
            f"pixels must be uint8 [batch, height, width, 3|4], got {pixels.dtype} {pixels.shape}"
        )
    count, height, width, channels = (int(side) for side in pixels.shape)
    if flippable is not None and len(flippable) != count:
        raise ValueError(f"flippable has {len(flippable)} entries for {count} images")
    rng = np.random.default_rng([_STREAM, seed, step])
    images = pixels.astype(np.float32) / 255.0
    if channels == 4:  # premultiplied, so that resampling does not bleed hidden colours
        images[..., :3] *= images[..., 3:]
    if config.crop_scale != (1.0, 1.0) or config.crop_ratio != (1.0, 1.0):
        images = _resample(images, _crop_boxes(config, count, height, width, rng))
    if config.flip:
        mirror = rng.random(size=count) < 0.5
        if flippable is not None:
            mirror &= np.asarray(flippable, dtype=bool)
        images[mirror] = images[mirror, :, ::-1]
    colour = images[..., :3]
    alpha = images[..., 3:] if channels == 4 else np.ones_like(colour[..., :1])
    gray_weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if config.brightness:
        colour = colour * rng.uniform(1 - config.brightness, 1 + config.brightness, size=count)[
            :, None, None, None
        ].astype(np.float32)
    if config.contrast:
        factor = rng.uniform(1 - config.contrast, 1 + config.contrast, size=count).astype(
            np.float32
        )
        # The mean over the drawn pixels only, so that a transparent border does not count.
        mean = (colour @ gray_weights).sum(axis=(1, 2)) / np.maximum(alpha.sum(axis=(1, 2, 3)), 1)
        colour = (colour - mean[:, None, None, None] * alpha) * factor[:, None, None, None] + mean[
            :, None, None, None
        ] * alpha
    if config.saturation:
        factor = rng.uniform(1 - config.saturation, 1 + config.saturation, size=count).astype(
            np.float32
        )
        gray = (colour @ gray_weights)[..., None]
        colour = gray + (colour - gray) * factor[:, None, None, None]
    if config.grayscale:
        turn_gray = rng.random(size=count) < config.grayscale
        gray = np.repeat((colour @ gray_weights)[..., None], 3, axis=-1)
        colour = np.where(turn_gray[:, None, None, None], gray, colour)
    colour = np.clip(colour, 0.0, alpha)
    background = _backgrounds(config, count, height, width, rng)
    composite = colour + background * (1.0 - alpha)
    result: npt.NDArray[np.uint8] = np.clip(np.rint(composite * 255.0), 0, 255).astype(np.uint8)
    return result
