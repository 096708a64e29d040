"""Fault injection for the chaos suite: named points where a test can kill or fail the trainer.

``SIGLIP_TRAIN_FAULTS="checkpoint.renamed@2,metrics.written@5:kill"`` makes the process act the
2nd time it reaches ``checkpoint.renamed`` and the 5th time it reaches ``metrics.written``.
Actions: ``kill`` (SIGKILL itself, the default), ``stop`` (SIGSTOP itself: a hung rank),
``enospc`` (raise ``OSError(ENOSPC)``, a full disk), ``hang`` (sleep for an hour). A point may
name a rank: ``step.end@3:stop:1`` acts only on rank 1. Without the variable every point is a
dictionary lookup that does nothing.
"""

from __future__ import annotations

import errno
import os
import signal
import time

ENVIRONMENT_VARIABLE = "SIGLIP_TRAIN_FAULTS"
POINTS = (
    "checkpoint.files_written",  # every file of a checkpoint is in its temp dir, no manifest yet
    "checkpoint.renamed",  # the checkpoint is in place, older ones not yet pruned
    "checkpoint.pruned",  # pruning done
    "metrics.written",  # a metrics record was appended
    "step.end",  # an optimizer step finished
)

_counts: dict[str, int] = {}
_parsed: dict[str, list[tuple[int, str, int | None]]] | None = None


def _spec() -> dict[str, list[tuple[int, str, int | None]]]:
    global _parsed
    if _parsed is None:
        _parsed = {}
        for item in filter(None, os.environ.get(ENVIRONMENT_VARIABLE, "").split(",")):
            name, _, rest = item.strip().partition("@")
            if name not in POINTS:
                raise ValueError(f"{ENVIRONMENT_VARIABLE}: unknown point {name!r}; known {POINTS}")
            parts = rest.split(":")
            count = int(parts[0] or 1)
            action = parts[1] if len(parts) > 1 and parts[1] else "kill"
            rank = int(parts[2]) if len(parts) > 2 and parts[2] else None
            _parsed.setdefault(name, []).append((count, action, rank))
    return _parsed


def fault_point(name: str) -> None:
    """Act if ``SIGLIP_TRAIN_FAULTS`` asks for it at this occurrence of ``name``."""
    wanted = _spec().get(name)
    if not wanted:
        return
    _counts[name] = _counts.get(name, 0) + 1
    rank = int(os.environ.get("RANK", "0"))
    for count, action, only_rank in wanted:
        if count != _counts[name] or (only_rank is not None and only_rank != rank):
            continue
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "stop":
            os.kill(os.getpid(), signal.SIGSTOP)
        elif action == "hang":
            time.sleep(3600)
        elif action == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        else:
            raise ValueError(f"{ENVIRONMENT_VARIABLE}: unknown action {action!r}")
