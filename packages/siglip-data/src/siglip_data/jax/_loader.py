"""JAX adapter: device arrays from the numpy pipeline, with a prefetch thread and exact state."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import jax

from siglip_data._dataset import Batch
from siglip_data._dataset import ImageTextDataset
from siglip_data._dataset import repeat_epochs

_DONE = object()


def to_jax(batch: Batch, *, sharding: jax.sharding.Sharding | None = None) -> dict[str, Any]:
    """numpy batch -> dict whose ``pixels`` (NHWC) and ``token_ids`` are JAX arrays.

    A NaFlex batch's ``patches``, ``patch_mask`` and ``spatial_shapes`` are put there too.

    Args:
        batch: a batch from :class:`~siglip_data.ImageTextDataset`.
        sharding: where to place the arrays (e.g. a ``NamedSharding`` splitting the batch axis);
            default: the default device.

    Returns:
        The batch with ``pixels`` and ``token_ids`` on the device; lists pass through.
    """
    converted = dict(batch)
    for name in ("pixels", "patches", "patch_mask", "spatial_shapes", "token_ids"):
        if name in batch:  # a NaFlex batch has patches, patch_mask, spatial_shapes instead
            converted[name] = jax.device_put(batch[name], sharding)
    return converted


class JaxImageTextLoader:
    """Iterate an :class:`~siglip_data.ImageTextDataset` as JAX arrays, ``prefetch`` batches ahead.

    A background thread decodes and transfers the next batches while the step runs (Pillow and
    SentencePiece release the GIL). ``state_dict()`` is the state after the last batch handed
    out, not the last one prefetched, so resuming is exact.

    Args:
        dataset: the numpy dataset (this process's rank).
        prefetch: batches prepared ahead (0: no thread).
        sharding: passed to :func:`to_jax`.

    Raises:
        ValueError: ``prefetch < 0``.

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
        >>> dataset = siglip_data.ImageTextDataset(
        ...     shards, tokenizer=tokenizer, image_size=8, batch_size=4
        ... )
        >>> loader = JaxImageTextLoader(dataset, prefetch=2)
        >>> [batch["pixels"].shape for batch in loader]  # one epoch of jax.Array batches
        [(4, 8, 8, 3), (4, 8, 8, 3), (2, 8, 8, 3)]
        >>> loader.epoch
        1
        >>> directory.cleanup()
    """

    def __init__(
        self,
        dataset: ImageTextDataset,
        *,
        prefetch: int = 2,
        sharding: jax.sharding.Sharding | None = None,
    ) -> None:
        if not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError(f"prefetch must be an int >= 0, got {prefetch!r}")
        self.dataset = dataset
        self.prefetch = prefetch
        self.sharding = sharding
        self._state = dataset.state_dict()

    @property
    def epoch(self) -> int:
        """The epoch the next batch comes from."""
        return int(self._state["epoch"])

    @property
    def skipped(self) -> dict[str, int]:
        """Bad samples skipped up to the last batch handed out, by reason."""
        return dict(self._state["skipped"])

    def state_dict(self) -> dict[str, Any]:
        """The dataset state right after the last batch handed out."""
        return dict(self._state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`.

        Args:
            state: what :meth:`state_dict` returned (possibly through JSON).
        """
        self.dataset.load_state_dict(state)
        self._state = self.dataset.state_dict()

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning on the next iteration.

        Args:
            epoch: the epoch.
        """
        self.dataset.set_epoch(epoch)
        self._state = self.dataset.state_dict()

    def repeat(self) -> Iterator[dict[str, Any]]:
        """Batches forever, epoch after epoch (see ``ImageTextDataset.repeat``)."""
        yield from repeat_epochs(self)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.dataset.load_state_dict(self._state)
        if self.prefetch == 0:
            for batch, state in self.dataset.iter_with_state():
                self._state = state
                yield to_jax(batch, sharding=self.sharding)
            self._state = self.dataset.state_dict()
            return
        ready: queue.Queue[Any] = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def produce() -> None:
            try:
                for batch, state in self.dataset.iter_with_state():
                    item = (to_jax(batch, sharding=self.sharding), state)
                    while not stop.is_set():
                        try:
                            ready.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                ready.put((_DONE, self.dataset.state_dict()))
            except BaseException as error:  # surfaced in the consumer thread
                ready.put((error, None))

        thread = threading.Thread(target=produce, name="siglip-data-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item, state = ready.get()
                if item is _DONE:
                    self._state = state
                    return
                if isinstance(item, BaseException):
                    raise item
                self._state = state
                yield item
        finally:
            stop.set()
            while thread.is_alive():
                try:
                    ready.get_nowait()
                except queue.Empty:
                    thread.join(timeout=0.05)
