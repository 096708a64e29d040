"""Pillow's bicubic / bilinear resize, bit for bit, compiled with numba (``siglip-data[fast]``).

HF's SigLIP processors resize with Pillow, so Pillow's integer arithmetic defines the reference
pixels. Pillow runs that arithmetic one pixel and one channel at a time. Here the same arithmetic
runs over whole rows, so LLVM can vectorize it. The steps are Pillow's:

1. Coefficients per output pixel, in float64. The filter support is scaled by the downscale
   factor (antialiasing). Taps are normalized to sum 1, then rounded half away from zero to
   22-bit fixed point.
2. Two separable passes in Pillow's order: horizontal first, except that Pillow 13 starts with
   the vertical pass when the height shrinks by more than twice as many pixels as the width.
   Each output value is ``(2**21 + sum(pixel * coefficient)) >> 22``, clipped to 0..255 and
   stored as uint8 between the passes.

Integer sums do not depend on the order of their terms, so the result equals Pillow's exactly
(``tests/core/test_resample.py`` checks this with hypothesis). Both passes stream along rows: the
horizontal pass works on the transposed image, one uint32 word a pixel. The kernels release the
GIL, so decode threads run them in parallel.

Trust, but verify: the first compiled resize of a process resizes a few probe images with both
Pillow and the kernels. If the installed Pillow is one the kernels do not reproduce (or numba
fails), every resize goes to Pillow itself, with one warning: the pixels never silently differ.
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable
from typing import Any
from typing import Literal

import numpy as np
import numpy.typing as npt
import PIL
from PIL import Image

ResizeBackend = Literal["auto", "pillow", "numba"]
RESIZE_BACKENDS: tuple[str, ...] = ("auto", "pillow", "numba")

# Pillow's 8-bit resampling: 32-bit accumulators, 8 bits of pixel, 2 bits of headroom for the
# negative lobes of the bicubic kernel.
PRECISION_BITS = 22
_SUPPORT = {"bicubic": 2.0, "pil_bilinear": 1.0}
_FAST_EXTRA_HINT = "pip install 'siglip-data[fast]' (it adds numba)"


@functools.cache
def numba_available() -> bool:
    """Whether numba imports, and so whether ``resize_backend="auto"`` uses it (imported lazily)."""
    try:
        import numba  # noqa: F401
    except Exception:  # not installed, or built for another numpy
        return False
    return True


def resolve_backend(backend: str) -> Literal["pillow", "numba"]:
    """``"auto"`` -> ``"numba"`` when numba is installed, else ``"pillow"``; checks the name."""
    if backend not in RESIZE_BACKENDS:
        raise ValueError(f"resize_backend must be one of {RESIZE_BACKENDS}, got {backend!r}")
    if backend == "pillow":
        return "pillow"
    if numba_available():
        return "numba"
    if backend == "numba":
        raise ImportError(f"resize_backend='numba' needs numba: {_FAST_EXTRA_HINT}")
    return "pillow"


def resize_exact(
    image: Image.Image,
    width: int,
    height: int,
    resample: str,
    box: tuple[int, int, int, int] | None = None,
) -> npt.NDArray[np.uint8]:
    """``np.asarray(image.resize((width, height), <filter>, box=box))`` for an RGB image, faster.

    Args:
        image: a loaded ``"RGB"`` Pillow image.
        width: output width.
        height: output height.
        resample: ``"bicubic"`` (``Image.Resampling.BICUBIC``) or ``"pil_bilinear"``
            (``Image.Resampling.BILINEAR``).
        box: optional integer (left, top, right, bottom) source region, as Pillow's ``box``.

    Returns:
        uint8 ``[height, width, 3]``, a new array the caller owns.

    Raises:
        ValueError: not an RGB image, or an unknown ``resample``.
        RuntimeError: the kernels do not reproduce the installed Pillow (see :func:`_probe`).
    """
    if image.mode != "RGB":
        raise ValueError(f"image must be an RGB Pillow image, got mode {image.mode!r}")
    if resample not in _SUPPORT:
        raise ValueError(f"resample must be one of {tuple(_SUPPORT)}, got {resample!r}")
    order, problem = _probe()
    if order is None:
        raise RuntimeError(f"{problem}; use resize_backend='pillow'")
    return _resize(image, width, height, resample, box, order)


def fast_resize_matches_pillow() -> bool:
    """Whether the compiled resize reproduces the installed Pillow (checked once per process).

    When it does not (a future Pillow that changes its resampling, or numba failing to compile),
    the ``"numba"`` and ``"auto"`` backends resize with Pillow, after one warning.
    """
    order, problem = _probe()
    if order is not None:
        return True
    _warn_once(problem)
    return False


@functools.cache
def _warn_once(problem: str) -> None:
    warnings.warn(
        f"{problem}; resizing with Pillow instead (same pixels, slower)",
        RuntimeWarning,
        stacklevel=4,
    )


def _resize(
    image: Image.Image,
    width: int,
    height: int,
    resample: str,
    box: tuple[int, int, int, int] | None,
    order: str,
) -> npt.NDArray[np.uint8]:
    in_width, in_height = image.size
    left, top, right, bottom = (0, 0, in_width, in_height) if box is None else box
    if right - left == width and bottom - top == height:  # Pillow crops instead
        cropped: npt.NDArray[np.uint8] = np.asarray(image)[top:bottom, left:right]
        return cropped
    kernels = _kernels()
    support = _SUPPORT[resample]
    bicubic = resample == "bicubic"
    pixels: npt.NDArray[Any] = np.asarray(image)  # uint8 [in_height, in_width, 3]
    # Pillow's conditions, including the comparison of the box's far edge with the output size.
    need_horizontal = width != in_width or left != 0 or right != width
    need_vertical = height != in_height or top != 0 or bottom != height
    row_bounds, row_weights = kernels.coefficients(
        in_height, *_span(top, bottom), height, support, bicubic
    )

    workspace = _WORKSPACE

    def horizontal(source: npt.NDArray[np.uint8], out: npt.NDArray[np.uint8]) -> None:
        # Transpose [rows, in_width, 3] into RGBX words [in_width, rows], filter those rows, and
        # transpose back: both passes then stream along contiguous rows, which LLVM vectorizes.
        column_bounds, column_weights = kernels.coefficients(
            in_width, *_span(left, right), width, support, bicubic
        )
        num_rows = source.shape[0]
        rows = workspace.array("rows", (in_width, num_rows), np.uint32)
        kernels.transpose_pack(source, rows)
        columns = workspace.array("columns", (width, num_rows), np.uint32)
        kernels.convolve(rows.view(np.uint8), column_bounds, column_weights, columns.view(np.uint8))
        kernels.transpose_unpack(columns, out)

    def vertical(source: npt.NDArray[np.uint8], out: npt.NDArray[np.uint8]) -> None:
        kernels.convolve(
            source.reshape(source.shape[0], -1), row_bounds, row_weights, out.reshape(height, -1)
        )

    # The caller owns the result; scratch arrays are reused by the next call on this thread.
    resized = np.empty((height, width, 3), dtype=np.uint8)
    # Pillow 13 runs the vertical pass first when the height shrinks by more than twice as many
    # pixels as the width; earlier Pillow always starts with the horizontal pass.
    vertical_first = (
        order == "height_first_when_shrinking"
        and in_height > height
        and in_height - height > 2 * (in_width - width)
    )
    if need_horizontal and need_vertical:
        if vertical_first:
            middle = workspace.array("middle", (height, in_width, 3), np.uint8)
            vertical(pixels, middle)
            horizontal(middle, resized)
        else:
            # Only the rows the vertical pass reads, as Pillow.
            first = int(row_bounds[0, 0])
            last = int(row_bounds[-1, 0] + row_bounds[-1, 1])
            middle = workspace.array("middle", (last - first, width, 3), np.uint8)
            horizontal(pixels[first:last], middle)
            row_bounds[:, 0] -= first
            vertical(middle, resized)
    elif need_horizontal:
        horizontal(pixels, resized)
    elif need_vertical:
        vertical(pixels, resized)
    else:
        np.copyto(resized, pixels)
    return resized


class _Workspace(threading.local):
    """Scratch buffers reused across calls on one thread (decode threads each get their own).

    Fresh multi-megabyte arrays are mapped anew on every call and pay a page fault per 4 KiB:
    on the reference machine that made a 480 x 400 resize 2.5x slower. Pillow avoids it with its
    own block cache; reusing these buffers does the same here.
    """

    MAX_BYTES = 32 << 20  # larger images allocate per call instead of pinning the memory

    def __init__(self) -> None:
        self.buffers: dict[str, npt.NDArray[np.uint8]] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype: type[Any]) -> npt.NDArray[Any]:
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if size > self.MAX_BYTES:
            return np.empty(shape, dtype=dtype)
        buffer = self.buffers.get(name)
        if buffer is None or buffer.size < size:
            buffer = np.empty(size, dtype=np.uint8)
            self.buffers[name] = buffer
        view: npt.NDArray[Any] = buffer[:size].view(dtype).reshape(shape)
        return view


_WORKSPACE = _Workspace()


def _span(start: int, stop: int) -> tuple[float, float]:
    """Pillow's box edges are float32 and their difference is taken in float32."""
    low = np.float32(start)
    return float(low), float(np.float32(stop) - low)


