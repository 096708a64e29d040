"""Boxes as quantised integer text and the LocCa task prompts (SigLIP 2's decoder targets).

LocCa (arXiv:2403.19596) writes a box as integer coordinate strings tokenised with the ordinary
text tokenizer. The papers do not give the quantisation; ours is ``bins`` equal bins per axis
(default 100), a box written ``"x0 y0 x1 y1"`` (left, top, right, bottom; right and bottom
exclusive), decoded to the bin centres.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

TASK_PREFIXES: dict[str, str] = {"cap": "Cap:", "aref": "ARef:", "gcap": "GCap:"}
"""The LocCa task prefixes: captioning, referring expression (name -> box), grounded captioning
(box -> name)."""

DEFAULT_BOX_BINS = 100
_INTEGER = re.compile(r"-?\d+")


def check_box(box: Sequence[float], *, image_size: int) -> tuple[float, float, float, float]:
    """Check that ``box = (x0, y0, x1, y1)`` lies inside an ``image_size`` square canvas.

    Raises:
        ValueError: not four numbers, an empty box (``x1 <= x0`` or ``y1 <= y0``), or a corner
            outside ``[0, image_size]``.

    Examples:
        >>> check_box([4, 8, 20, 30], image_size=64)
        (4.0, 8.0, 20.0, 30.0)
    """
    if len(box) != 4:
        raise ValueError(f"a box is (x0, y0, x1, y1), got {len(box)} numbers: {list(box)}")
    x0, y0, x1, y1 = (float(value) for value in box)
    if not all(math.isfinite(value) for value in (x0, y0, x1, y1)):
        raise ValueError(f"box {list(box)} has a non-finite coordinate")
    if min(x0, y0) < 0 or max(x1, y1) > image_size:
        raise ValueError(
            f"box {list(box)} lies outside the {image_size}x{image_size} canvas "
            f"(every coordinate must be in [0, {image_size}])"
        )
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {list(box)} is empty: need x0 < x1 and y0 < y1")
    return x0, y0, x1, y1


def box_to_text(box: Sequence[float], *, image_size: int, bins: int = DEFAULT_BOX_BINS) -> str:
    """A pixel box as quantised integer text: ``"x0 y0 x1 y1"``, each in ``[0, bins - 1]``.

    ``q = min(bins - 1, floor(coordinate / image_size * bins))``.

    Args:
        box: ``(x0, y0, x1, y1)`` in pixels of a square ``image_size`` canvas (right and
            bottom exclusive).
        image_size: the canvas side in pixels.
        bins: quantisation bins per axis.

    Returns:
        Four integers separated by spaces.

    Raises:
        ValueError: the box lies outside the canvas or is empty (see :func:`check_box`), or
            ``bins < 2``.

    Examples:
        >>> box_to_text([4, 8, 20, 30], image_size=64)
        '6 12 31 46'
        >>> text_to_box("6 12 31 46", image_size=64)
        (4.16, 8.0, 20.16, 29.76)
    """
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    coordinates = check_box(box, image_size=image_size)
    quantised = [min(bins - 1, math.floor(value / image_size * bins)) for value in coordinates]
    return " ".join(str(value) for value in quantised)


def text_to_box(
    text: str, *, image_size: int, bins: int = DEFAULT_BOX_BINS
) -> tuple[float, float, float, float]:
    """Parse ``"x0 y0 x1 y1"`` quantised text back to a pixel box (bin centres).

    Args:
        text: the first four integers found are used (generated text may carry more).
        image_size: the canvas side in pixels.
        bins: quantisation bins per axis.

    Returns:
        ``(x0, y0, x1, y1)`` in pixels, ``(q + 0.5) * image_size / bins``.

    Raises:
        ValueError: fewer than four integers, or one outside ``[0, bins - 1]``.
    """
    values = [int(match) for match in _INTEGER.findall(text)[:4]]
    if len(values) < 4:
        raise ValueError(f"expected four integers 'x0 y0 x1 y1' in {text!r}")
    if any(not 0 <= value < bins for value in values):
        raise ValueError(f"box text {text!r} has a value outside [0, {bins - 1}]")
    x0, y0, x1, y1 = ((value + 0.5) * image_size / bins for value in values)
    return (round(x0, 6), round(y0, 6), round(x1, 6), round(y1, 6))


def box_iou(first: Sequence[float], second: Sequence[float]) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes (0 when disjoint).

    Examples:
        >>> box_iou([0, 0, 10, 10], [5, 0, 15, 10])
        0.3333333333333333
    """
    width = max(0.0, min(first[2], second[2]) - max(first[0], second[0]))
    height = max(0.0, min(first[3], second[3]) - max(first[1], second[1]))
    intersection = width * height
    area = (first[2] - first[0]) * (first[3] - first[1])
    area += (second[2] - second[0]) * (second[3] - second[1])
    union = area - intersection
    return float(intersection / union) if union > 0 else 0.0


def locca_prompts(
    caption: str,
    name: str,
    box: Sequence[float],
    *,
    image_size: int,
    bins: int = DEFAULT_BOX_BINS,
) -> dict[str, tuple[str, str]]:
    """The three LocCa decoder targets of one scene as ``task -> (prefix, target)``.

    - ``cap``: ``("Cap:", caption)``;
    - ``aref``: ``("ARef: {name} :", "{box}")`` (name -> box);
    - ``gcap``: ``("GCap: {box} :", name)`` (box -> name).

    The decoder loss covers the target only (what follows the prefix). Where the prefix ends
    for the region tasks (after the conditioning, not after the task word) is our choice; the
    papers say "loss on everything after the task prefix".

    Args:
        caption: the scene caption.
        name: one object's name.
        box: that object's ``(x0, y0, x1, y1)`` pixel box.
        image_size: the canvas side in pixels.
        bins: box quantisation bins per axis.

    Returns:
        ``{"cap": (prefix, target), "aref": ..., "gcap": ...}``.

    Raises:
        ValueError: the box lies outside the canvas (see :func:`check_box`).

    Examples:
        >>> prompts = locca_prompts("a cat face", "cat face", [0, 0, 32, 32], image_size=64)
        >>> prompts["aref"]
        ('ARef: cat face :', '0 0 50 50')
        >>> prompts["gcap"]
        ('GCap: 0 0 50 50 :', 'cat face')
    """
    box_text = box_to_text(box, image_size=image_size, bins=bins)
    return {
        "cap": (TASK_PREFIXES["cap"], caption),
        "aref": (f"{TASK_PREFIXES['aref']} {name} :", box_text),
        "gcap": (f"{TASK_PREFIXES['gcap']} {box_text} :", name),
    }
