"""The same Unicode emoji drawn by several artists: one dataset per style, one split for all.

Styles (``EMOJI_STYLES``):

- ``noto``: Noto Color Emoji (Debian ``fonts-noto-color-emoji``; OFL-1.1), glossy colour.
- ``twemoji``: Twitter's Twemoji 64 px PNGs from the npm package ``emoji-datasource-twitter``
  (graphics CC-BY-4.0; package MIT), flat colour. The library never runs npm: the tarball is
  fetched once with ``npm pack`` into a cache directory and read from there.
- ``symbola``: the Symbola font (Debian ``fonts-symbola``; "free for any use"), black outlines;
  single code point emoji only (no sequences: skin tones, ZWJ families, flags, keycaps).

The split is by :func:`emoji_split_key`: the base name (the part before the colon) so that
skin-tone and gender variants of one emoji never straddle it, except for ``flag: X`` and
``keycap: X``, whose part after the colon is the concept itself: each flag and keycap is split on
its own, so these groups get a held-out share like the others.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from siglip_data import _builders
from siglip_data._atomic import atomic_write_text
from siglip_data._builders import EMOJI_TEMPLATES
from siglip_data._builders import DatasetInfo
from siglip_data._builders import EmojiEntry
from siglip_data._builders import check_debian_packages
from siglip_data._builders import read_emoji_test
from siglip_data._builders import render_emoji
from siglip_data._builders import write_split

# Names whose part after the colon is the concept itself, not a variant of the base.
SPLIT_BY_FULL_NAME: tuple[str, ...] = ("flag", "keycap")
# Subgroups and words whose meaning a mirror image changes (direction, text, digits, flags).
UNFLIPPABLE_SUBGROUPS: frozenset[str] = frozenset(
    {
        "arrow",
        "keycap",
        "alphanum",
        "country-flag",
        "subdivision-flag",
        "flag",
        "time",
        "zodiac",
        "av-symbol",
        "math",
        "currency",
        "punctuation",
        "other-symbol",
        "geometric",
        "religion",
        "warning",
        "transport-sign",
    }
)
UNFLIPPABLE_WORDS: tuple[str, ...] = ("left", "right", "clockwise", "backhand", "letter")
NPM_CACHE_ENVIRONMENT = "SIGLIP_NPM_CACHE"


@dataclasses.dataclass(frozen=True)
class EmojiStyle:
    """One emoji artwork set and where it comes from.

    Attributes:
        name: the style's key in ``EMOJI_STYLES``.
        title: what people call it.
        license: the artwork's licence (recorded in each built ``dataset.json``).
        debian_packages: Debian packages it needs (always ``unicode-data`` for the names).
        debian_dataset: the name :func:`check_debian_packages` checks them by.
        npm_package: ``name@version`` of the npm tarball it needs, or ``""``.
        colour: whether the artwork is in colour.
    """

    name: str
    title: str
    license: str
    debian_packages: tuple[str, ...]
    debian_dataset: str
    npm_package: str = ""
    colour: bool = True


EMOJI_STYLES: dict[str, EmojiStyle] = {
    "noto": EmojiStyle(
        "noto",
        "Noto Color Emoji",
        "OFL-1.1 (font); names: Unicode License v3",
        ("fonts-noto-color-emoji", "unicode-data"),
        "emoji",
    ),
    "twemoji": EmojiStyle(
        "twemoji",
        "Twemoji (emoji-datasource-twitter 64 px)",
        "CC-BY-4.0 (Twemoji graphics, Twitter Inc. and contributors); package MIT; names: "
        "Unicode License v3",
        ("unicode-data",),
        "emoji-names",
        npm_package="emoji-datasource-twitter@16.0.0",
    ),
    "symbola": EmojiStyle(
        "symbola",
        "Symbola (monochrome outlines)",
        "Symbola font by George Douros: free for any use (Debian fonts-symbola); names: Unicode "
        "License v3",
        ("fonts-symbola", "unicode-data"),
        "emoji-symbola",
        colour=False,
    ),
}


class MissingNpmPackageError(FileNotFoundError):
    """An npm tarball behind an offline dataset is not in the cache directory.

    The message ends with the command that fetches it; the library never runs npm itself.

    Attributes:
        package: ``name@version``.
        cache_dir: where the tarball is looked for.
        command: ``"npm pack <package> --pack-destination <cache_dir>"``.
    """

    def __init__(self, message: str, package: str, cache_dir: str) -> None:
        super().__init__(message)
        self.package = package
        self.cache_dir = cache_dir
        self.command = f"npm pack {package} --pack-destination {cache_dir}"


def default_npm_cache() -> Path:
    """``$SIGLIP_NPM_CACHE``, else ``~/.cache/siglip-data/npm``: where npm tarballs are read."""
    configured = os.environ.get(NPM_CACHE_ENVIRONMENT)
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "siglip-data" / "npm"


def npm_tarball(package: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cached ``npm pack`` tarball of ``package`` (``name@version``).

    Args:
        package: ``"emoji-datasource-twitter@16.0.0"``.
        cache_dir: where tarballs are (default :func:`default_npm_cache`).

    Returns:
        ``<cache_dir>/<name>-<version>.tgz``.

    Raises:
        MissingNpmPackageError: not there; the message ends with the ``npm pack`` command.

    Examples:
        >>> import tempfile
        >>> from siglip_data.builders import MissingNpmPackageError, npm_tarball
        >>> cache = tempfile.mkdtemp()
        >>> try:
        ...     npm_tarball("emoji-datasource-twitter@16.0.0", cache)
        ... except MissingNpmPackageError as error:
        ...     error.command == f"npm pack emoji-datasource-twitter@16.0.0 --pack-destination {cache}"
        True
    """
    name, _, version = package.rpartition("@")
    directory = Path(cache_dir) if cache_dir is not None else default_npm_cache()
    path = directory / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
    if not path.is_file():
        error = MissingNpmPackageError("", package, str(directory))
        error.args = (
            f"{str(path)!r} is missing: fetch the npm tarball once (needs the npm registry; "
            f"${NPM_CACHE_ENVIRONMENT} picks the directory) with:\n    {error.command}",
        )
        raise error
    return path


