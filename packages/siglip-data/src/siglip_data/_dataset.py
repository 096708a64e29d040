"""Streaming image-text datasets: sharded, shuffled, epoch-aware, exactly resumable, damage-tolerant.

The sample stream of one epoch for one *stream* (a rank x dataloader-worker slot) is a pure
function of (seed, epoch, stream): the units (shards) are permuted with ``seed`` and ``epoch``,
dealt to streams round-robin (or, when there are fewer units than streams, the samples are), and
passed through a seeded shuffle buffer. Because the stream is deterministic, resuming is exact:
the state is (epoch, how many raw samples this stream consumed, counters), and a resumed stream
replays the undecoded bytes up to that position (no image decoding) and continues from there.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import logging
import os
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any
from typing import Literal
from typing import Protocol

import numpy as np
import numpy.typing as npt

from siglip_data._image import Augmentation
from siglip_data._image import Resample
from siglip_data._image import preprocess_image
from siglip_data._image import scale_pixels
from siglip_data._resample import ResizeBackend
from siglip_data._resample import resolve_backend
from siglip_data._shards import IMAGE_EXTENSIONS
from siglip_data._shards import RawSample
from siglip_data._shards import UnreadableShardError
from siglip_data._shards import read_shard
from siglip_data._shards import resolve_shards

logger = logging.getLogger("siglip_data")

SKIP_REASONS: tuple[str, ...] = (
    "unreadable_shard",
    "missing_image",
    "corrupt_image",
    "missing_caption",
    "empty_caption",
    "bad_caption",
    "bad_metadata",
)

Batch = dict[str, Any]


class DataQualityError(RuntimeError):
    """The whole dataset is unreadable, or more than ``max_bad_fraction`` of it is bad."""


class Tokenizer(Protocol):
    """Anything that maps a list of captions to int32 ``[batch, length]`` ids."""

    def __call__(self, texts: list[str]) -> npt.NDArray[np.int32]: ...


class Source(Protocol):
    """Where raw samples come from: an ordered list of units, each readable on its own."""

    @property
    def units(self) -> list[str]: ...

    def read_unit(self, unit: str) -> Iterator[RawSample]: ...


class ShardSource:
    """WebDataset tar shards (img2dataset layout): one unit per shard.

    Args:
        shards: a brace pattern (``"data/shard-{00000..00099}.tar"``), a directory of ``.tar``
            files, or a list of paths / patterns.
    """

    def __init__(self, shards: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> None:
        self._units = resolve_shards(shards)

    @property
    def units(self) -> list[str]:
        return list(self._units)

    def read_unit(self, unit: str) -> Iterator[RawSample]:
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
    """A folder of images with a ``captions.jsonl`` (or ``captions.csv``) index.

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
        count = len(self._entries)
        return [
            f"{start}:{min(start + self.samples_per_unit, count)}"
            for start in range(0, count, self.samples_per_unit)
        ]

    def read_unit(self, unit: str) -> Iterator[RawSample]:
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
    """A :class:`ShardSource` / :class:`FolderSource` from whatever the user passed."""
    if hasattr(source, "units") and hasattr(source, "read_unit"):
        return source  # type: ignore[no-any-return]
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir() and (
            (path / "captions.jsonl").is_file() or (path / "captions.csv").is_file()
        ):
            return FolderSource(path)
    return ShardSource(source)


@dataclasses.dataclass
class _Decoded:
    raw: RawSample
    pixels: npt.NDArray | None
    reason: str | None
    detail: str = ""