# (input size, output size, box) where the two pass orders give different pixels.
_PROBES: tuple[tuple[tuple[int, int], tuple[int, int], tuple[int, int, int, int] | None], ...] = (
    ((50, 60), (40, 30), None),  # height shrinks by 30 > 2 * 10: vertical first in Pillow 13
    ((60, 50), (30, 40), None),  # width shrinks more: horizontal first in every Pillow
    ((71, 209), (19, 84), None),  # both shrink, the height by 125 > 2 * 52: vertical first
    # With this box the height shrinks by 40 and the width grows by 40, but Pillow 13 compares
    # the image's size (40 vs 2 * 20, not more): horizontal first.
    ((100, 60), (80, 20), (0, 0, 40, 60)),
)


@functools.cache
def _probe() -> tuple[str | None, str]:
    """Which pass order the installed Pillow uses, found by resizing a few probe images.

    Returns ``("horizontal_first", "")`` (Pillow < 13), ``("height_first_when_shrinking", "")``
    (Pillow 13), or ``(None, why)`` when the kernels reproduce neither or do not run.
    """
    rng = np.random.default_rng(0)
    probes = [
        (Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)), out, box)
        for size, out, box in _PROBES
    ]
    try:
        for order in ("height_first_when_shrinking", "horizontal_first"):
            if all(
                np.array_equal(
                    _resize(image, *out, resample, box, order),
                    np.asarray(image.resize(out, _PILLOW_FILTERS[resample], box=box)),
                )
                for image, out, box in probes
                for resample in _SUPPORT
            ):
                return order, ""
    except Exception as error:  # numba missing or failing to compile: Pillow does the work
        return None, f"siglip-data's compiled resize failed ({type(error).__name__}: {error})"
    return None, f"siglip-data's compiled resize does not reproduce Pillow {PIL.__version__}"


