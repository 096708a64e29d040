"""Several captions per image: one batch row per (image, caption), with the image's key.

A sample's captions are ``metadata["captions"]`` (a list of strings, as COCO-style shards store
them) when present, else its one caption. ``captions_per_image="all"`` turns a sample into one row
per caption; an int ``k`` into exactly ``k`` rows (``k`` captions drawn without replacement, or all
of them and then repeats when there are fewer than ``k``), so the batch has a fixed size. Each row
repeats the image's pixels and carries the image key as ``group_key``: a multi-positive loss (the
sigmoid loss with group ids, ``siglip-train``'s ``loss.positives="group_key"``) then counts the
other captions of the same image as positives instead of negatives.
"""

from __future__ import annotations

import zlib
from typing import Any
from typing import Literal

import numpy as np

CaptionsPerImage = int | Literal["all"] | None
CAPTIONS_FIELD = "captions"
"""The metadata field that holds a sample's captions (a list of strings)."""


def check_captions_per_image(value: Any) -> CaptionsPerImage:
    """Return ``value`` once checked to be None, ``"all"`` or an int >= 1.

    Raises:
        ValueError: any other value.
    """
    if value is None or value == "all":
        return value  # type: ignore[no-any-return]
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"captions_per_image must be None, 'all' or an int >= 1, got {value!r}")
    return int(value)


def sample_captions(caption: str, metadata: dict[str, Any] | None) -> list[str] | None:
    """A sample's captions: ``metadata["captions"]`` if given, else ``[caption]``.

    Returns:
        The non-empty captions, or None when ``metadata["captions"]`` is not a list of strings
        with at least one non-blank entry (the sample is then a ``bad_caption``).
    """
    if not metadata or CAPTIONS_FIELD not in metadata:
        return [caption]
    captions = metadata[CAPTIONS_FIELD]
    if not isinstance(captions, list) or not all(isinstance(text, str) for text in captions):
        return None
    kept = [text for text in captions if text.strip()]
    return kept or None


def choose_captions(
    captions: list[str], per_image: int | Literal["all"], rng: np.random.Generator
) -> list[str]:
    """``per_image`` captions of one image: all of them, or ``k`` drawn (repeats only if needed).

    Examples:
        >>> import numpy as np
        >>> choose_captions(["a", "b", "c"], "all", np.random.default_rng(0))
        ['a', 'b', 'c']
        >>> len(choose_captions(["a", "b"], 5, np.random.default_rng(0)))
        5
    """
    if per_image == "all":
        return list(captions)
    if per_image <= len(captions):
        chosen = rng.choice(len(captions), size=per_image, replace=False)
    else:
        extra = rng.choice(len(captions), size=per_image - len(captions), replace=True)
        chosen = np.concatenate([rng.permutation(len(captions)), extra])
    return [captions[index] for index in chosen]


def caption_rng(seed: int, epoch: int, key: str) -> np.random.Generator:
    """The generator of one image's caption draw: a pure function of (seed, epoch, key), so a
    resumed stream draws the same captions and another epoch draws others."""
    return np.random.default_rng([seed, epoch, zlib.crc32(key.encode("utf-8")), 3])
