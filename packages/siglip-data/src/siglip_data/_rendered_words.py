"""Rendered words: English words and short phrases drawn in DejaVu fonts at their natural aspect ratio.

A real, offline dataset where aspect ratio matters: every image is one line of text, a fixed
height (24 pixels by default) and as wide as the text, so a square resize squashes the letters
and a NaFlex resize keeps them. The words come from Debian's ``wamerican`` list
(``/usr/share/dict/american-english``: lowercase ASCII words of 3 to 12 letters), the fonts from
``fonts-dejavu-core`` (six faces: Sans, Serif and Mono, regular and bold). The caption is the
text itself; ``heldout`` holds words never seen in ``train`` (split by a hash of the word), and
its phrases are made of held-out words only.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from siglip_data._atomic import atomic_write_text
from siglip_data._builders import DEJAVU_CORE_FONTS
from siglip_data._builders import WORD_LIST
from siglip_data._builders import DatasetInfo
from siglip_data._builders import check_debian_packages
from siglip_data._builders import write_split

RENDERED_WORDS_HELDOUT_PERCENT = 10
RENDERED_WORDS_TEMPLATES: tuple[str, ...] = ("{}",)
_WORD = re.compile(r"[a-z]{3,12}")


def read_word_list(path: str | os.PathLike[str] = WORD_LIST) -> list[str]:
    """The lowercase ASCII words of 3 to 12 letters in a word list (one word a line), sorted.

    Proper nouns (capitalised), possessives (``'s``) and accented words are left out.
    """
    with open(path, encoding="utf-8", errors="replace") as handle:
        words = {line.strip() for line in handle if _WORD.fullmatch(line.strip())}
    return sorted(words)


def word_split(word: str, heldout_percent: int = RENDERED_WORDS_HELDOUT_PERCENT) -> str:
    """``"train"`` or ``"heldout"`` from a stable hash (SHA-256) of the word."""
    digest = hashlib.sha256(word.encode("utf-8")).digest()
    return "heldout" if int.from_bytes(digest[:8], "big") % 100 < heldout_percent else "train"


def render_text(
    text: str,
    font: ImageFont.FreeTypeFont,
    *,
    height: int,
    ink: int = 0,
    paper: int = 255,
) -> Image.Image:
    """One line of text, ``height`` pixels high and as wide as the text (plus a small margin).

    The font size is ``round(0.75 * height)``; the text is centred vertically on its ascent and
    descent, so every word of a font sits on the same baseline.
    """
    ascent, descent = font.getmetrics()
    margin = max(1, height // 6)
    width = int(np.ceil(font.getlength(text))) + 2 * margin
    image = Image.new("L", (width, height), paper)
    top = (height - (ascent + descent)) // 2
    ImageDraw.Draw(image).text((margin, top), text, font=font, fill=ink)
    return image.convert("RGB")


def build_rendered_words(
    output_dir: str | os.PathLike[str],
    *,
    image_size: int = 24,
    samples_per_shard: int = 2000,
    limit: int | None = None,
    heldout_percent: int = RENDERED_WORDS_HELDOUT_PERCENT,
    phrase_fraction: float = 0.25,
    seed: int = 0,
) -> DatasetInfo:
    """Render words and two-word phrases into ``train`` / ``heldout`` shards, caption = the text.

    Each split holds every word of its split once (in a seeded order) plus
    ``phrase_fraction`` as many two-word phrases of its own words; each sample gets a seeded
    DejaVu face and a dark ink on a light paper. Metadata per sample: ``{"text", "font",
    "words", "split"}``. Images are RGB PNGs ``image_size`` pixels high, as wide as the text
    (about 60 to 250 pixels for one word at 24).

    Args:
        output_dir: where to write ``train/``, ``heldout/`` and ``dataset.json``.
        image_size: the image height in pixels (the font size is three quarters of it).
        samples_per_shard: samples per tar shard.
        limit: write at most ``limit`` samples per split (fast tests and demos).
        heldout_percent: percent of the words held out (by a hash of the word).
        phrase_fraction: two-word phrases per single word.
        seed: the seed of the order, the phrases, the faces and the colours.

    Returns:
        The :class:`~siglip_data.builders.DatasetInfo` (also written to ``dataset.json``); it
        has no classes (a retrieval dataset) and ``image_size`` is the height.

    Raises:
        MissingDebianPackageError: ``wamerican`` or ``fonts-dejavu-core`` is not installed.
        ValueError: a bad ``image_size``, ``limit`` or ``phrase_fraction``.
    """
    check_debian_packages("rendered-words")
    if image_size < 8:
        raise ValueError(f"image_size (the text height) must be >= 8, got {image_size}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    if not 0.0 <= phrase_fraction <= 10.0:
        raise ValueError(f"phrase_fraction must be in [0, 10], got {phrase_fraction}")
    from siglip_data import _builders  # read at call time, so tests can point it elsewhere

    words = read_word_list(_builders.WORD_LIST)
    size = round(0.75 * image_size)
    fonts = [
        ImageFont.truetype(str(_builders.DEJAVU_DIR / name), size) for name in DEJAVU_CORE_FONTS
    ]

    def texts(split: str) -> list[str]:
        own = [word for word in words if word_split(word, heldout_percent) == split]
        rng = np.random.default_rng([seed, 0 if split == "train" else 1])
        order = [own[index] for index in rng.permutation(len(own))]
        phrases = [
            f"{own[first]} {own[second]}"
            for first, second in rng.integers(0, len(own), (int(phrase_fraction * len(own)), 2))
        ]
        mixed = order + phrases
        mixed = [mixed[index] for index in rng.permutation(len(mixed))]
        return mixed if limit is None else mixed[:limit]

    def samples(split: str) -> Iterator[tuple[str, Image.Image, str, dict[str, Any]]]:
        rng = np.random.default_rng([seed, 2 if split == "train" else 3])
        for index, text in enumerate(texts(split)):
            face = int(rng.integers(len(fonts)))
            ink, paper = int(rng.integers(0, 90)), int(rng.integers(180, 256))
            image = render_text(text, fonts[face], height=image_size, ink=ink, paper=paper)
            metadata = {
                "text": text,
                "font": DEJAVU_CORE_FONTS[face],
                "words": len(text.split()),
                "split": split,
            }
            yield f"{split}{index:06d}", image, text, metadata

    splits = {
        split: write_split(Path(output_dir) / split, samples(split), samples_per_shard)
        for split in ("train", "heldout")
    }
    info = DatasetInfo(
        name="rendered-words",
        splits=splits,
        class_names=(),
        caption_names=(),
        caption_templates=RENDERED_WORDS_TEMPLATES,
        image_size=image_size,
        label_key="",
    )
    atomic_write_text(Path(output_dir) / "dataset.json", info.to_json())
    return info