def emoji_split_key(name: str) -> str:
    """What the train / held-out split hashes: the base name, or the full name of flags / keycaps.

    Examples:
        >>> from siglip_data.builders import emoji_split_key
        >>> emoji_split_key("waving hand: medium skin tone"), emoji_split_key("flag: Japan")
        ('waving hand', 'flag: Japan')
    """
    base = name.split(":", 1)[0].strip()
    return name if base in SPLIT_BY_FULL_NAME else base


def emoji_style_split(name: str, heldout_percent: int = 25) -> str:
    """``"train"`` or ``"heldout"`` from a SHA-256 of :func:`emoji_split_key` (same in every style)."""
    digest = hashlib.sha256(emoji_split_key(name).encode("utf-8")).digest()
    return "heldout" if int.from_bytes(digest[:8], "big") % 100 < heldout_percent else "train"


def emoji_flippable(name: str, subgroup: str) -> bool:
    """Whether a mirror image of the emoji still shows what its name says.

    Arrows, flags, keycaps, letters, clocks and signs, and names with a direction ("left",
    "right", "clockwise", "backhand") are not flippable.

    Examples:
        >>> from siglip_data.builders import emoji_flippable
        >>> emoji_flippable("grinning face", "face-smiling"), emoji_flippable("left arrow", "arrow")
        (True, False)
    """
    words = name.lower().replace(":", " ").replace("-", " ").split()
    if subgroup in UNFLIPPABLE_SUBGROUPS:
        return False
    return not any(word in words for word in UNFLIPPABLE_WORDS)


def _check_style_files(style: EmojiStyle, npm_cache: str | os.PathLike[str] | None) -> None:
    check_debian_packages(style.debian_dataset)
    if style.npm_package:
        npm_tarball(style.npm_package, npm_cache)


def _code_points(emoji: str, *, qualified: bool = True) -> str:
    points = [f"{ord(c):04x}" for c in emoji if qualified or ord(c) != 0xFE0F]
    return "-".join(points)


def _twemoji_images(
    entries: list[EmojiEntry], tarball: Path, image_size: int
) -> dict[str, Image.Image]:
    """Emoji -> RGBA image from the 64 px folder of the tarball (matched by code points)."""
    prefix = "package/img/twitter/64/"
    wanted: dict[str, str] = {}
    for entry in entries:
        for key in (_code_points(entry.emoji), _code_points(entry.emoji, qualified=False)):
            wanted.setdefault(key, entry.emoji)
    images: dict[str, Image.Image] = {}
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            if not (member.isfile() and member.name.startswith(prefix)):
                continue
            emoji = wanted.get(member.name[len(prefix) :].removesuffix(".png"))
            if emoji is None or emoji in images:
                continue
            handle = archive.extractfile(member)
            if handle is None:
                continue
            image = Image.open(io.BytesIO(handle.read())).convert("RGBA")
            if image.size != (image_size, image_size):
                image = image.resize((image_size, image_size), Image.Resampling.LANCZOS)
            images[emoji] = image
    return images


