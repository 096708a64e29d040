"""Noto emoji captioned with their CLDR names in many languages, written in the XM3600 layout.

CLDR (Debian ``unicode-cldr-core``, release 41) names every emoji in each of its locales:
``annotations/<locale>.xml`` holds the short name (``type="tts"``: "grinsendes Gesicht") and the
keywords of single emoji, ``annotationsDerived/<locale>.xml`` those of sequences (skin tones, flags,
families). The dataset renders the fully-qualified emoji of ``emoji-test.txt`` like
:func:`~siglip_data.builders.build_emoji` and captions each with, per language, its CLDR name and
(when different) its keywords joined by commas: about two captions per image and language, as
Crossmodal-3600 has. The train / held-out split is the English builder's (a hash of the base name).

Each split is written as Crossmodal-3600 is distributed: ``<split>/captions.jsonl``, one line per
image ``{"image/key", "image/locale", "<language>": {"caption": [...]}, ...}``, and the image
``<split>/images/<key>.jpg``; so one reader (``siglip_eval.datasets.xm3600``) serves both.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import json
import os
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path

from PIL import Image
from PIL import ImageFont

from siglip_data import _builders
from siglip_data._atomic import atomic_directory
from siglip_data._atomic import atomic_write_text

# Crossmodal-3600's 36 languages, in its order (big_vision's XM3600_LANGUAGES, CLIP_benchmark's
# SUPPORTED_LANGUAGES).
XM3600_LANGUAGES: tuple[str, ...] = (
    "ar", "bn", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fil", "fr", "he", "hi", "hr",
    "hu", "id", "it", "ja", "ko", "mi", "nl", "no", "pl", "pt", "quz", "ro", "ru", "sv", "sw",
    "te", "th", "tr", "uk", "vi", "zh",
)  # fmt: skip
# An emoji image has no region it was chosen for (XM3600's image/locale): BCP 47 "undetermined".
IMAGE_LOCALE = "und"
# CLDR marks a value inherited from the parent locale with this; it is not a name.
_INHERITED = "↑↑↑"


@dataclasses.dataclass(frozen=True)
class MultilingualDatasetInfo:
    """What :func:`build_emoji_multilingual` wrote; saved as ``<out>/multilingual.json``.

    Attributes:
        name: ``"emoji-multilingual"``.
        root: the output folder; split ``s`` is ``<root>/<s>`` (``captions.jsonl`` + ``images/``).
        languages: the languages every image is captioned in.
        missing_languages: languages asked for by default (Crossmodal-3600's) that CLDR does not
            have; ``"quz"`` (Cusco Quechua) in CLDR 41, which has only ``"qu"`` (Quechua).
        images: split -> number of images.
        captions: split -> language -> number of captions.
        dropped: language -> emoji that have no CLDR name in it; they are left out of the dataset
            (every image has every language, as in Crossmodal-3600).
        image_size: side of the stored square JPEG images.
    """

    name: str
    root: str
    languages: tuple[str, ...]
    missing_languages: tuple[str, ...]
    images: dict[str, int]
    captions: dict[str, dict[str, int]]
    dropped: dict[str, int]
    image_size: int

    def to_json(self) -> str:
        """The info as indented JSON (what ``multilingual.json`` holds)."""
        return json.dumps(dataclasses.asdict(self), indent=2, ensure_ascii=False)


@dataclasses.dataclass(frozen=True)
class CldrAnnotations:
    """One locale's CLDR emoji annotations, keyed by the emoji without U+FE0F (CLDR's form).

    Attributes:
        names: emoji -> short name (``type="tts"``).
        keywords: emoji -> keywords, in CLDR's order.
    """

    names: dict[str, str]
    keywords: dict[str, list[str]]


def cldr_locales() -> list[str]:
    """The locales that have CLDR emoji annotations installed (``annotations/*.xml``), sorted."""
    return sorted(path.stem for path in (_builders.CLDR_DIR / "annotations").glob("*.xml"))


def read_cldr_annotations(language: str) -> CldrAnnotations:
    """Read ``annotations/<language>.xml`` and ``annotationsDerived/<language>.xml``.

    Parsed once per folder and locale in a process (the 70 files of 35 languages take seconds).

    Args:
        language: a CLDR locale (``"de"``, ``"zh"``, ``"fil"``).

    Returns:
        The names and keywords; a derived entry never replaces a base one.

    Raises:
        ValueError: the locale has no annotations (the message names the nearest codes).
    """
    return _read_cldr(str(_builders.CLDR_DIR), language)


@functools.lru_cache(maxsize=64)
def _read_cldr(cldr_dir: str, language: str) -> CldrAnnotations:
    names: dict[str, str] = {}
    keywords: dict[str, list[str]] = {}
    found = False
    for folder in ("annotations", "annotationsDerived"):
        path = Path(cldr_dir) / folder / f"{language}.xml"
        if not path.is_file():
            continue
        found = True
        for element in ElementTree.parse(path).getroot().iter("annotation"):
            emoji, text = element.get("cp"), (element.text or "").strip()
            if not emoji or not text or text == _INHERITED:
                continue
            if element.get("type") == "tts":
                names.setdefault(emoji, text)
            else:
                words = [word.strip() for word in text.split("|") if word.strip() != _INHERITED]
                keywords.setdefault(emoji, [word for word in words if word])
    if not found:
        near = [code for code in cldr_locales() if code[:2] == language[:2]]
        hint = f"; CLDR has {', '.join(near)}" if near else ""
        raise ValueError(
            f"languages: no CLDR emoji annotations for {language!r} in "
            f"{str(_builders.CLDR_DIR / 'annotations')!r}{hint}"
        )
    return CldrAnnotations(names=names, keywords=keywords)


def _captions(annotations: CldrAnnotations, emoji: str, keywords: bool) -> list[str] | None:
    key = emoji.replace("\ufe0f", "")
    name = annotations.names.get(key)
    if name is None:
        return None
    texts = [name]
    words = annotations.keywords.get(key, [])
    joined = ", ".join(words)
    if keywords and words and joined != name:
        texts.append(joined)
    return texts


def _jpeg(image: Image.Image) -> bytes:
    # JPEG has no alpha: the emoji goes on white, as preprocessing would composite it.
    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image, mask=image.getchannel("A"))
    buffer = io.BytesIO()
    background.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _check_languages(languages: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """``(languages to build, default languages CLDR lacks)``."""
    if languages is None:
        available = set(cldr_locales())
        chosen = [code for code in XM3600_LANGUAGES if code in available]
        return chosen, [code for code in XM3600_LANGUAGES if code not in available]
    if isinstance(languages, str):
        raise TypeError(f"languages: expected a sequence of codes, got the string {languages!r}")
    chosen = list(languages)
    if not chosen:
        raise ValueError("languages: expected at least one language, got none")
    for code in chosen:
        if not isinstance(code, str) or not code:
            raise ValueError(f"languages: expected non-empty language codes, got {code!r}")
    if len(set(chosen)) != len(chosen):
        duplicate = next(code for code in chosen if chosen.count(code) > 1)
        raise ValueError(f"languages: expected unique codes, got {duplicate!r} twice")
    return chosen, []


def build_emoji_multilingual(
    output_dir: str | os.PathLike[str],
    *,
    languages: Sequence[str] | None = None,
    image_size: int = 128,
    limit: int | None = None,
    keywords: bool = True,
    heldout_percent: int = _builders.EMOJI_HELDOUT_PERCENT,
) -> MultilingualDatasetInfo:
    """Render Noto Color Emoji captioned with their CLDR names in many languages (XM3600 layout).

    Writes ``<out>/train`` and ``<out>/heldout``, each a Crossmodal-3600 folder
    (``captions.jsonl`` + ``images/<key>.jpg``), and ``<out>/multilingual.json``. The keys
    (``emoji00000``: the index in ``emoji-test.txt``), the images and the split are those of
    :func:`~siglip_data.builders.build_emoji`. Per language an image's captions are its CLDR short
    name and, when ``keywords`` and they differ from it, its keywords joined by ", "
    (``["grinsendes Gesicht", "Gesicht, grinsendes Gesicht, lol, lustig, Lachen"]``). An emoji
    without a name in one of the languages is left out (every image has every language), and
    ``info.dropped`` counts them per language; the 31 emoji new in Unicode 15.0 have no names in
    CLDR 41. Each split folder is replaced atomically.

    Args:
        output_dir: where to write ``train/``, ``heldout/`` and ``multilingual.json``.
        languages: CLDR locale codes; None: every Crossmodal-3600 language CLDR has (35 of 36:
            not ``"quz"``, listed in ``info.missing_languages``).
        image_size: side of the stored square JPEG images (the glyphs are drawn at 136 px).
        limit: use only the first ``limit`` emoji of ``emoji-test.txt`` (tests, demos).
        keywords: add the keyword caption.
        heldout_percent: percent of base names held out (the English builder's default: 25).

    Returns:
        The :class:`MultilingualDatasetInfo` (also ``<out>/multilingual.json``).

    Raises:
        MissingDebianPackageError: ``fonts-noto-color-emoji``, ``unicode-data`` or
            ``unicode-cldr-core`` is not installed (the message ends with the command).
        ValueError: a language CLDR does not have (the message names the nearest codes), an empty
            or repeated language, ``limit < 1``, or no emoji named in every language.
    """
    _builders.check_debian_packages("emoji-multilingual")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    chosen, missing = _check_languages(languages)
    annotations = {language: read_cldr_annotations(language) for language in chosen}
    entries = _builders.read_emoji_test(_builders.EMOJI_TEST_FILE)
    indexed = list(enumerate(entries))[:limit]
    dropped = dict.fromkeys(chosen, 0)
    rows: dict[str, list[tuple[str, str, dict[str, list[str]]]]] = {"train": [], "heldout": []}
    for index, entry in indexed:
        found = {lang: _captions(annotations[lang], entry.emoji, keywords) for lang in chosen}
        complete = {language: texts for language, texts in found.items() if texts is not None}
        for language in found.keys() - complete.keys():
            dropped[language] += 1
        if len(complete) == len(chosen):
            split = _builders.emoji_split(entry.base_name, heldout_percent)
            rows[split].append((f"emoji{index:05d}", entry.emoji, complete))
    if not rows["train"] and not rows["heldout"]:
        raise ValueError(
            f"no emoji of the first {len(indexed)} has a CLDR name in every language of "
            f"{chosen}; dropped per language: {dropped}"
        )
    font = ImageFont.truetype(str(_builders.EMOJI_FONT), 109)
    root = Path(output_dir)
    for split, split_rows in rows.items():
        with atomic_directory(root / split) as folder:
            (folder / "images").mkdir()
            lines = []
            for key, emoji, captions in split_rows:
                image = _builders.render_emoji(emoji, font, image_size=image_size)
                (folder / "images" / f"{key}.jpg").write_bytes(_jpeg(image))
                record: dict[str, object] = {"image/key": key, "image/locale": IMAGE_LOCALE}
                record.update(
                    {language: {"caption": texts} for language, texts in captions.items()}
                )
                lines.append(json.dumps(record, ensure_ascii=False))
            (folder / "captions.jsonl").write_text(
                "".join(line + "\n" for line in lines), encoding="utf-8"
            )
    info = MultilingualDatasetInfo(
        name="emoji-multilingual",
        root=str(root.resolve()),
        languages=tuple(chosen),
        missing_languages=tuple(missing),
        images={split: len(split_rows) for split, split_rows in rows.items()},
        captions={
            split: {
                language: sum(len(captions[language]) for _, _, captions in split_rows)
                for language in chosen
            }
            for split, split_rows in rows.items()
        },
        dropped=dropped,
        image_size=image_size,
    )
    atomic_write_text(root / "multilingual.json", info.to_json())
    return info


def build_multilingual_command(args: argparse.Namespace, options: dict[str, int]) -> int:
    """``siglip-data build emoji-multilingual OUT [--languages de,fr,...]``; the exit status."""
    languages = None if args.languages is None else [c.strip() for c in args.languages.split(",")]
    try:
        info = build_emoji_multilingual(
            args.output_dir,
            languages=languages,
            limit=args.limit,
            image_size=options.get("image_size", 128),
        )
    except (_builders.MissingDebianPackageError, ValueError) as error:
        print(f"siglip-data: {error}", file=sys.stderr)
        return 2
    print(f"{len(info.languages)} languages: {' '.join(info.languages)}")
    if info.missing_languages:
        print(f"not in CLDR: {' '.join(info.missing_languages)}")
    for split, count in info.images.items():
        captions = sum(info.captions[split].values())
        print(f"{split}: {count} images, {captions} captions in {info.root}/{split}")
    dropped = {language: count for language, count in info.dropped.items() if count}
    if dropped:
        print(f"emoji left out (no CLDR name in): {dropped}")
    return 0
