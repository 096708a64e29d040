"""``siglip-data build folder IN OUT``: a folder of captioned images -> WebDataset shards.

Two caption layouts, the ones open_clip / img2dataset users have:

- an index file in the folder, ``captions.jsonl`` (one ``{"file": "cats/001.jpg", "caption":
  "a cat", ...}`` per line; ``image``/``filepath`` and ``text``/``title`` are accepted too) or
  ``captions.csv`` (columns ``file`` and ``caption``); other fields become the sample's metadata;
- one ``.txt`` per image beside it (``cats/001.jpg`` + ``cats/001.txt``).

Each sample keeps its file: the key is the path without extension (``cats/001`` becomes
``cats__001``; dots and spaces become ``_``) and ``metadata["file"]`` is the relative path. Image
bytes are stored unchanged. ``OUT/captions.txt`` (one caption per line) feeds
``siglip-data train-tokenizer``; ``OUT/folder.json`` records what was built.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any

from siglip_data._atomic import atomic_write_text
from siglip_data._shards import IMAGE_EXTENSIONS
from siglip_data._shards import ShardWriter

_FILE_KEYS = ("file", "image", "filepath", "path")
_CAPTION_KEYS = ("caption", "text", "title")


def _key_of(relative: str) -> str:
    stem = str(Path(relative).with_suffix("")).replace(os.sep, "/")
    return re.sub(r"[.\s\\]", "_", stem).replace("/", "__") or "_"


def _index_rows(index: Path) -> list[tuple[str, str, dict[str, Any]]]:
    rows: list[tuple[int, dict[str, Any]]] = []
    if index.suffix == ".csv":
        with index.open(newline="", encoding="utf-8") as handle:
            rows = [(number, dict(row)) for number, row in enumerate(csv.DictReader(handle), 2)]
    else:
        with index.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    parsed = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(
                        f"{index}:{number}: expected a JSON object, got {line.strip()[:60]!r} ({error})"
                    ) from None
                if not isinstance(parsed, dict):
                    raise ValueError(
                        f"{index}:{number}: expected a JSON object, got {type(parsed).__name__}"
                    )
                rows.append((number, parsed))
    entries = []
    for number, row in rows:
        given = {key: row[key] for key in sorted(row)}
        file = next((row.pop(key) for key in _FILE_KEYS if row.get(key)), None)
        caption = next((row.pop(key) for key in _CAPTION_KEYS if key in row), None)
        if not file or not isinstance(caption, str) or not caption.strip():
            raise ValueError(
                f"{index}:{number}: expected a {'/'.join(_FILE_KEYS[:2])} path and a non-empty "
                f"{'/'.join(_CAPTION_KEYS[:2])}, got {json.dumps(given)[:120]}"
            )
        entries.append((str(file), caption, row))
    return entries


def _txt_rows(folder: Path) -> list[tuple[str, str, dict[str, Any]]]:
    images = sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and path.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS
    )
    if not images:
        raise ValueError(
            f"folder {str(folder)!r}: expected images ({', '.join(IMAGE_EXTENSIONS)}) with a "
            "captions.jsonl / captions.csv or a .txt beside each, got no image"
        )
    missing = [path for path in images if not path.with_suffix(".txt").is_file()]
    if missing:
        raise ValueError(
            f"folder {str(folder)!r}: {len(missing)} of {len(images)} images have no caption "
            f"file beside them (first: {str(missing[0].with_suffix('.txt'))!r}); give each "
            "image a .txt, or list them in captions.jsonl"
        )
    return [
        (
            str(path.relative_to(folder)),
            path.with_suffix(".txt").read_text(encoding="utf-8").strip(),
            {},
        )
        for path in images
    ]


def build_folder(
    input_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    captions: str | None = None,
    samples_per_shard: int = 1000,
) -> dict[str, Any]:
    """Write the captioned images of ``input_dir`` as shards in ``output_dir``.

    Args:
        input_dir: the folder of images.
        output_dir: where ``shard-*.tar``, ``captions.txt`` and ``folder.json`` go.
        captions: the index file inside ``input_dir``, or ``"txt"`` for one ``.txt`` per image;
            default: ``captions.jsonl`` or ``captions.csv`` if present, else ``.txt`` files.
        samples_per_shard: samples per shard.

    Returns:
        The summary written to ``folder.json`` (``num_samples``, ``shards``, ``pattern``,
        ``captions_file``, ``layout``).

    Raises:
        FileNotFoundError: ``input_dir`` or an image it lists does not exist.
        ValueError: both layouts present without ``captions``, an entry without a path or a
            caption (its line is named), an image without a caption, or no image.
    """
    folder = Path(input_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"input folder {str(folder)!r} does not exist")
    indexes = [
        folder / name for name in ("captions.jsonl", "captions.csv") if (folder / name).is_file()
    ]
    if captions is None:
        has_txt = any(folder.rglob("*.txt"))
        if indexes and has_txt:
            raise ValueError(
                f"folder {str(folder)!r} has both {indexes[0].name} and .txt caption files: "
                f"choose one with --captions {indexes[0].name} or --captions txt"
            )
        layout = indexes[0].name if indexes else "txt"
    else:
        layout = captions
    if layout == "txt":
        rows = _txt_rows(folder)
    else:
        index = folder / layout
        if not index.is_file():
            raise FileNotFoundError(f"captions file {str(index)!r} does not exist")
        rows = _index_rows(index)
    output = Path(output_dir)
    keys: set[str] = set()
    texts = []
    with ShardWriter(output, samples_per_shard=samples_per_shard) as writer:
        for relative, caption, extra in rows:
            path = folder / relative
            if not path.is_file():
                raise FileNotFoundError(f"{layout}: image {str(path)!r} does not exist")
            key = _key_of(relative)
            unique, number = key, 1
            while unique in keys:
                number += 1
                unique = f"{key}-{number}"
            keys.add(unique)
            caption = " ".join(caption.split())
            writer.write(path, caption, key=unique, metadata={"file": relative, **extra})
            texts.append(caption)
    summary = {
        "source": str(folder.resolve()),
        "layout": layout,
        "num_samples": len(texts),
        "shards": [Path(shard).name for shard in writer.shards],
        "pattern": Path(writer.shard_pattern()).name,
        "captions_file": "captions.txt",
    }
    atomic_write_text(output / "captions.txt", "\n".join(texts) + "\n")
    atomic_write_text(output / "folder.json", json.dumps(summary, indent=2) + "\n")
    return summary