_PILLOW_FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "pil_bilinear": Image.Resampling.BILINEAR,
}


class _Kernels:
    coefficients: Callable[..., tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]]
    convolve: Callable[..., None]
    transpose_pack: Callable[..., None]
    transpose_unpack: Callable[..., None]


@functools.cache
def _kernels() -> _Kernels:
    """Compile (or load from numba's cache) the kernels, once per process."""
    if not numba_available():
        raise ImportError(f"the numba resize backend needs numba: {_FAST_EXTRA_HINT}")
    import numba

    def jit(function: Callable[..., Any]) -> Any:
        try:
            return numba.njit(nogil=True, cache=True)(function)
        except RuntimeError:  # no writable cache directory: compile in memory each process
            return numba.njit(nogil=True)(function)

    kernels = _Kernels()
    kernels.coefficients = jit(_coefficients)
    kernels.convolve = jit(_convolve)
    kernels.transpose_pack = jit(_transpose_pack)
    kernels.transpose_unpack = jit(_transpose_unpack)
    return kernels


# The kernels below are compiled by numba; they are plain Python and numpy too, so they
# also run (slowly) uncompiled. numba does not fuse a multiply and an add into one FMA unless asked
# (fastmath), so the float64 coefficient arithmetic rounds exactly as Pillow's C does.