class ImageTextDataset:
    """Batches of (pixels, token ids) from shards or a folder: numpy in, numpy out.

    Iterating yields the remaining batches of the current epoch, then advances the epoch. Each
    batch is a dict: ``pixels`` float32 ``[batch, size, size, 3]`` in [-1, 1] (or uint8),
    ``token_ids`` int32 ``[batch, length]``, ``captions`` (list of str), ``keys`` (list of str),
    ``metadata`` (list of dict, ``{}`` when a sample has none).

    Splitting: streams = ``world_size * num_workers``; stream ``rank * num_workers + worker_id``
    reads every ``streams``-th unit of the epoch's unit order (or every ``streams``-th sample when
    there are fewer units than streams). Every sample of an epoch lands in exactly one stream.

    Args:
        source: a shard pattern / directory / list, a folder with ``captions.jsonl``, or a
            :class:`ShardSource` / :class:`FolderSource`.
        tokenizer: maps ``list[str]`` to int32 ``[batch, length]`` (e.g.
            :class:`~siglip_data.SentencePieceTokenizer`).
        image_size: square model resolution.
        batch_size: samples per batch (the last batch of an epoch may be smaller unless
            ``drop_last``).
        resample: see :func:`~siglip_data.preprocess_image`.
        pixel_dtype: ``"float32"`` (in [-1, 1]) or ``"uint8"``.
        augmentation: optional :class:`~siglip_data.Augmentation` (seeded per sample).
        shuffle: permute units each epoch and shuffle samples through a buffer.
        shuffle_buffer: buffer size in samples (raw bytes are buffered, not decoded pixels).
        seed: the seed of every random choice.
        drop_last: drop a final partial batch.
        rank: this process's rank in ``0..world_size-1``.
        world_size: number of data-parallel processes.
        worker_id: this dataloader worker in ``0..num_workers-1`` (set by the torch adapter).
        num_workers: dataloader workers per rank.
        num_threads: decode threads (Pillow releases the GIL while decoding and resizing).
        max_bad_fraction: raise :class:`DataQualityError` when more than this fraction of the
            samples seen is bad (checked once ``min_samples_for_check`` were seen, and at the end
            of each epoch).
        min_samples_for_check: see ``max_bad_fraction``.
        jpeg_draft: faster, not bit-exact JPEG decoding (see :func:`~siglip_data.preprocess_image`).
        resize_backend: ``"auto"``, ``"pillow"`` or ``"numba"``: who runs the Pillow filters
            (the pixels are the same; see :func:`~siglip_data.preprocess_image`).

    Raises:
        ValueError: invalid arguments (named in the message).
        ImportError: ``resize_backend="numba"`` without numba installed.

    Example:
        >>> data = ImageTextDataset(
        ...     "shards/shard-{00000..00009}.tar", tokenizer=tok, image_size=224, batch_size=32
        ... )  # doctest: +SKIP
        >>> batch = next(iter(data))  # doctest: +SKIP
    """

    def __init__(
        self,
        source: Any,
        *,
        tokenizer: Tokenizer | Callable[[list[str]], npt.NDArray[np.int32]],
        image_size: int,
        batch_size: int,
        resample: Resample = "bicubic",
        pixel_dtype: Literal["float32", "uint8"] = "float32",
        augmentation: Augmentation | None = None,
        shuffle: bool = True,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        worker_id: int = 0,
        num_workers: int = 1,
        num_threads: int = 0,
        max_bad_fraction: float = 0.1,
        min_samples_for_check: int = 200,
        jpeg_draft: bool = False,
        resize_backend: ResizeBackend = "auto",
    ) -> None:
        _require_int("image_size", image_size, minimum=1)
        _require_int("batch_size", batch_size, minimum=1)
        _require_int("shuffle_buffer", shuffle_buffer, minimum=1)
        _require_int("world_size", world_size, minimum=1)
        _require_int("num_workers", num_workers, minimum=1)
        _require_int("num_threads", num_threads, minimum=0)
        _require_int("min_samples_for_check", min_samples_for_check, minimum=1)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if not 0 <= worker_id < num_workers:
            raise ValueError(
                f"worker_id must be in [0, num_workers={num_workers}), got {worker_id}"
            )
        if pixel_dtype not in ("float32", "uint8"):
            raise ValueError(f"pixel_dtype must be 'float32' or 'uint8', got {pixel_dtype!r}")
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
        # Checked here: inside the decode loop a missing numba would count as bad samples.
        resolve_backend(resize_backend)
        self.source: Source = as_source(source)
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.batch_size = batch_size
        self.resample = resample
        self.pixel_dtype = pixel_dtype
        self.augmentation = augmentation
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.worker_id = worker_id
        self.num_workers = num_workers
        self.num_threads = num_threads
        self.max_bad_fraction = max_bad_fraction
        self.min_samples_for_check = min_samples_for_check
        self.jpeg_draft = jpeg_draft
        self.resize_backend = resize_backend
        self._units = self.source.units
        if not self._units:
            raise ValueError(f"source {self.source!r} has no units to read")
        self._epoch = 0
        self._position = 0
        self._seen = 0
        self._skipped = dict.fromkeys(SKIP_REASONS, 0)

    # -- streams ---------------------------------------------------------------------------
    @property
    def num_streams(self) -> int:
        """``world_size * num_workers``: how many disjoint streams share each epoch."""
        return self.world_size * self.num_workers

    @property
    def stream(self) -> int:
        """This dataset's stream index ``rank * num_workers + worker_id``."""
        return self.rank * self.num_workers + self.worker_id

    @property
    def epoch(self) -> int:
        """The epoch the next batch comes from."""
        return self._epoch

    @property
    def skipped(self) -> dict[str, int]:
        """Bad samples (and unreadable shards) skipped so far, by reason (cumulative)."""
        return dict(self._skipped)

    @property
    def num_seen(self) -> int:
        """Samples examined so far (good and bad, cumulative)."""
        return self._seen

    def with_worker(self, worker_id: int, num_workers: int) -> ImageTextDataset:
        """A copy that is worker ``worker_id`` of ``num_workers`` (fresh state, same epoch)."""
        clone = copy.copy(self)
        _require_int("num_workers", num_workers, minimum=1)
        if not 0 <= worker_id < num_workers:
            raise ValueError(f"worker_id must be in [0, {num_workers}), got {worker_id}")
        clone.worker_id = worker_id
        clone.num_workers = num_workers
        clone._position = 0
        clone._seen = 0
        clone._skipped = dict.fromkeys(SKIP_REASONS, 0)
        return clone

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning on the next iteration."""
        _require_int("epoch", epoch, minimum=0)
        self._epoch = epoch
        self._position = 0

    def unit_order(self, epoch: int) -> list[str]:
        """The epoch's unit order (shared by every stream)."""
        if not self.shuffle:
            return list(self._units)
        rng = np.random.default_rng([self.seed, epoch, 0])
        return [self._units[index] for index in rng.permutation(len(self._units))]

    # -- state -------------------------------------------------------------------------------
    def _fingerprint(self) -> dict[str, Any]:
        return {
            "num_units": len(self._units),
            "seed": self.seed,
            "shuffle": self.shuffle,
            "shuffle_buffer": self.shuffle_buffer,
            "batch_size": self.batch_size,
            "stream": self.stream,
            "num_streams": self.num_streams,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly after the last yielded batch (JSON-able)."""
        return {
            "epoch": self._epoch,
            "position": self._position,
            "seen": self._seen,
            "skipped": dict(self._skipped),
            "fingerprint": self._fingerprint(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict` taken on an identically configured dataset.

        Raises:
            ValueError: the state came from a differently configured dataset or stream.
        """
        missing = {"epoch", "position", "seen", "skipped", "fingerprint"} - set(state)
        if missing:
            raise ValueError(f"state is missing {sorted(missing)}")
        expected = self._fingerprint()
        for name, value in state["fingerprint"].items():
            if expected.get(name) != value:
                raise ValueError(
                    f"state was saved with {name}={value!r} but this dataset has "
                    f"{name}={expected.get(name)!r}: resuming would not be exact"
                )
        self._epoch = int(state["epoch"])
        self._position = int(state["position"])
        self._seen = int(state["seen"])
        self._skipped = dict.fromkeys(SKIP_REASONS, 0) | {
            k: int(v) for k, v in state["skipped"].items()
        }

    # -- the stream --------------------------------------------------------------------------
    def _raw_samples(
        self, epoch: int, counting: list[bool], failed_units: list[str]
    ) -> Iterator[RawSample]:
        order = self.unit_order(epoch)
        streams, stream = self.num_streams, self.stream
        by_unit = len(order) >= streams
        units = order[stream::streams] if by_unit else order
        index = 0
        for unit in units:
            try:
                for sample in self.source.read_unit(unit):
                    if by_unit or index % streams == stream:
                        yield sample
                    index += 1
            except UnreadableShardError as error:
                failed_units.append(unit)
                if counting[0]:
                    self._skipped["unreadable_shard"] += 1
                    logger.warning("skipped the rest of unit %s: %s", unit, error)

    def _shuffled(self, samples: Iterator[RawSample], epoch: int) -> Iterator[RawSample]:
        if not self.shuffle:
            yield from samples
            return
        rng = np.random.default_rng([self.seed, epoch, self.stream + 1, 1])
        buffer: list[RawSample] = []
        for sample in samples:
            if len(buffer) < self.shuffle_buffer:
                buffer.append(sample)
                continue
            slot = int(rng.integers(len(buffer)))
            yield buffer[slot]
            buffer[slot] = sample
        for slot in rng.permutation(len(buffer)):
            yield buffer[slot]

    def _decode(self, raw: RawSample, epoch: int, position: int) -> _Decoded:
        if raw.problem is not None:
            return _Decoded(raw, None, raw.problem)
        if raw.image is None:
            return _Decoded(raw, None, "missing_image")
        if raw.caption is None:
            return _Decoded(raw, None, "missing_caption")
        if not raw.caption.strip():
            return _Decoded(raw, None, "empty_caption")
        rng = None
        if self.augmentation is not None:
            rng = np.random.default_rng([self.seed, epoch, self.stream, position, 2])
        try:
            pixels = preprocess_image(
                raw.image,
                size=self.image_size,
                resample=self.resample,
                augmentation=self.augmentation,
                rng=rng,
                dtype=self._decode_dtype,
                jpeg_draft=self.jpeg_draft,
                resize_backend=self.resize_backend,
            )
        except Exception as error:  # any failure to decode untrusted bytes is a bad sample
            return _Decoded(raw, None, "corrupt_image", f"{type(error).__name__}: {error}")
        return _Decoded(raw, pixels, None)

    @property
    def _decode_dtype(self) -> Literal["float32", "uint8"]:
        # The Pillow filters give uint8 pixels; those are scaled to [-1, 1] a batch at a time in
        # _stack_pixels, straight into the batch array (one allocation instead of two a sample).
        if self.pixel_dtype == "float32" and self.resample != "bilinear":
            return "uint8"
        return self.pixel_dtype

    def _stack_pixels(self, samples: list[_Decoded]) -> npt.NDArray:
        images = [sample.pixels for sample in samples if sample.pixels is not None]
        if self._decode_dtype == self.pixel_dtype:
            return np.stack(images)
        pixels = np.empty((len(images), *images[0].shape), dtype=np.float32)
        for image, target in zip(images, pixels):
            scale_pixels(image, out=target)
        return pixels

    def _make_batch(self, samples: list[_Decoded]) -> Batch:
        captions = [sample.raw.caption or "" for sample in samples]
        return {
            "pixels": self._stack_pixels(samples),
            "token_ids": np.asarray(self.tokenizer(captions), dtype=np.int32),
            "captions": captions,
            "keys": [sample.raw.key for sample in samples],
            "metadata": [sample.raw.metadata or {} for sample in samples],
        }

    def _any_unit_readable(self, excluded: list[str]) -> bool:
        """Whether some unit outside ``excluded`` yields a sample (only probed on failure)."""
        for unit in self._units:
            if unit in excluded:
                continue
            try:
                for _ in self.source.read_unit(unit):
                    return True
            except UnreadableShardError:
                continue
        return False

    def _check_quality(self, final: bool) -> None:
        bad = sum(count for reason, count in self._skipped.items() if reason != "unreadable_shard")
        checkable = self._seen and (final or self._seen >= self.min_samples_for_check)
        if checkable and bad > self.max_bad_fraction * self._seen:
            raise DataQualityError(
                f"{bad} of {self._seen} samples were bad ({bad / self._seen:.1%} > "
                f"max_bad_fraction={self.max_bad_fraction:.1%}): {self.skipped}"
            )

    def iter_with_state(self) -> Iterator[tuple[Batch, dict[str, Any]]]:
        """Like iterating, but also yields the state right after each batch.

        Wrappers that prefetch (the torch and JAX adapters) keep the state of the last batch they
        handed out, so their own ``state_dict`` stays exact.
        """
        epoch = self._epoch
        counting = [False]
        failed_units: list[str] = []
        stream = self._shuffled(self._raw_samples(epoch, counting, failed_units), epoch)
        position = 0
        for _ in range(self._position):
            if next(stream, None) is None:
                break
            position += 1
        counting[0] = True
        pool = ThreadPoolExecutor(self.num_threads) if self.num_threads > 0 else None
        batch: list[_Decoded] = []
        epoch_good = 0
        try:
            while True:
                chunk = list(islice(stream, self.batch_size - len(batch)))
                if not chunk:
                    break
                positions = range(position, position + len(chunk))
                decode = self._decode
                if pool is not None:
                    results = list(pool.map(decode, chunk, [epoch] * len(chunk), positions))
                else:
                    results = [decode(raw, epoch, pos) for raw, pos in zip(chunk, positions)]
                position += len(chunk)
                for result in results:
                    self._seen += 1
                    if result.reason is None:
                        batch.append(result)
                        continue
                    self._skipped[result.reason] += 1
                    logger.warning(
                        "skipped sample %r from %s: %s %s",
                        result.raw.key,
                        result.raw.source,
                        result.reason,
                        result.detail,
                    )
                self._check_quality(final=False)
                if len(batch) == self.batch_size:
                    self._position = position
                    epoch_good += len(batch)
                    made = self._make_batch(batch)
                    batch = []
                    yield made, self.state_dict()
            self._check_quality(final=True)
            nothing_read = position == 0 and failed_units
            if nothing_read and not self._any_unit_readable(failed_units):
                raise DataQualityError(
                    f"no sample could be read from source {self.source!r}: all "
                    f"{len(self._units)} units are unreadable (first: {failed_units[0]}); "
                    "check the paths"
                )
            if batch and not self.drop_last:
                self._position = position
                made = self._make_batch(batch)
                self._epoch, self._position = epoch + 1, 0
                yield made, self.state_dict()
            else:
                self._epoch, self._position = epoch + 1, 0
        finally:
            if pool is not None:
                pool.shutdown(wait=True)

    def __iter__(self) -> Iterator[Batch]:
        for batch, _ in self.iter_with_state():
            yield batch

    def repeat(self) -> Iterator[Batch]:
        """Batches forever, epoch after epoch, resumable at any point.

        For step-based training: every rank always has a next batch, so ranks whose streams
        differ by a few samples never wait on each other at an epoch's end.

        Raises:
            DataQualityError: two epochs in a row gave this stream no batch at all.
        """
        yield from repeat_epochs(self)

    def __repr__(self) -> str:
        return (
            f"ImageTextDataset({self.source!r}, image_size={self.image_size}, "
            f"batch_size={self.batch_size}, stream={self.stream}/{self.num_streams}, "
            f"epoch={self._epoch})"
        )


def repeat_epochs(loader: Any) -> Iterator[Any]:
    """Iterate ``loader`` (one epoch per ``iter``) forever; stop on two empty epochs in a row."""
    empty_epochs = 0
    while True:
        produced = False
        for batch in loader:
            produced = True
            yield batch
        empty_epochs = 0 if produced else empty_epochs + 1
        if empty_epochs >= 2:
            raise DataQualityError(
                f"{loader!r} produced no batch in two consecutive epochs: fewer samples than "
                "ranks x workers, or drop_last with fewer samples than batch_size?"
            )


def _require_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