def _symbola_renderer(image_size: int) -> Any:
    font = ImageFont.truetype(str(_builders.SYMBOLA_FONT), 96)
    missing = np.asarray(font.getmask("\U000e01ef"))  # an unassigned code point: .notdef

    def render(emoji: str) -> Image.Image | None:
        text = emoji.replace("\ufe0f", "")
        if len(text) != 1 or ord(text) < 0x80:
            return None  # sequences (and ASCII keycap bases) are not drawn as one glyph
        mask = np.asarray(font.getmask(text))
        if mask.size == 0 or mask.max() == 0 or np.array_equal(mask, missing):
            return None
        left, top, right, bottom = font.getbbox(text)
        # The glyph on a transparent square with a 10% margin, like the colour styles.
        side = round(max(right - left, bottom - top, 1) * 1.2)
        canvas = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        offset = ((side - (right - left)) // 2 - left, (side - (bottom - top)) // 2 - top)
        ImageDraw.Draw(canvas).text(offset, text, font=font, fill=(0, 0, 0, 255))
        return canvas.resize((image_size, image_size), Image.Resampling.LANCZOS)

    return render


def build_emoji_style(
    output_dir: str | os.PathLike[str],
    *,
    style: str,
    image_size: int = 64,
    npm_cache: str | os.PathLike[str] | None = None,
    samples_per_shard: int = 1000,
    limit: int | None = None,
    heldout_percent: int = 25,
) -> DatasetInfo:
    """Write one emoji style as ``train`` / ``heldout`` shards of RGBA PNGs with Unicode names.

    Every style uses the same split (:func:`emoji_style_split`), so a name held out in one style
    is held out in all. Metadata per sample: ``{"name", "base_name", "split_key", "group",
    "subgroup", "group_label", "split", "emoji", "style", "flippable"}``; the caption is the
    name. ``dataset.json`` records the style, its source and its licence.

    Args:
        output_dir: where to write ``train/``, ``heldout/`` and ``dataset.json``.
        style: a key of ``EMOJI_STYLES`` (``"noto"``, ``"twemoji"``, ``"symbola"``).
        image_size: side of the stored square images.
        npm_cache: where npm tarballs are (default :func:`default_npm_cache`).
        samples_per_shard: samples per tar shard.
        limit: consider only the first ``limit`` emoji of ``emoji-test.txt`` (tests).
        heldout_percent: percent of split keys held out.

    Returns:
        The :class:`DatasetInfo` (also written to ``dataset.json``).

    Raises:
        MissingDebianPackageError: a Debian package is not installed (the message ends with the
            ``apt install`` command).
        MissingNpmPackageError: the style's npm tarball is not cached (the message ends with the
            ``npm pack`` command).
        ValueError: an unknown style or a bad ``limit``.
    """
    if style not in EMOJI_STYLES:
        raise ValueError(f"unknown emoji style {style!r}, expected one of {sorted(EMOJI_STYLES)}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    source = EMOJI_STYLES[style]
    _check_style_files(source, npm_cache)
    all_entries = read_emoji_test(_builders.EMOJI_TEST_FILE)
    groups = list(dict.fromkeys(entry.group for entry in all_entries))
    entries = all_entries if limit is None else all_entries[:limit]
    if style == "noto":
        font = ImageFont.truetype(str(_builders.EMOJI_FONT), 109)

        def draw(emoji: str) -> Image.Image | None:
            return render_emoji(emoji, font, image_size=image_size)

    elif style == "twemoji":
        images = _twemoji_images(entries, npm_tarball(source.npm_package, npm_cache), image_size)

        def draw(emoji: str) -> Image.Image | None:
            return images.get(emoji)

    else:
        draw = _symbola_renderer(image_size)

    def samples(split: str) -> Iterator[tuple[str, Image.Image, str, dict[str, Any]]]:
        for index, entry in enumerate(entries):
            if emoji_style_split(entry.name, heldout_percent) != split:
                continue
            image = draw(entry.emoji)
            if image is None:
                continue
            metadata = {
                "name": entry.name,
                "base_name": entry.base_name,
                "split_key": emoji_split_key(entry.name),
                "group": entry.group,
                "subgroup": entry.subgroup,
                "group_label": groups.index(entry.group),
                "split": split,
                "emoji": entry.emoji,
                "style": style,
                "flippable": emoji_flippable(entry.name, entry.subgroup),
            }
            yield f"{style}{index:05d}", image, entry.name, metadata

    splits = {
        split: write_split(Path(output_dir) / split, samples(split), samples_per_shard)
        for split in ("train", "heldout")
    }
    info = DatasetInfo(
        name=f"emoji-{style}",
        splits=splits,
        class_names=tuple(groups),
        caption_names=tuple(group.lower() for group in groups),
        caption_templates=EMOJI_TEMPLATES,
        image_size=image_size,
        label_key="group_label",
        license=source.license,
        source=source.title
        + (f" from npm {source.npm_package}" if source.npm_package else "")
        + f" (Debian: {', '.join(source.debian_packages)})",
    )
    atomic_write_text(Path(output_dir) / "dataset.json", info.to_json())
    return info
