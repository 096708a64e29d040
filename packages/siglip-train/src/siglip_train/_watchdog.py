"""A per-step watchdog: a step that takes longer than a limit ends the process, non-zero.

A hung rank (a stuck collective, a data loader that never returns, a stopped peer) otherwise
blocks its job until the process-group timeout, and torchrun does not notice. The watchdog logs
which step hung and for how long, then exits with :data:`WATCHDOG_EXIT_CODE` so that torchrun
(``--max-restarts``) or the scheduler restarts the job, which resumes from its last checkpoint.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from siglip_train._logging import LOGGER

WATCHDOG_EXIT_CODE = 124
"""The exit code of a process ended by the watchdog (as ``timeout(1)`` uses)."""


class StepWatchdog:
    """Exit the process when :meth:`beat` is not called within ``timeout_seconds``.

    Args:
        timeout_seconds: the longest a step may take; 0 disables the watchdog.
        rank: this process's rank (for the message).
    """

    def __init__(self, timeout_seconds: float, *, rank: int = 0) -> None:
        self.timeout_seconds = timeout_seconds
        self.rank = rank
        self._last = time.monotonic()
        self._step = 0
        self._paused = 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching (no-op when disabled)."""
        if self.timeout_seconds <= 0 or self._thread is not None:
            return
        self._done.clear()
        self._last = time.monotonic()
        self._thread = threading.Thread(
            target=self._watch, name="siglip-step-watchdog", daemon=True
        )
        self._thread.start()

    def beat(self, step: int) -> None:
        """A step began (or ended): the clock restarts."""
        with self._lock:
            self._last = time.monotonic()
            self._step = step

    def pause(self) -> None:
        """Stop counting (evaluation, checkpointing: not steps)."""
        with self._lock:
            self._paused += 1

    def resume(self) -> None:
        """Count again, from now."""
        with self._lock:
            self._paused = max(0, self._paused - 1)
            self._last = time.monotonic()

    def stop(self) -> None:
        """Stop the watching thread."""
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _watch(self) -> None:
        interval = min(1.0, self.timeout_seconds / 4)
        while not self._done.wait(interval):
            with self._lock:
                elapsed = time.monotonic() - self._last
                hung = not self._paused and elapsed > self.timeout_seconds
                step = self._step
            if hung:
                LOGGER.error(
                    "watchdog: rank %d has spent %.0f s in step %d (step_timeout_seconds=%g); "
                    "exiting with code %d so that the job can be restarted and resume",
                    self.rank,
                    elapsed,
                    step + 1,
                    self.timeout_seconds,
                    WATCHDOG_EXIT_CODE,
                )
                for stream in (sys.stdout, sys.stderr):
                    stream.flush()
                os._exit(WATCHDOG_EXIT_CODE)
