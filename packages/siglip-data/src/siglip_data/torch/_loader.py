"""PyTorch adapter: an IterableDataset and a resumable multi-worker loader giving NCHW tensors."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import IterableDataset
from torch.utils.data import get_worker_info

from siglip_data._dataset import SKIP_REASONS
from siglip_data._dataset import Batch
from siglip_data._dataset import ImageTextDataset
from siglip_data._dataset import repeat_epochs

_STATE_KEY = "_siglip_data_state"
_END_KEY = "_siglip_data_end_of_stream"


def to_torch(batch: Batch, *, channels_first: bool = True) -> dict[str, Any]:
    """numpy batch -> torch batch: ``pixels`` ``[B, 3, H, W]`` (NCHW), ``token_ids`` int32 ``[B, L]``.

    A NaFlex batch's ``patches``, ``patch_mask`` and ``spatial_shapes`` become tensors as they
    are. Lists (``captions``, ``keys``, ``metadata``) pass through unchanged.

    Args:
        batch: a batch from :class:`~siglip_data.ImageTextDataset` (``pixels`` ``[B, H, W, 3]``).
        channels_first: NCHW (default) or keep NHWC.

    Returns:
        The batch with ``pixels`` and ``token_ids`` as tensors (sharing memory where possible).

    Examples:
        >>> import numpy as np
        >>> batch = {
        ...     "pixels": np.zeros((2, 4, 4, 3), np.float32),
        ...     "token_ids": np.ones((2, 8), np.int32),
        ...     "keys": ["a", "b"],
        ... }
        >>> to_torch(batch)["pixels"].shape
        torch.Size([2, 3, 4, 4])
    """
    converted = dict(batch)
    if "pixels" in batch:
        pixels = torch.from_numpy(np.ascontiguousarray(batch["pixels"]))
        if channels_first:
            pixels = pixels.permute(0, 3, 1, 2).contiguous()
        converted["pixels"] = pixels
    for name in ("patches", "patch_mask", "spatial_shapes"):  # a NaFlex batch
        if name in batch:
            converted[name] = torch.from_numpy(np.ascontiguousarray(batch[name]))
    converted["token_ids"] = torch.from_numpy(np.ascontiguousarray(batch["token_ids"]))
    return converted


class TorchImageTextDataset(IterableDataset):  # type: ignore[type-arg]
    """``torch.utils.data.IterableDataset`` over an :class:`~siglip_data.ImageTextDataset`.

    Each DataLoader worker iterates its own disjoint stream (worker ``i`` of ``n`` on this rank),
    so no sample is duplicated or dropped with any ``num_workers``. It yields whole batches: use
    it with ``DataLoader(..., batch_size=None)``, or simply with :class:`ImageTextLoader`, which
    also makes the multi-worker state exactly resumable.

    Args:
        dataset: the numpy dataset (its ``rank`` / ``world_size`` give the rank split).
        channels_first: NCHW pixels (True, the torch convention) or NHWC.
    """

    def __init__(self, dataset: ImageTextDataset, *, channels_first: bool = True) -> None:
        super().__init__()
        self.dataset = dataset
        self.channels_first = channels_first
        # Set by ImageTextLoader before each epoch: the logical stream of DataLoader worker 0 and
        # each logical stream's saved state.
        self.rotation = 0
        self.stream_states: dict[int, dict[str, Any]] = {}
        self.epoch = dataset.epoch
        # ImageTextLoader sets this: batches then carry their stream's state, and each stream
        # ends with a state-only item.
        self.track_state = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        num_workers = info.num_workers if info is not None else 1
        worker = info.id if info is not None else 0
        logical = (worker + self.rotation) % num_workers
        stream = self.dataset.with_worker(logical, num_workers)
        stream.set_epoch(self.epoch)
        if logical in self.stream_states:
            stream.load_state_dict(self.stream_states[logical])
            if stream.epoch != self.epoch:
                return  # this stream already finished the epoch
        for batch, state in stream.iter_with_state():
            converted = to_torch(batch, channels_first=self.channels_first)
            if self.track_state:
                converted[_STATE_KEY] = (logical, state)
            yield converted
        if self.track_state:
            # Report the final state: skips after the stream's last batch must be counted too.
            yield {_STATE_KEY: (logical, stream.state_dict()), _END_KEY: True}


class ImageTextLoader:
    """Multi-worker loader with exact ``state_dict()`` / ``load_state_dict()`` and skip counters.

    Iterating yields the remaining batches of the current epoch (dicts of torch tensors, pixels
    NCHW) and then advances the epoch. Batches arrive round-robin from the workers; the state
    records every worker stream's position and which stream is next, so a resumed loader (same
    ``num_workers``) yields exactly the batches an uninterrupted one would have.

    Args:
        dataset: the numpy :class:`~siglip_data.ImageTextDataset` (for this rank).
        num_workers: DataLoader worker processes (0: load in the main process).
        pin_memory: pin batches for faster host-to-GPU copies.
        prefetch_factor: batches prefetched per worker (None: torch's default).
        channels_first: NCHW (default) or NHWC pixels.
        multiprocessing_context: e.g. ``"spawn"`` or ``"forkserver"`` (None: torch's default).

    Raises:
        ValueError: ``num_workers < 0``, or a dataset that is already one worker's stream.

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> import siglip_data
        >>> directory = tempfile.TemporaryDirectory()
        >>> rng = np.random.default_rng(0)
        >>> samples = [
        ...     (rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), f"photo {index}")
        ...     for index in range(10)
        ... ]
        >>> shards = siglip_data.write_shards(samples, directory.name, samples_per_shard=3)
        >>> def tokenizer(captions):  # any list[str] -> int32 [batch, length]
        ...     return np.ones((len(captions), 8), dtype=np.int32)
        >>> def make_loader():
        ...     dataset = siglip_data.ImageTextDataset(
        ...         shards, tokenizer=tokenizer, image_size=8, batch_size=4, seed=1
        ...     )
        ...     return ImageTextLoader(dataset, num_workers=0)  # 0: in this process
        >>> loader = make_loader()
        >>> batches = iter(loader)
        >>> batch = next(batches)
        >>> batch["pixels"].shape, batch["token_ids"].dtype
        (torch.Size([4, 3, 8, 8]), torch.int32)
        >>> state = loader.state_dict()  # e.g. saved with a checkpoint
        >>> resumed = make_loader()
        >>> resumed.load_state_dict(state)
        >>> [len(batch["keys"]) for batch in resumed]  # the rest of the epoch, exactly
        [4, 2]
        >>> directory.cleanup()
    """

    def __init__(
        self,
        dataset: ImageTextDataset,
        *,
        num_workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int | None = None,
        channels_first: bool = True,
        multiprocessing_context: str | None = None,
    ) -> None:
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
        if dataset.topology.num_workers != 1 or dataset.topology.worker_id != 0:
            raise ValueError(
                "pass the per-rank dataset (Topology num_workers=1, worker_id=0); the loader "
                f"splits it over its own workers, got {dataset.topology}"
            )
        self.dataset = dataset
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.prefetch_factor = prefetch_factor
        self.channels_first = channels_first
        self.multiprocessing_context = multiprocessing_context
        self._epoch = dataset.epoch
        self._stream_states: dict[int, dict[str, Any]] = {}
        self._next_stream = 0
        self._batches_in_epoch = 0
        self._skipped_before_epoch = dict.fromkeys(SKIP_REASONS, 0)

    @property
    def epoch(self) -> int:
        """The epoch the next batch comes from."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning on the next iteration (skip counts are kept).

        Args:
            epoch: the epoch.
        """
        self._skipped_before_epoch = self.skipped
        self._epoch = epoch
        self._stream_states = {}
        self._next_stream = 0
        self._batches_in_epoch = 0

    @property
    def skipped(self) -> dict[str, int]:
        """Bad samples skipped so far, by reason, summed over the worker streams and epochs."""
        total = dict(self._skipped_before_epoch)
        for state in self._stream_states.values():
            for reason, count in state["skipped"].items():
                total[reason] = total.get(reason, 0) + count
        return total

    def state_dict(self) -> dict[str, Any]:
        """The position after the last batch handed out (JSON-able)."""
        return {
            "epoch": self._epoch,
            "num_workers": self.num_workers,
            "next_stream": self._next_stream,
            "batches_in_epoch": self._batches_in_epoch,
            "skipped_before_epoch": dict(self._skipped_before_epoch),
            "streams": {str(k): copy.deepcopy(v) for k, v in self._stream_states.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict` (same dataset configuration and ``num_workers``).

        Args:
            state: what :meth:`state_dict` returned (possibly through JSON).

        Raises:
            ValueError: a state saved with a different ``num_workers``.
        """
        if state.get("num_workers") != self.num_workers:
            raise ValueError(
                f"state was saved with num_workers={state.get('num_workers')!r}, this loader has "
                f"num_workers={self.num_workers}: the worker streams would differ"
            )
        self._epoch = int(state["epoch"])
        self._next_stream = int(state["next_stream"])
        self._batches_in_epoch = int(state["batches_in_epoch"])
        self._skipped_before_epoch = dict.fromkeys(SKIP_REASONS, 0) | {
            reason: int(count) for reason, count in state["skipped_before_epoch"].items()
        }
        self._stream_states = {int(k): copy.deepcopy(v) for k, v in state["streams"].items()}

    def _epoch_dataset(self) -> TorchImageTextDataset:
        wrapped = TorchImageTextDataset(self.dataset, channels_first=self.channels_first)
        wrapped.epoch = self._epoch
        wrapped.rotation = self._next_stream
        wrapped.stream_states = copy.deepcopy(self._stream_states)
        wrapped.track_state = True
        return wrapped

    def __iter__(self) -> Iterator[dict[str, Any]]:
        options: dict[str, Any] = {}
        if self.num_workers > 0:
            if self.prefetch_factor is not None:
                options["prefetch_factor"] = self.prefetch_factor
            if self.multiprocessing_context is not None:
                options["multiprocessing_context"] = self.multiprocessing_context
        loader = DataLoader(
            self._epoch_dataset(),
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            **options,
        )
        streams = max(self.num_workers, 1)
        for batch in loader:
            logical, stream_state = batch.pop(_STATE_KEY)
            self._stream_states[int(logical)] = stream_state
            self._next_stream = (int(logical) + 1) % streams
            if batch.pop(_END_KEY, False):
                continue
            self._batches_in_epoch += 1
            yield batch
        self.set_epoch(self._epoch + 1)

    def repeat(self) -> Iterator[dict[str, Any]]:
        """Batches forever, epoch after epoch (see ``ImageTextDataset.repeat``)."""
        yield from repeat_epochs(self)

    def __len__(self) -> int:
        raise TypeError("ImageTextLoader streams shards: its length is not known in advance")
