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
import dataclasses
import functools
import logging
from collections.abc import Callable
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Any
from typing import Literal
from typing import Protocol

import numpy as np
import numpy.typing as npt

from siglip_data._captions import CaptionsPerImage
from siglip_data._captions import caption_rng
from siglip_data._captions import check_captions_per_image
from siglip_data._captions import choose_captions
from siglip_data._captions import sample_captions
from siglip_data._image import RESAMPLE_METHODS
from siglip_data._image import Augmentation
from siglip_data._image import Resample
from siglip_data._image import normalize_uint8_pixels
from siglip_data._image import preprocess_image
from siglip_data._naflex import NaflexOptions
from siglip_data._naflex import NaflexPatches
from siglip_data._naflex import collate_naflex
from siglip_data._naflex import naflex_preprocess
from siglip_data._resample import RESIZE_BACKENDS
from siglip_data._resample import ResizeBackend
from siglip_data._resample import resolve_backend
from siglip_data._shards import RawSample
from siglip_data._shards import UnreadableShardError
from siglip_data._sources import Source
from siglip_data._sources import as_source

logger = logging.getLogger("siglip_data")

# The keys of ``ImageTextDataset.skipped``: why a sample (or the rest of a unit) was skipped.
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


def _require_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


class DataQualityError(RuntimeError):
    """The whole dataset is unreadable, or more than ``max_bad_fraction`` of it is bad."""


class Tokenizer(Protocol):
    """Anything that maps a list of captions to int32 ``[batch, length]`` ids."""

    def __call__(self, texts: list[str]) -> npt.NDArray[np.int32]: ...


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
    """How :class:`ImageTextDataset` turns each image into pixels (see ``preprocess_image``).

    Attributes:
        resample: ``"bicubic"`` (default; Pillow, as HF ``SiglipImageProcessor``), ``"bilinear"``
            (``tf.image.resize`` without antialias, as big_vision trained the released
            checkpoints) or ``"pil_bilinear"`` (Pillow, as HF SigLIP 2 fixed-resolution).
        pixel_dtype: ``"float32"`` (default, in [-1, 1]) or ``"uint8"`` (0..255, to scale later
            with ``normalize_uint8_pixels``, e.g. on the accelerator).
        augmentation: optional ``Augmentation``, seeded per sample (default None: the SigLIP
            recipe has none).
        jpeg_draft: faster, not bit-exact JPEG decoding (default False).
        resize_backend: who runs the Pillow filters: ``"auto"`` (default: numba when installed),
            ``"pillow"`` or ``"numba"``; the pixels are the same.
        num_threads: decode threads (default 0: decode in the iterating thread; Pillow releases
            the GIL while decoding and resizing).

    Raises:
        ValueError: an unknown ``resample``, ``pixel_dtype`` or ``resize_backend``, or
            ``num_threads < 0``.

    Examples:
        >>> DecodeOptions(pixel_dtype="uint8", num_threads=4)
        DecodeOptions(resample='bicubic', pixel_dtype='uint8', augmentation=None, jpeg_draft=False, resize_backend='auto', num_threads=4)
    """

    resample: Resample = "bicubic"
    pixel_dtype: Literal["float32", "uint8"] = "float32"
    augmentation: Augmentation | None = None
    jpeg_draft: bool = False
    resize_backend: ResizeBackend = "auto"
    num_threads: int = 0

    def __post_init__(self) -> None:
        if self.resample not in RESAMPLE_METHODS:
            raise ValueError(f"resample must be one of {RESAMPLE_METHODS}, got {self.resample!r}")
        if self.pixel_dtype not in ("float32", "uint8"):
            raise ValueError(f"pixel_dtype must be 'float32' or 'uint8', got {self.pixel_dtype!r}")
        if self.resize_backend not in RESIZE_BACKENDS:
            raise ValueError(
                f"resize_backend must be one of {RESIZE_BACKENDS}, got {self.resize_backend!r}"
            )
        _require_int("num_threads", self.num_threads, minimum=0)


