"""Emoji scenes: 1-4 Noto emoji and Fashion-MNIST items on a canvas, with boxes and a label map.

Grounded data for SigLIP 2's LocCa decoder tasks and the dense probe, built offline from the
same Debian packages as the demo (``fonts-noto-color-emoji``, ``unicode-data``,
``dataset-fashion-mnist``). Emoji keep the demo's name-level split (a hash of the base name,
:func:`~siglip_data._builders.emoji_split`); Fashion-MNIST items come from its train images in
``train`` and from its test images elsewhere. Splits:

- ``train``: train emoji names, Fashion-MNIST train images;
- ``test``: the same names, Fashion-MNIST test images, layouts never seen in ``train`` (no test
  scene repeats a train scene's boxes on an 8-pixel grid);
- ``heldout``: held-out emoji names only (plus Fashion-MNIST test items), unseen layouts.

Per scene: the caption (``"a cat face, a sneaker and a dress"``), per object its name, category
and box, and a per-pixel object map (0 = background, ``i`` = the scene's ``i``-th object, later
objects drawn on top) stored as a PNG in the metadata (:func:`decode_object_map`).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from PIL import ImageFont

from siglip_data._atomic import atomic_write_text
from siglip_data._builders import EMOJI_FONT
from siglip_data._builders import FASHION_MNIST_CAPTION_NAMES
from siglip_data._builders import FASHION_MNIST_DIR
from siglip_data._builders import FASHION_MNIST_FILES
from siglip_data._builders import DatasetInfo
from siglip_data._builders import check_debian_packages
from siglip_data._builders import emoji_split
from siglip_data._builders import read_emoji_test
from siglip_data._builders import read_idx
from siglip_data._builders import render_emoji
from siglip_data._builders import write_split
from siglip_data._grounding import check_box

SCENE_SPLITS: tuple[str, ...] = ("train", "test", "heldout")
# Emoji groups whose base names read as objects (flags and symbols look alike at toy sizes).
SCENE_EMOJI_GROUPS: tuple[str, ...] = (
    "Smileys & Emotion",
    "People & Body",
    "Animals & Nature",
    "Food & Drink",
    "Travel & Places",
    "Activities",
    "Objects",
)
SCENE_TEMPLATES: tuple[str, ...] = ("{}",)
_LAYOUT_GRID = 8  # layouts compare on this pixel grid ("unseen layout": no train match)


@dataclasses.dataclass(frozen=True)
class _Item:
    name: str
    category: int
    source: str  # "emoji" or "fashion-mnist"
    glyph: str = ""  # the emoji
    image_index: int = -1  # Fashion-MNIST image index


def scene_categories() -> tuple[str, ...]:
    """Category names of the dense label map: background, the emoji groups, Fashion-MNIST classes.

    Examples:
        >>> categories = scene_categories()
        >>> categories[0], categories[1], categories[-1], len(categories)
        ('background', 'Smileys & Emotion', 'ankle boot', 18)
    """
    return ("background", *SCENE_EMOJI_GROUPS, *FASHION_MNIST_CAPTION_NAMES)


def decode_object_map(metadata: dict[str, Any]) -> npt.NDArray[np.uint8]:
    """The ``[height, width]`` uint8 object map of a scene sample (0 = background, i = object i).

    Args:
        metadata: the sample's metadata (its ``"object_map_png"`` field).

    Returns:
        The map; ``metadata["objects"][i - 1]`` is the object with id ``i``.
    """
    data = base64.b64decode(metadata["object_map_png"])
    return np.asarray(Image.open(io.BytesIO(data)), dtype=np.uint8)


def category_map(metadata: dict[str, Any]) -> npt.NDArray[np.int64]:
    """The ``[height, width]`` per-pixel category labels of a scene (index into
    :func:`scene_categories`; 0 = background)."""
    objects = decode_object_map(metadata)
    lookup = np.zeros(256, dtype=np.int64)
    for index, item in enumerate(metadata["objects"], start=1):
        lookup[index] = item["category_label"]
    return lookup[objects]


def _article(name: str) -> str:
    return "an" if name[:1].lower() in "aeiou" else "a"


def scene_caption(names: list[str]) -> str:
    """``["cat face", "sneaker", "apple"] -> "a cat face, a sneaker and an apple"``."""
    phrases = [f"{_article(name)} {name}" for name in names]
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _png_base64(array: npt.NDArray[np.uint8]) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array, mode="L").save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _ordered(names: list[str]) -> list[str]:
    # A fixed pseudo-random order (by hash), so the first N names span the groups.
    return sorted(names, key=lambda name: hashlib.sha256(name.encode()).hexdigest())


def _background(rng: np.random.Generator, size: int) -> tuple[npt.NDArray[np.uint8], str]:
    base = rng.integers(150, 256, size=3)
    canvas = np.broadcast_to(base, (size, size, 3)).astype(np.int64)
    if rng.random() < 0.5:
        return canvas.astype(np.uint8), "plain"
    # Textured: stripes or a checkerboard in a second light colour, plus mild noise.
    other = rng.integers(150, 256, size=3)
    period = int(rng.integers(4, 12))
    rows, columns = np.mgrid[0:size, 0:size]
    if rng.random() < 0.5:
        pattern = ((rows + columns) // period) % 2 == 1
    else:
        pattern = ((rows // period) + (columns // period)) % 2 == 1
    canvas[pattern] = other
    canvas += rng.integers(-12, 13, size=canvas.shape)
    return np.clip(canvas, 0, 255).astype(np.uint8), "textured"


class _Renderer:
    """Draws items at any size; emoji glyphs and Fashion-MNIST images are cached."""

    def __init__(
        self,
        fashion: dict[str, npt.NDArray[np.uint8]],
        fashion_labels: dict[str, npt.NDArray[np.uint8]],
    ) -> None:
        self.font = ImageFont.truetype(str(EMOJI_FONT), 109)
        self.fashion = fashion
        # Per split and class: the indices of that class's images.
        self.by_class = {
            split: [np.flatnonzero(labels == label) for label in range(10)]
            for split, labels in fashion_labels.items()
        }
        self._glyphs: dict[str, Image.Image] = {}

    def rgba(self, item: _Item, split: str, side: int) -> npt.NDArray[np.uint8]:
        if item.source == "emoji":
            glyph = self._glyphs.get(item.glyph)
            if glyph is None:
                glyph = render_emoji(item.glyph, self.font, image_size=136)
                bbox = glyph.getbbox() or (0, 0, 136, 136)
                glyph = glyph.crop(bbox)  # tight: the box is the visible glyph
                self._glyphs[item.glyph] = glyph
            scale = side / max(glyph.size)
            size = (max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale)))
            return np.asarray(glyph.resize(size, Image.Resampling.LANCZOS), dtype=np.uint8)
        images = self.fashion["train" if split == "train" else "test"]
        intensity = images[item.image_index]
        rows = np.flatnonzero(intensity.max(axis=1) > 30)
        columns = np.flatnonzero(intensity.max(axis=0) > 30)
        if rows.size and columns.size:
            intensity = intensity[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
        height, width = intensity.shape
        scale = side / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        alpha = np.asarray(
            Image.fromarray(intensity, mode="L").resize(size, Image.Resampling.BICUBIC)
        )
        # A dark item: ink = 255 - intensity, opacity from the intensity (Fashion-MNIST is
        # white on black).
        ink = np.full((*alpha.shape, 3), 40, dtype=np.uint8)
        alpha = np.clip(alpha.astype(np.int64) * 2, 0, 255).astype(np.uint8)
        return np.concatenate([ink, alpha[..., None]], axis=-1)


def _draw_scene(
    rng: np.random.Generator,
    pool: list[_Item],
    renderer: _Renderer,
    split: str,
    *,
    image_size: int,
    max_objects: int,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], list[dict[str, Any]], str]:
    canvas_array, background = _background(rng, image_size)
    canvas = canvas_array.astype(np.float64)
    object_map = np.zeros((image_size, image_size), dtype=np.uint8)
    count = int(rng.integers(1, max_objects + 1))
    objects: list[dict[str, Any]] = []
    boxes: list[tuple[int, int, int, int]] = []
    used: set[str] = set()
    attempts = 0
    while len(objects) < count and attempts < 50:
        attempts += 1
        if rng.random() < 0.5:
            item = pool[int(rng.integers(0, len(pool)))]
        else:
            label = int(rng.integers(0, len(FASHION_MNIST_CAPTION_NAMES)))
            candidates = renderer.by_class["train" if split == "train" else "test"][label]
            item = _Item(
                FASHION_MNIST_CAPTION_NAMES[label],
                1 + len(SCENE_EMOJI_GROUPS) + label,
                "fashion-mnist",
                image_index=int(candidates[int(rng.integers(0, len(candidates)))]),
            )
        if item.name in used:  # one object per name: referring expressions stay unambiguous
            continue
        side = int(rng.integers(image_size // 4, image_size // 2 + 1))
        rgba = renderer.rgba(item, split, side)
        height, width = rgba.shape[:2]
        left = int(rng.integers(0, image_size - width + 1))
        top = int(rng.integers(0, image_size - height + 1))
        box = (left, top, left + width, top + height)
        if any(_overlap(box, other) > 0.25 for other in boxes):
            continue
        alpha = rgba[..., 3:].astype(np.float64) / 255.0
        region = canvas[top : top + height, left : left + width]
        region[:] = region * (1 - alpha) + rgba[..., :3] * alpha
        mask = rgba[..., 3] >= 128
        object_map[top : top + height, left : left + width][mask] = len(objects) + 1
        check_box(box, image_size=image_size)
        boxes.append(box)
        used.add(item.name)
        objects.append(
            {
                "name": item.name,
                "category": scene_categories()[item.category],
                "category_label": item.category,
                "source": item.source,
                "box": list(box),
            }
        )
    pixels = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return pixels, object_map, objects, background


def _overlap(first: tuple[int, ...], second: tuple[int, ...]) -> float:
    # Intersection over the smaller box: a small object may not hide under a big one.
    width = max(0, min(first[2], second[2]) - max(first[0], second[0]))
    height = max(0, min(first[3], second[3]) - max(first[1], second[1]))
    smaller = min(
        (first[2] - first[0]) * (first[3] - first[1]),
        (second[2] - second[0]) * (second[3] - second[1]),
    )
    return width * height / max(1, smaller)


def _layout(objects: list[dict[str, Any]]) -> tuple[tuple[int, ...], ...]:
    return tuple(sorted(tuple(v // _LAYOUT_GRID for v in item["box"]) for item in objects))


def build_emoji_scenes(
    output_dir: str | os.PathLike[str],
    *,
    image_size: int = 64,
    train_scenes: int = 4000,
    test_scenes: int = 500,
    heldout_scenes: int = 500,
    max_objects: int = 4,
    emoji_names: int | None = None,
    samples_per_shard: int = 1000,
    seed: int = 0,
    limit: int | None = None,
) -> DatasetInfo:
    """Render grounded scenes of 1-4 emoji and Fashion-MNIST items into train/test/heldout shards.

    Each sample is an RGB PNG canvas with caption ``scene_caption(names)`` and metadata
    ``{"objects": [{"name", "category", "category_label", "source", "box": [x0, y0, x1, y1]}],
    "object_map_png", "background", "split"}``. Boxes are tight pixel boxes (right and bottom
    exclusive) of each whole object; objects overlap by at most a quarter of the smaller one.
    ``decode_object_map`` / ``category_map`` read the dense labels back.

    Args:
        output_dir: where to write ``train/``, ``test/``, ``heldout/`` and ``dataset.json``.
        image_size: canvas side in pixels (objects are a quarter to a half of it).
        train_scenes: scenes in ``train``.
        test_scenes: scenes in ``test`` (train names, unseen layouts).
        heldout_scenes: scenes in ``heldout`` (held-out emoji names, unseen layouts).
        max_objects: at most this many objects per scene (at least 1).
        emoji_names: use only this many train emoji names (and a third as many held-out
            ones), picked in a fixed hash order; None: every base-name emoji of the object
            groups (``SCENE_EMOJI_GROUPS``).
        samples_per_shard: samples per tar shard.
        seed: scene seed.
        limit: cap every split at ``limit`` scenes (fast tests).

    Returns:
        The :class:`DatasetInfo` (``class_names`` = :func:`scene_categories`).

    Raises:
        MissingDebianPackageError: the emoji or Fashion-MNIST packages are not installed.
        ValueError: a bad size or count.
    """
    check_debian_packages("emoji", "fashion-mnist")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    if not 1 <= max_objects <= 8:
        raise ValueError(f"max_objects must be in [1, 8], got {max_objects}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    counts = {"train": train_scenes, "test": test_scenes, "heldout": heldout_scenes}
    if limit is not None:
        counts = {split: min(count, limit) for split, count in counts.items()}
    names: dict[str, list[_Item]] = {"train": [], "heldout": []}
    for entry in read_emoji_test():
        if entry.name != entry.base_name or entry.group not in SCENE_EMOJI_GROUPS:
            continue
        category = 1 + SCENE_EMOJI_GROUPS.index(entry.group)
        item = _Item(entry.name, category, "emoji", glyph=entry.emoji)
        names[emoji_split(entry.base_name)].append(item)
    for split, items in names.items():
        by_name = {item.name: item for item in items}
        order = _ordered(list(by_name))
        if emoji_names is not None:
            order = order[: emoji_names if split == "train" else max(1, emoji_names // 3)]
        names[split] = [by_name[name] for name in order]
    fashion = {
        split: read_idx(FASHION_MNIST_DIR / files[0])
        for split, files in FASHION_MNIST_FILES.items()
    }
    fashion_labels = {
        split: read_idx(FASHION_MNIST_DIR / files[1])
        for split, files in FASHION_MNIST_FILES.items()
    }
    renderer = _Renderer(fashion, fashion_labels)
    train_layouts: set[tuple[tuple[int, ...], ...]] = set()

    def samples(split: str) -> Iterator[tuple[str, Image.Image, str, dict[str, Any]]]:
        pool = names["heldout" if split == "heldout" else "train"]
        rng = np.random.default_rng([seed, SCENE_SPLITS.index(split)])
        written = 0
        while written < counts[split]:
            pixels, object_map, objects, background = _draw_scene(
                rng, pool, renderer, split,
                image_size=image_size, max_objects=max_objects,
            )  # fmt: skip
            layout = _layout(objects)
            if split == "train":
                train_layouts.add(layout)
            elif layout in train_layouts:
                continue  # the test splits hold unseen layouts only
            metadata = {
                "objects": objects,
                "object_map_png": _png_base64(object_map),
                "background": background,
                "split": split,
            }
            caption = scene_caption([item["name"] for item in objects])
            yield f"{split}{written:06d}", Image.fromarray(pixels), caption, metadata
            written += 1

    splits = {
        split: write_split(Path(output_dir) / split, samples(split), samples_per_shard)
        for split in SCENE_SPLITS  # train first: the other splits avoid its layouts
    }
    info = DatasetInfo(
        name="emoji-scenes",
        splits=splits,
        class_names=scene_categories(),
        caption_names=tuple(name.lower() for name in scene_categories()),
        caption_templates=SCENE_TEMPLATES,
        image_size=image_size,
        label_key="objects",
    )
    atomic_write_text(Path(output_dir) / "dataset.json", info.to_json())
    return info
