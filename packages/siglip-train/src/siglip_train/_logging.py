"""Metrics: JSONL (always), TensorBoard (when installed), a tqdm progress bar."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from siglip_train._atomic import atomic_write_text

LOGGER = logging.getLogger("siglip_train")
METRICS_FILE = "metrics.jsonl"


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a ``metrics.jsonl`` file, in order.

    Examples:
        >>> read_metrics("no-such-file.jsonl")
        []
    """
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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
                self._writer = SummaryWriter(log_dir=str(self.tensorboard_dir))
        return self._writer

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (written by a run that was interrupted after its checkpoint)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [record for record in read_metrics(self.path) if record.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def log(self, step: int, values: Mapping[str, Any], *, kind: str = "train") -> None:
        """Write one record ``{"step": step, "kind": kind, **values}``."""
        if not self.enabled:
            return
        record = {"step": step, "kind": kind, **values}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
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