@dataclasses.dataclass(frozen=True)
class Topology:
    """Which share of every epoch a dataset reads: one of ``world_size * num_workers`` streams.

    Stream ``rank * num_workers + worker_id`` reads every ``num_streams``-th unit of the epoch's
    unit order (or every ``num_streams``-th sample when there are fewer units than streams), so
    every sample of an epoch lands in exactly one stream.

    Attributes:
        rank: this process's rank in ``0..world_size-1`` (default 0).
        world_size: number of data-parallel processes (default 1).
        worker_id: this dataloader worker in ``0..num_workers-1`` (default 0). The torch loader
            sets it; pass the per-rank topology (``worker_id=0, num_workers=1``) to it.
        num_workers: dataloader workers per rank (default 1).

    Raises:
        ValueError: ``world_size`` or ``num_workers`` below 1, or ``rank`` / ``worker_id`` out
            of range.

    Examples:
        >>> topology = Topology(rank=1, world_size=2, worker_id=2, num_workers=3)
        >>> topology.stream, topology.num_streams
        (5, 6)
    """

    rank: int = 0
    world_size: int = 1
    worker_id: int = 0
    num_workers: int = 1

    def __post_init__(self) -> None:
        _require_int("world_size", self.world_size, minimum=1)
        _require_int("num_workers", self.num_workers, minimum=1)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must be in [0, world_size={self.world_size}), got {self.rank}")
        if not 0 <= self.worker_id < self.num_workers:
            raise ValueError(
                f"worker_id must be in [0, num_workers={self.num_workers}), got {self.worker_id}"
            )

    @property
    def num_streams(self) -> int:
        """``world_size * num_workers``: how many disjoint streams share each epoch."""
        return self.world_size * self.num_workers

    @property
    def stream(self) -> int:
        """This stream's index, ``rank * num_workers + worker_id``."""
        return self.rank * self.num_workers + self.worker_id


@dataclasses.dataclass(frozen=True)
class QualityPolicy:
    """When bad data stops a run. Bad samples are always skipped, counted and logged.

    Attributes:
        max_bad_fraction: raise :class:`DataQualityError` when more than this fraction of the
            samples seen is bad (default 0.1). Unreadable shards are not samples and do not count
            towards it; a source with no readable unit at all always raises.
        min_samples_for_check: the fraction is checked once this many samples were seen
            (default 200), and at the end of every epoch.

    Raises:
        ValueError: ``max_bad_fraction`` outside [0, 1] or ``min_samples_for_check < 1``.

    Examples:
        >>> QualityPolicy(max_bad_fraction=0.5)
        QualityPolicy(max_bad_fraction=0.5, min_samples_for_check=200)
    """

    max_bad_fraction: float = 0.1
    min_samples_for_check: int = 200

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {self.max_bad_fraction}")
        _require_int("min_samples_for_check", self.min_samples_for_check, minimum=1)


@dataclasses.dataclass
class _Decoded:
    raw: RawSample
    pixels: npt.NDArray | NaflexPatches | None
    reason: str | None
    detail: str = ""


@dataclasses.dataclass
class _UnitFailures:
    """The units of one epoch's stream that stopped with ``UnreadableShardError``, in order.

    The raw reader records them as it meets them; the batch loop takes the ones not counted yet
    and counts each once as ``unreadable_shard``. A resumed epoch first replays its stream up to
    the saved position; the failures met on the way were counted by the run that saved the
    state, so the loop marks them counted without counting them again.
    """

    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    _counted: int = 0

    def record(self, unit: str, error: Exception) -> None:
        self.failed.append((unit, str(error)))

    def mark_counted(self) -> None:
        self._counted = len(self.failed)

    def take_uncounted(self) -> list[tuple[str, str]]:
        uncounted = self.failed[self._counted :]
        self.mark_counted()
        return uncounted

    @property
    def units(self) -> list[str]:
        return [unit for unit, _ in self.failed]


