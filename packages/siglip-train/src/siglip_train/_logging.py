"""Metrics: JSONL (always), TensorBoard (when installed), a tqdm progress bar."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from siglip_train._atomic import atomic_write_text
from siglip_train._faults import fault_point

LOGGER = logging.getLogger("siglip_train")
METRICS_FILE = "metrics.jsonl"


def read_metrics_counting(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], list[int]]:
    """``(records, numbers of the lines that are no JSON object)`` of a ``metrics.jsonl`` file."""
    path = Path(path)
    if not path.is_file():
        return [], []
    records: list[dict[str, Any]] = []
    bad: list[int] = []
    text = path.read_bytes().decode("utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad.append(number)
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            bad.append(number)
    return records, bad


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record of a ``metrics.jsonl`` file, in order.

    A line that is no JSON object (half written when the disk filled up, or damaged) is skipped;
    a warning on the ``siglip_train`` logger gives how many and their line numbers. A resumed run
    rewrites the file without them.

    Examples:
        >>> read_metrics("no-such-file.jsonl")
        []
    """
    records, bad = read_metrics_counting(path)
    if bad:
        LOGGER.warning(
            "%s: skipped %d unreadable line(s) (line %s)",
            path,
            len(bad),
            ", ".join(map(str, bad[:10])),
        )
    return records


class MetricsLogger:
    """Metric records to ``metrics.jsonl`` and TensorBoard, and the progress bar; rank 0 only.

    Args:
        output_dir: the run directory.
        enabled: False on non-zero ranks (nothing is written or shown).
        tensorboard: also write TensorBoard events under ``output_dir/tensorboard``.
    """

    def __init__(self, output_dir: Path, *, enabled: bool, tensorboard: bool) -> None:
        self.path = output_dir / METRICS_FILE
        self.tensorboard_dir = output_dir / "tensorboard"
        self.enabled = enabled
        self.tensorboard = enabled and tensorboard
        self._writer: Any = None
        self._progress: Any = None
        self._purge_step: int | None = None
        self.run_id: str | None = None

    def open_progress(self, *, total: int, initial: int) -> None:
        """Show a tqdm bar from step ``initial`` to ``total`` (closed by :meth:`close`)."""
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        self._progress = tqdm(
            total=total, initial=initial, desc="train", dynamic_ncols=True, leave=True
        )

    @property
    def shows_progress(self) -> bool:
        """Whether a progress bar is open (it reads the loss of every step)."""
        return self._progress is not None

    def progress(self, *, loss: float, lr: float, samples_per_second: float) -> None:
        """Advance the bar by one step and show the step's loss, lr and throughput."""
        if self._progress is None:
            return
        self._progress.update(1)
        self._progress.set_postfix(
            loss=f"{loss:.4f}", lr=f"{lr:.2e}", samples_per_s=f"{samples_per_second:.0f}"
        )

    def _tensorboard_writer(self) -> Any:
        # Opened on first use (and again after close(), when fit() is called a second time).
        if self._writer is None and self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                LOGGER.info("tensorboard is not installed; writing metrics.jsonl only")
                self.tensorboard = False
            else:
                # After a resume, purge_step makes TensorBoard drop the events an interrupted
                # attempt wrote past the checkpoint, so no step appears twice.
                self._writer = SummaryWriter(
                    log_dir=str(self.tensorboard_dir), purge_step=self._purge_step
                )
                self._purge_step = None
        return self._writer

    def truncate_after(self, step: int, *, keep_dropped_as: str | None = None) -> None:
        """Keep the records up to ``step`` and drop unreadable lines; rewrite atomically.

        Records past ``step`` come from a run interrupted after its last checkpoint (or, with
        ``keep_dropped_as``, from the run a roll-back leaves: they are saved to that file name).
        TensorBoard events past ``step`` are purged when the writer reopens.
        """
        self._purge_step = step + 1
        if not self.enabled or not self.path.is_file():
            return
        records, bad = read_metrics_counting(self.path)
        kept = [record for record in records if record.get("step", 0) <= step]
        dropped = [record for record in records if record.get("step", 0) > step]
        if bad:
            LOGGER.warning(
                "%s: repaired: removed %d unreadable line(s) (line %s)",
                self.path,
                len(bad),
                ", ".join(map(str, bad[:10])),
            )
        if dropped and step == 0:
            LOGGER.warning(
                "%s: dropped %d record(s) of an earlier attempt that saved no checkpoint",
                self.path,
                len(dropped),
            )
        if dropped and keep_dropped_as is not None:
            atomic_write_text(
                self.path.with_name(keep_dropped_as),
                "".join(json.dumps(r) + "\n" for r in dropped),
            )
        if dropped or bad:
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def sync(self) -> None:
        """fsync ``metrics.jsonl`` (before a checkpoint: its records survive a power loss)."""
        if self.enabled and self.path.is_file():
            descriptor = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)

    def log(self, step: int, values: Mapping[str, Any], *, kind: str = "train") -> None:
        """Append one record ``{"step": step, "kind": kind, "run": run_id, **values}``.

        The line goes out in one ``write`` on an ``O_APPEND`` descriptor, so a reader never sees
        two records interleaved; if the write fails (a full disk), the file is cut back to its
        previous length and the ``OSError`` names the file.
        """
        if not self.enabled:
            return
        record: dict[str, Any] = {"step": step, "kind": kind}
        if self.run_id is not None:
            record["run"] = self.run_id
        record.update(values)
        data = (json.dumps(record) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            size = os.fstat(descriptor).st_size
            try:
                written = os.write(descriptor, data)
                while written < len(data):  # regular files write whole; a short write is rare
                    written += os.write(descriptor, data[written:])
                fault_point("metrics.written")
            except OSError as error:
                os.ftruncate(descriptor, size)
                raise type(error)(
                    error.errno, f"could not write {str(self.path)!r}: {error.strerror or error}"
                ) from error
        finally:
            os.close(descriptor)
        writer = self._tensorboard_writer()
        if writer is not None:
            for name, value in values.items():
                if isinstance(value, int | float) and math.isfinite(float(value)):
                    writer.add_scalar(f"{kind}/{name}", float(value), step)
            writer.flush()

    def close(self) -> None:
        """Close the progress bar and the TensorBoard writer (both reopen on next use)."""
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
