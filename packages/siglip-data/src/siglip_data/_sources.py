"""Where raw samples come from: WebDataset tar shards or a folder of images with a captions index.

A source is an ordered list of *units* (a shard, or a chunk of folder entries), each readable on
its own, so that :class:`~siglip_data.ImageTextDataset` can deal whole units to ranks and workers.
Anything with ``units`` and ``read_unit`` (yielding :class:`~siglip_data.RawSample`) is a source.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Iterable
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from typing import Protocol

from siglip_data._shards import IMAGE_EXTENSIONS
from siglip_data._shards import RawSample
from siglip_data._shards import read_shard
from siglip_data._shards import resolve_shards


class Source(Protocol):
    """Where raw samples come from: an ordered list of units, each readable on its own.

    ``read_unit`` may raise :class:`~siglip_data.UnreadableShardError` after yielding part of a
    unit; the dataset counts that as one ``unreadable_shard`` skip and moves on.
    """

    @property
    def units(self) -> list[str]:
        """The unit names, in a fixed order (the dataset permutes them per epoch)."""
        ...

    def read_unit(self, unit: str) -> Iterator[RawSample]:
        """The raw samples of one unit, in a fixed order."""
        ...


class ShardSource:
    """WebDataset tar shards (img2dataset layout): one unit per shard.

    Args:
        shards: a brace pattern (``"data/shard-{00000..00099}.tar"``), a glob, a directory of
            ``.tar`` files, or a list of paths / patterns (see :func:`~siglip_data.resolve_shards`).

    Raises:
        ValueError: the pattern, glob or directory names no shard.

    Examples:
        >>> source = ShardSource("data/shard-{00000..00002}.tar")
        >>> source.units
        ['data/shard-00000.tar', 'data/shard-00001.tar', 'data/shard-00002.tar']
    """

    def __init__(self, shards: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> None:
        self._units = resolve_shards(shards)

    @property
    def units(self) -> list[str]:
        """The shard paths, in the order given (globs and directories sorted)."""
        return list(self._units)

    def read_unit(self, unit: str) -> Iterator[RawSample]:
        """The samples of one shard (see :func:`~siglip_data.read_shard`)."""
        return read_shard(unit)

    def __repr__(self) -> str:
        return f"ShardSource({len(self._units)} shards, first={self._units[0]!r})"


@dataclasses.dataclass(frozen=True)
class _FolderEntry:
    key: str
    file: str
    caption: str | None
    metadata: dict[str, Any] | None


class FolderSource:
    r"""A folder of images with a ``captions.jsonl`` (or ``captions.csv``) index.

    Each JSON line is ``{"file": "cats/001.jpg", "caption": "a cat", ...}``; a CSV has a header
    with at least ``file`` and ``caption`` columns. Other fields become the sample's metadata; the
    key is the file path without extension. Units are consecutive chunks of ``samples_per_unit``
    entries, so the folder splits across ranks and workers like shards.

    Args:
        directory: the folder.
        captions: index file name inside it (default: ``captions.jsonl``, else ``captions.csv``).
        samples_per_unit: entries per unit.

    Raises:
        FileNotFoundError: no index file.
        ValueError: an index line without ``file`` (its line number is named), or no entries.

    Examples:
        >>> import json
        >>> import pathlib
        >>> import tempfile
        >>> from PIL import Image
        >>> directory = tempfile.TemporaryDirectory()
        >>> folder = pathlib.Path(directory.name)
        >>> for index, color in enumerate(["red", "green", "blue"]):
        ...     Image.new("RGB", (8, 8), color).save(folder / f"{color}.png")
        >>> lines = [
        ...     {"file": f"{color}.png", "caption": f"a {color} square", "label": index}
        ...     for index, color in enumerate(["red", "green", "blue"])
        ... ]
        >>> _ = (folder / "captions.jsonl").write_text("\n".join(map(json.dumps, lines)))
        >>> source = FolderSource(folder, samples_per_unit=2)
        >>> source.units
        ['0:2', '2:3']
        >>> [(sample.key, sample.caption, sample.metadata) for sample in source.read_unit("2:3")]
        [('blue', 'a blue square', {'label': 2})]
        >>> directory.cleanup()
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        captions: str | None = None,
        samples_per_unit: int = 256,
    ) -> None:
        self.directory = Path(directory)
        if samples_per_unit < 1:
            raise ValueError(f"samples_per_unit must be >= 1, got {samples_per_unit}")
        if captions is None:
            candidates = [self.directory / "captions.jsonl", self.directory / "captions.csv"]
            found = [path for path in candidates if path.is_file()]
            if not found:
                raise FileNotFoundError(
                    f"directory {str(self.directory)!r} has no captions.jsonl or captions.csv"
                )
            index = found[0]
        else:
            index = self.directory / captions
            if not index.is_file():
                raise FileNotFoundError(f"captions file {str(index)!r} does not exist")
        self.index_file = index
        self._entries = self._read_index(index)
        if not self._entries:
            raise ValueError(f"captions file {str(index)!r} lists no images")
        self.samples_per_unit = samples_per_unit

    @staticmethod
    def _read_index(index: Path) -> list[_FolderEntry]:
        rows: list[tuple[int, dict[str, Any]]] = []
        if index.suffix == ".csv":
            with index.open(newline="", encoding="utf-8") as handle:
                for line_number, row in enumerate(csv.DictReader(handle), start=2):
                    rows.append((line_number, dict(row)))
        else:
            with index.open(encoding="utf-8") as handle:
                for line_number, line in enumerate(handle, start=1):
                    if line.strip():
                        try:
                            parsed = json.loads(line)
                        except json.JSONDecodeError as error:
                            raise ValueError(f"{index}:{line_number}: not JSON: {error}") from error
                        if not isinstance(parsed, dict):
                            raise ValueError(f"{index}:{line_number}: expected an object")
                        rows.append((line_number, parsed))
        entries = []
        for line_number, row in rows:
            file = row.pop("file", None)
            if not file:
                raise ValueError(f"{index}:{line_number}: entry has no 'file' field: {row}")
            caption = row.pop("caption", None)
            key = str(Path(file).with_suffix(""))
            entries.append(_FolderEntry(key, str(file), caption, row or None))
        return entries

    @property
    def units(self) -> list[str]:
        """``"start:stop"`` ranges of index entries, ``samples_per_unit`` long (the last shorter)."""
        count = len(self._entries)
        return [
            f"{start}:{min(start + self.samples_per_unit, count)}"
            for start in range(0, count, self.samples_per_unit)
        ]

    def read_unit(self, unit: str) -> Iterator[RawSample]:
        """The entries of one unit; an unreadable image file gives a sample without an image."""
        start, stop = (int(part) for part in unit.split(":"))
        for entry in self._entries[start:stop]:
            path = self.directory / entry.file
            extension = path.suffix.lower().lstrip(".")
            try:
                image: bytes | None = path.read_bytes()
            except OSError:
                image = None
            yield RawSample(
                key=entry.key,
                image=image,
                image_format=extension if extension in IMAGE_EXTENSIONS else None,
                caption=entry.caption,
                metadata=entry.metadata,
                source=str(self.index_file),
            )

    def __repr__(self) -> str:
        return f"FolderSource({str(self.directory)!r}, {len(self._entries)} images)"


def as_source(source: Any) -> Source:
    """``source`` if it is a source, a :class:`FolderSource` for a captioned folder, else shards."""
    if hasattr(source, "units") and hasattr(source, "read_unit"):
        return source  # type: ignore[no-any-return]
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir() and (
            (path / "captions.jsonl").is_file() or (path / "captions.csv").is_file()
        ):
            return FolderSource(path)
    return ShardSource(source)