def _coefficients(
    in_size: int, start: float, extent: float, out_size: int, support: float, bicubic: bool
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """Per output pixel: (first source pixel, tap count) and the 22-bit fixed-point taps."""
    scale = extent / out_size
    filter_scale = scale if scale > 1.0 else 1.0
    support = support * filter_scale
    num_taps = int(np.ceil(support)) * 2 + 1
    inverse = 1.0 / filter_scale
    bounds = np.zeros((out_size, 2), dtype=np.int64)
    weights = np.zeros((out_size, num_taps), dtype=np.int32)
    taps = np.zeros(num_taps, dtype=np.float64)
    one = float(1 << PRECISION_BITS)
    for out in range(out_size):
        center = start + (out + 0.5) * scale
        low = int(center - support + 0.5)  # truncation towards zero, as C's (int)
        if low < 0:
            low = 0
        high = int(center + support + 0.5)
        if high > in_size:
            high = in_size
        count = high - low
        total = 0.0
        for tap in range(count):
            x = abs((tap + low - center + 0.5) * inverse)
            if bicubic:  # Keys' cubic convolution, a = -0.5, as Pillow writes it
                if x < 1.0:
                    value = (1.5 * x - 2.5) * x * x + 1
                elif x < 2.0:
                    value = (((x - 5) * x + 8) * x - 4) * -0.5
                else:
                    value = 0.0
            else:
                value = 1.0 - x if x < 1.0 else 0.0
            taps[tap] = value
            total += value
        for tap in range(count):
            value = taps[tap] / total if total != 0.0 else taps[tap]
            # Round half away from zero, then truncate, as Pillow's normalize_coeffs_8bpc.
            weights[out, tap] = int(-0.5 + value * one) if value < 0 else int(0.5 + value * one)
        bounds[out, 0] = low
        bounds[out, 1] = count
    return bounds, weights


def _convolve(
    source: npt.NDArray[np.uint8],
    bounds: npt.NDArray[np.int64],
    weights: npt.NDArray[np.int32],
    out: npt.NDArray[np.uint8],
) -> None:
    """``out[o] = clip((2**21 + sum_t source[bounds[o, 0] + t] * weights[o, t]) >> 22)``, by row."""
    num_out, width = out.shape
    accumulator = np.empty(width, dtype=np.int32)
    half = np.int32(1 << (PRECISION_BITS - 1))
    for row in range(num_out):
        accumulator[:] = half
        low = bounds[row, 0]
        for tap in range(bounds[row, 1]):
            weight = weights[row, tap]
            line = source[low + tap]
            for i in range(width):
                accumulator[i] += np.int32(line[i]) * weight
        target = out[row]
        for i in range(width):
            value = accumulator[i] >> PRECISION_BITS
            target[i] = 0 if value < 0 else (255 if value > 255 else value)


def _transpose_pack(source: npt.NDArray[np.uint8], out: npt.NDArray[np.uint32]) -> None:
    """``out[x, y]`` = the RGB pixel ``source[y, x]`` as one word ``R | G << 8 | B << 16``.

    Works in 32 x 32 tiles; the inner loop runs down a source column, so writes are contiguous.
    """
    rows, columns = source.shape[0], source.shape[1]
    tile = 32
    for row_start in range(0, rows, tile):
        row_stop = min(row_start + tile, rows)
        for column_start in range(0, columns, tile):
            column_stop = min(column_start + tile, columns)
            for column in range(column_start, column_stop):
                target = out[column]
                for row in range(row_start, row_stop):
                    pixel = source[row, column]
                    target[row] = (
                        np.uint32(pixel[0])
                        | (np.uint32(pixel[1]) << np.uint32(8))
                        | (np.uint32(pixel[2]) << np.uint32(16))
                    )


def _transpose_unpack(source: npt.NDArray[np.uint32], out: npt.NDArray[np.uint8]) -> None:
    """The inverse of :func:`_transpose_pack`: words ``[x, y]`` -> RGB bytes ``out[y, x]``."""
    rows, columns = source.shape
    tile = 32
    for row_start in range(0, rows, tile):
        row_stop = min(row_start + tile, rows)
        for column_start in range(0, columns, tile):
            column_stop = min(column_start + tile, columns)
            for column in range(column_start, column_stop):
                target = out[column]
                for row in range(row_start, row_stop):
                    word = source[row, column]
                    pixel = target[row]
                    pixel[0] = word & np.uint32(0xFF)
                    pixel[1] = (word >> np.uint32(8)) & np.uint32(0xFF)
                    pixel[2] = (word >> np.uint32(16)) & np.uint32(0xFF)