class ImageTextDataset:
    """Batches of (pixels, token ids) from shards or a folder: numpy in, numpy out.

    Iterating yields the remaining batches of the current epoch, then advances the epoch. Each
    batch is a dict: ``pixels`` float32 ``[batch, size, size, 3]`` in [-1, 1] (or uint8),
    ``token_ids`` int32 ``[batch, length]``, ``captions`` (list of str), ``keys`` (list of str),
    ``metadata`` (list of dict, ``{}`` when a sample has none).

    With ``naflex`` (a :class:`~siglip_data.naflex.NaflexOptions`) images keep their aspect
    ratio instead: each batch draws a sequence length ``length`` from
    ``naflex.sequence_lengths`` (seeded by the stream position, so resuming is exact) and
    carries ``patches`` float32 ``[batch, length, 3 * p * p]``, ``patch_mask`` bool
    ``[batch, length]`` and ``spatial_shapes`` int32 ``[batch, 2]`` in place of ``pixels``
    (see ``siglip_data.naflex.naflex_preprocess``); never ragged.

    Several captions per image (``captions_per_image``): a sample's captions are its metadata's
    ``"captions"`` list when present (else its one caption); each batch row is then one
    (image, caption) pair, the image's pixels repeated, and the batch also has ``group_key`` (list
    of str, the image's key on every row of its captions) for a multi-positive loss.
    ``batch_size`` still counts images: ``"all"`` gives as many rows as the images have captions,
    an int ``k`` exactly ``k * batch_size`` rows (``k`` captions drawn per image and epoch,
    repeated only when an image has fewer).

    The dataset reads one stream of ``topology`` (see :class:`Topology`). Bad samples are skipped
    and counted in :attr:`skipped` by reason: ``unreadable_shard`` (the rest of a unit),
    ``missing_image``, ``corrupt_image``, ``missing_caption``, ``empty_caption``, ``bad_caption``,
    ``bad_metadata``; ``quality`` says when too many stop the run.

    Args:
        source: a shard pattern / directory / list, a folder with ``captions.jsonl``, or a
            :class:`~siglip_data.ShardSource` / :class:`~siglip_data.FolderSource` (or any object
            with ``units`` and ``read_unit``).
        tokenizer: maps ``list[str]`` to int32 ``[batch, length]`` (e.g.
            :class:`~siglip_data.SentencePieceTokenizer`).
        image_size: square model resolution (exactly one of ``image_size`` and ``naflex``).
        batch_size: samples per batch (the last batch of an epoch may be smaller unless
            ``drop_last``).
        shuffle: permute units each epoch and shuffle samples through a buffer.
        shuffle_buffer: buffer size in samples (raw bytes are buffered, not decoded pixels).
        seed: the seed of every random choice (unit order, buffer, augmentation).
        drop_last: drop a final partial batch.
        decode: how images become pixels (:class:`DecodeOptions`).
        topology: this dataset's rank and worker (:class:`Topology`).
        quality: when bad data stops the run (:class:`QualityPolicy`).
        naflex: NaFlex batches (:class:`~siglip_data.naflex.NaflexOptions`) instead of square
            pixels; needs ``decode.pixel_dtype="float32"`` and no augmentation
            (``decode.resample`` is not used: the order is ``naflex.order``).
        captions_per_image: None (one row per sample, its caption), ``"all"`` or an int ``k``
            (one row per drawn caption of each image; see above).

    Raises:
        ValueError: invalid arguments (named in the message), or a source without units.
        TypeError: ``decode``, ``topology`` or ``quality`` of the wrong type.
        ImportError: ``resize_backend="numba"`` without numba installed.

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> from siglip_data import write_shards
        >>> directory = tempfile.TemporaryDirectory()
        >>> rng = np.random.default_rng(0)
        >>> samples = [
        ...     (rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), f"photo {index}")
        ...     for index in range(10)
        ... ]
        >>> shards = write_shards(samples, directory.name, samples_per_shard=4)
        >>> def tokenizer(captions):  # any list[str] -> int32 [batch, length]
        ...     return np.ones((len(captions), 8), dtype=np.int32)
        >>> data = ImageTextDataset(shards, tokenizer=tokenizer, image_size=8, batch_size=4)
        >>> batch = next(iter(data))
        >>> batch["pixels"].shape, batch["token_ids"].shape
        ((4, 8, 8, 3), (4, 8))
        >>> state = data.state_dict()  # resume exactly with load_state_dict(state)
        >>> directory.cleanup()
    """

    def __init__(
        self,
        source: Any,
        *,
        tokenizer: Tokenizer | Callable[[list[str]], npt.NDArray[np.int32]],
        image_size: int | None = None,
        batch_size: int,
        shuffle: bool = True,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        drop_last: bool = False,
        decode: DecodeOptions = DecodeOptions(),
        topology: Topology = Topology(),
        quality: QualityPolicy = QualityPolicy(),
        naflex: NaflexOptions | None = None,
        captions_per_image: CaptionsPerImage = None,
    ) -> None:
        if (image_size is None) == (naflex is None):
            raise ValueError(
                "pass exactly one of image_size (square pixels) and naflex (NaflexOptions: "
                f"native aspect ratio), got image_size={image_size!r} and naflex={naflex!r}"
            )
        if naflex is not None:
            if not isinstance(naflex, NaflexOptions):
                raise TypeError(f"naflex must be a NaflexOptions, got {naflex!r}")
            if decode.pixel_dtype != "float32" or decode.augmentation is not None:
                raise ValueError(
                    "naflex batches are float32 patches without augmentation: use "
                    "DecodeOptions(pixel_dtype='float32', augmentation=None)"
                )
        else:
            _require_int("image_size", image_size, minimum=1)
        self.captions_per_image = check_captions_per_image(captions_per_image)
        if naflex is not None and self.captions_per_image is not None:
            raise ValueError(
                "naflex batches take one caption per image: captions_per_image must be None"
            )
        _require_int("batch_size", batch_size, minimum=1)
        _require_int("shuffle_buffer", shuffle_buffer, minimum=1)
        for name, value, expected in (
            ("decode", decode, DecodeOptions),
            ("topology", topology, Topology),
            ("quality", quality, QualityPolicy),
        ):
            if not isinstance(value, expected):
                raise TypeError(f"{name} must be a {expected.__name__}, got {value!r}")
        # Checked here: inside the decode loop a missing numba would count as bad samples.
        resolve_backend(decode.resize_backend)
        self.source: Source = as_source(source)
        self.tokenizer = tokenizer
        self.image_size = None if image_size is None else int(image_size)
        self.naflex = naflex
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.drop_last = drop_last
        self.decode = decode
        self.topology = topology
        self.quality = quality
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
        return self.topology.num_streams

    @property
    def stream(self) -> int:
        """This dataset's stream index ``rank * num_workers + worker_id``."""
        return self.topology.stream

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
        """A copy that is worker ``worker_id`` of ``num_workers`` (fresh state, same epoch).

        Args:
            worker_id: the worker, in ``0..num_workers-1``.
            num_workers: dataloader workers per rank.

        Returns:
            The copy; this dataset is unchanged.

        Raises:
            ValueError: ``num_workers < 1`` or ``worker_id`` out of range.
        """
        clone = copy.copy(self)
        clone.topology = dataclasses.replace(
            self.topology, worker_id=worker_id, num_workers=num_workers
        )
        clone._position = 0
        clone._seen = 0
        clone._skipped = dict.fromkeys(SKIP_REASONS, 0)
        return clone

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning on the next iteration.

        Args:
            epoch: the epoch (its unit order and shuffle depend on it).

        Raises:
            ValueError: a negative or non-integer epoch.
        """
        _require_int("epoch", epoch, minimum=0)
        self._epoch = epoch
        self._position = 0

    def unit_order(self, epoch: int) -> list[str]:
        """The epoch's unit order, shared by every stream.

        Args:
            epoch: the epoch.

        Returns:
            The source's units, permuted with ``(seed, epoch)`` when ``shuffle``.
        """
        if not self.shuffle:
            return list(self._units)
        rng = np.random.default_rng([self.seed, epoch, 0])
        return [self._units[index] for index in rng.permutation(len(self._units))]

    # -- state -------------------------------------------------------------------------------
    def _fingerprint(self) -> dict[str, Any]:
        fingerprint: dict[str, Any] = {
            "num_units": len(self._units),
            "seed": self.seed,
            "shuffle": self.shuffle,
            "shuffle_buffer": self.shuffle_buffer,
            "batch_size": self.batch_size,
            "stream": self.stream,
            "num_streams": self.num_streams,
        }
        if self.naflex is not None:  # the lengths drawn depend on them
            fingerprint["naflex_sequence_lengths"] = list(self.naflex.sequence_lengths)
        if self.captions_per_image is not None:
            fingerprint["captions_per_image"] = self.captions_per_image
        return fingerprint

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

        Args:
            state: what :meth:`state_dict` returned (possibly through JSON).

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
    def _raw_samples(self, epoch: int, failures: _UnitFailures) -> Iterator[RawSample]:
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
                failures.record(unit, error)

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

    def _decode(self, raw: RawSample, epoch: int, position: int, length: int = 0) -> _Decoded:
        if raw.problem is not None:
            return _Decoded(raw, None, raw.problem)
        if raw.image is None:
            return _Decoded(raw, None, "missing_image")
        if raw.caption is None:
            return _Decoded(raw, None, "missing_caption")
        if not raw.caption.strip():
            return _Decoded(raw, None, "empty_caption")
        if self.captions_per_image is not None and not sample_captions(raw.caption, raw.metadata):
            return _Decoded(raw, None, "bad_caption", "metadata 'captions' is not a list of text")
        rng = None
        if self.decode.augmentation is not None:
            rng = np.random.default_rng([self.seed, epoch, self.stream, position, 2])
        try:
            if self.naflex is not None:
                record = naflex_preprocess(
                    raw.image,
                    patch_size=self.naflex.patch_size,
                    max_num_patches=length,
                    order=self.naflex.order,
                )
                return _Decoded(raw, record, None)
            assert self.image_size is not None
            pixels = preprocess_image(
                raw.image,
                size=self.image_size,
                resample=self.decode.resample,
                augmentation=self.decode.augmentation,
                rng=rng,
                dtype=self._decode_dtype,
                jpeg_draft=self.decode.jpeg_draft,
                resize_backend=self.decode.resize_backend,
            )
        except Exception as error:  # any failure to decode untrusted bytes is a bad sample
            return _Decoded(raw, None, "corrupt_image", f"{type(error).__name__}: {error}")
        return _Decoded(raw, pixels, None)

    @property
    def _decode_dtype(self) -> Literal["float32", "uint8"]:
        # The Pillow filters give uint8 pixels; those are scaled to [-1, 1] a batch at a time in
        # _stack_pixels, straight into the batch array (one allocation instead of two a sample).
        if self.decode.pixel_dtype == "float32" and self.decode.resample != "bilinear":
            return "uint8"
        return self.decode.pixel_dtype

    def _stack_pixels(self, samples: list[_Decoded]) -> npt.NDArray:
        images = [sample.pixels for sample in samples if isinstance(sample.pixels, np.ndarray)]
        if self._decode_dtype == self.decode.pixel_dtype:
            return np.stack(images)
        pixels = np.empty((len(images), *images[0].shape), dtype=np.float32)
        for image, target in zip(images, pixels):
            normalize_uint8_pixels(image, out=target)
        return pixels

    def _make_batch(self, samples: list[_Decoded]) -> Batch:
        if self.captions_per_image is not None:
            return self._make_multi_caption_batch(samples, self.captions_per_image)
        captions = [sample.raw.caption or "" for sample in samples]
        images: dict[str, Any]
        if self.naflex is not None:
            records = [sample.pixels for sample in samples]
            naflex = collate_naflex([r for r in records if isinstance(r, NaflexPatches)])
            images = {
                "patches": naflex.patches,
                "patch_mask": naflex.patch_mask,
                "spatial_shapes": naflex.spatial_shapes,
            }
        else:
            images = {"pixels": self._stack_pixels(samples)}
        return {
            **images,
            "token_ids": np.asarray(self.tokenizer(captions), dtype=np.int32),
            "captions": captions,
            "keys": [sample.raw.key for sample in samples],
            "metadata": [sample.raw.metadata or {} for sample in samples],
        }

    def _make_multi_caption_batch(
        self, samples: list[_Decoded], per_image: int | Literal["all"]
    ) -> Batch:
        """One row per (image, drawn caption); ``group_key`` is the image's key on each row."""
        rows, captions = [], []
        for index, sample in enumerate(samples):
            texts = sample_captions(sample.raw.caption or "", sample.raw.metadata) or [""]
            rng = caption_rng(self.seed, self._epoch, sample.raw.key)
            chosen = choose_captions(texts, per_image, rng)
            rows += [index] * len(chosen)
            captions += chosen
        images = self._stack_pixels(samples)
        return {
            "pixels": images[np.asarray(rows, dtype=np.int64)],
            "token_ids": np.asarray(self.tokenizer(captions), dtype=np.int32),
            "captions": captions,
            "keys": [samples[row].raw.key for row in rows],
            "metadata": [samples[row].raw.metadata or {} for row in rows],
            "group_key": [samples[row].raw.key for row in rows],
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

    def _count_unit_failures(self, failures: _UnitFailures) -> None:
        for unit, error in failures.take_uncounted():
            self._skipped["unreadable_shard"] += 1
            logger.warning("skipped the rest of unit %s: %s", unit, error)

    def _check_quality(self, final: bool) -> None:
        bad = sum(count for reason, count in self._skipped.items() if reason != "unreadable_shard")
        policy = self.quality
        checkable = self._seen and (final or self._seen >= policy.min_samples_for_check)
        if checkable and bad > policy.max_bad_fraction * self._seen:
            raise DataQualityError(
                f"{bad} of {self._seen} samples were bad ({bad / self._seen:.1%} > "
                f"max_bad_fraction={policy.max_bad_fraction:.1%}): {self.skipped}"
            )

    def iter_with_state(self) -> Iterator[tuple[Batch, dict[str, Any]]]:
        """Like iterating, but also yields the state right after each batch.

        Wrappers that prefetch (the torch and JAX adapters) keep the state of the last batch they
        handed out, so their own ``state_dict`` stays exact.

        Yields:
            ``(batch, state)``: a batch and :meth:`state_dict` as it is right after it.

        Raises:
            DataQualityError: too many bad samples (see :class:`QualityPolicy`), or no unit of
                the source is readable.
        """
        epoch = self._epoch
        failures = _UnitFailures()
        stream = self._shuffled(self._raw_samples(epoch, failures), epoch)
        # Resume: replay the undecoded stream up to the saved position. Units that failed on the
        # way were counted by the run that saved the state.
        position = 0
        for _ in range(self._position):
            if next(stream, None) is None:
                break
            position += 1
        failures.mark_counted()
        pool = ThreadPoolExecutor(self.decode.num_threads) if self.decode.num_threads else None
        batch: list[_Decoded] = []
        length = 0  # NaFlex: the sequence length of the batch being filled
        try:
            while True:
                if not batch and self.naflex is not None:
                    # Drawn from where the batch starts, so a resumed stream draws the same.
                    length = self.naflex.sequence_length(self.seed, epoch, self.stream, position)
                chunk = list(islice(stream, self.batch_size - len(batch)))
                self._count_unit_failures(failures)
                if not chunk:
                    break
                positions = range(position, position + len(chunk))
                decode = functools.partial(self._decode, length=length)
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
                    made = self._make_batch(batch)
                    batch = []
                    yield made, self.state_dict()
            self._check_quality(final=True)
            nothing_read = position == 0 and failures.failed
            if nothing_read and not self._any_unit_readable(failures.units):
                raise DataQualityError(
                    f"no sample could be read from source {self.source!r}: all "
                    f"{len(self._units)} units are unreadable (first: {failures.units[0]}); "
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
        images = f"naflex={self.naflex}" if self.naflex else f"image_size={self.image_size}"
        return (
            f"ImageTextDataset({self.source!r}, {images}, "
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
