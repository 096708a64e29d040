"""Run identity: which run a checkpoint and a metrics record belong to, and what a start means.

Every run has an id, written in ``output_dir/run.json`` (the directory's current run), in every
checkpoint's manifest and in every metrics record. A start is planned here, before any step:

- fresh (no ``--resume``): refused when ``output_dir`` holds checkpoints (of another run),
  unless ``overwrite``, which removes them with the run's metrics and TensorBoard files;
- ``auto``: the newest checkpoint of the directory's current run that verifies (a corrupt newest
  one falls back to an older one, loudly); a branch with no checkpoint yet falls back to its
  origin; nothing to resume from is a fresh start of the same run;
- an explicit checkpoint: the newest checkpoint of the current run continues that run; any other
  one starts a new branch (a new id whose parent is that checkpoint). Checkpoints past the branch
  point, whose names the branch would reuse, are moved to ``checkpoints/superseded-<run>/``,
  never deleted; the metrics after it are cut (and kept in ``metrics.superseded-<run>.jsonl``).

Pruning only ever deletes checkpoints of the run that writes them.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import secrets
import shutil
from pathlib import Path
from typing import Any

from siglip_train._atomic import atomic_write_text
from siglip_train._logging import LOGGER

RUN_FILE = "run.json"
CHECKPOINTS = "checkpoints"
STEP_PREFIX = "step_"
MANIFEST = "manifest.json"
SUPERSEDED_PREFIX = "superseded-"


class RunConflictError(RuntimeError):
    """A start would mix or delete another run's checkpoints; the message gives the choices."""


def new_run_id() -> str:
    """A fresh run id: UTC time to the second plus 6 random hex digits (sortable, unique)."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """How a run starts.

    Attributes:
        run_id: the id this process trains under.
        parent: ``{"run_id", "step", "checkpoint"}`` of the checkpoint a branch started from.
        checkpoint: the checkpoint to restore, or ``None`` for a fresh start.
        branch: True when ``checkpoint`` starts a new branch (a roll-back) rather than
            continuing its run.
    """

    run_id: str
    parent: dict[str, Any] | None
    checkpoint: Path | None
    branch: bool = False


def read_run_file(output_dir: Path) -> dict[str, Any] | None:
    """``output_dir/run.json`` (the directory's current run), or ``None`` when absent/unreadable."""
    path = output_dir / RUN_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        LOGGER.warning("%s is unreadable; treating the directory as holding no current run", path)
        return None
    return data if isinstance(data, dict) and isinstance(data.get("run_id"), str) else None


def write_run_file(output_dir: Path, plan: RunPlan) -> None:
    """Record ``plan`` as the directory's current run (atomically)."""
    record = {
        "run_id": plan.run_id,
        "parent": plan.parent,
        "started_from": str(plan.checkpoint) if plan.checkpoint is not None else None,
        "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    atomic_write_text(output_dir / RUN_FILE, json.dumps(record, indent=2) + "\n")


def step_directories(checkpoint_root: Path) -> list[Path]:
    """``step_<N>`` directories directly under ``checkpoint_root``, oldest first."""
    if not checkpoint_root.is_dir():
        return []
    found = [
        path
        for path in checkpoint_root.iterdir()
        if path.is_dir()
        and path.name.startswith(STEP_PREFIX)
        and path.name[len(STEP_PREFIX) :].isdigit()
    ]
    return sorted(found, key=lambda path: int(path.name[len(STEP_PREFIX) :]))


def step_of(directory: Path) -> int:
    """The step number in a ``step_<N>`` directory name."""
    return int(directory.name[len(STEP_PREFIX) :])


def run_id_of(checkpoint: Path) -> str | None:
    """The run id a checkpoint's manifest records (``None``: older format, or no manifest)."""
    try:
        manifest = json.loads((checkpoint / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    run_id = manifest.get("run_id") if isinstance(manifest, dict) else None
    return run_id if isinstance(run_id, str) else None


def checkpoints_of_run(checkpoint_root: Path, run_id: str) -> list[Path]:
    """The checkpoints (with a manifest) that ``run_id`` wrote, oldest first."""
    return [path for path in step_directories(checkpoint_root) if run_id_of(path) == run_id]


def _foreign_checkpoints(checkpoint_root: Path) -> list[Path]:
    return [path for path in step_directories(checkpoint_root) if (path / MANIFEST).is_file()]


def _names(paths: list[Path]) -> str:
    shown = ", ".join(path.name for path in paths[-5:])
    return f"{len(paths)} checkpoint(s) ({'..., ' if len(paths) > 5 else ''}{shown})"


def plan_fresh(output_dir: Path, *, overwrite: bool) -> RunPlan:
    """A fresh run: refused over another run's checkpoints unless ``overwrite`` removes them.

    Raises:
        RunConflictError: ``output_dir`` holds checkpoints and ``overwrite`` is False.
    """
    root = output_dir / CHECKPOINTS
    existing = _foreign_checkpoints(root)
    if existing and not overwrite:
        owner = read_run_file(output_dir)
        owner_text = f" of run {owner['run_id']}" if owner else ""
        raise RunConflictError(
            f"output_dir {str(output_dir)!r} holds {_names(existing)}{owner_text}; a fresh run "
            "there would mix its checkpoints and metrics with that run. Choose: continue it with "
            "--resume auto, start in a new output_dir, or replace it with --overwrite (deletes "
            "those checkpoints, metrics.jsonl and tensorboard/)"
        )
    if (existing or (output_dir / RUN_FILE).exists()) and overwrite:
        LOGGER.warning(
            "--overwrite: removing %s, metrics and TensorBoard files of the previous run in %s",
            _names(existing),
            output_dir,
        )
        for path in [*step_directories(root), *root.glob(f"{SUPERSEDED_PREFIX}*")]:
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(output_dir / "tensorboard", ignore_errors=True)
    return RunPlan(run_id=new_run_id(), parent=None, checkpoint=None)


def _supersede_after(output_dir: Path, step: int, keep: Path) -> None:
    """Move checkpoints past ``step`` (their names would be reused) and later metrics aside."""
    root = output_dir / CHECKPOINTS
    for path in step_directories(root):
        if step_of(path) <= step or path == keep:
            continue
        owner = run_id_of(path) or "unknown"
        target = root / f"{SUPERSEDED_PREFIX}{owner}" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
        LOGGER.warning("roll-back: moved %s (run %s) aside to %s", path.name, owner, target)


def describe_parent(checkpoint: Path, run_id: str | None, step: int) -> dict[str, Any]:
    """The ``parent`` record of a branch started from ``checkpoint``."""
    return {"run_id": run_id, "step": step, "checkpoint": str(checkpoint)}


def plan_explicit(output_dir: Path, checkpoint: Path, step: int) -> RunPlan:
    """Resume from an explicitly named (already verified) checkpoint.

    The newest checkpoint of the directory's current run continues that run; any other starts a
    branch that never deletes its origin.
    """
    current = read_run_file(output_dir)
    owner = run_id_of(checkpoint)
    root = output_dir / CHECKPOINTS
    if current is not None and owner is not None and owner == current["run_id"]:
        own = checkpoints_of_run(root, owner)
        if own and own[-1].resolve() == checkpoint.resolve():
            return RunPlan(run_id=owner, parent=current.get("parent"), checkpoint=checkpoint)
    if current is None and owner is not None:
        # A directory from before run.json, or one whose run.json was removed: the newest
        # checkpoint of the owner's run continues it.
        own = checkpoints_of_run(root, owner)
        if own and own[-1].resolve() == checkpoint.resolve():
            return RunPlan(run_id=owner, parent=None, checkpoint=checkpoint)
    plan = RunPlan(
        run_id=new_run_id(),
        parent=describe_parent(checkpoint, owner, step),
        checkpoint=checkpoint,
        branch=True,
    )
    LOGGER.warning(
        "resuming from %s (step %d, run %s) starts a new branch, run %s; that checkpoint is kept",
        checkpoint,
        step,
        owner,
        plan.run_id,
    )
    _supersede_after(output_dir, step, keep=checkpoint)
    return plan


def plan_auto(output_dir: Path, verify: Any, *, fresh_ok: bool = True) -> RunPlan:
    """``--resume auto``: the newest checkpoint of the current run that ``verify`` accepts.

    Args:
        output_dir: the run directory.
        verify: ``verify(checkpoint) -> step``; raises (``CheckpointError``) for a checkpoint
            that is corrupt or does not fit.
        fresh_ok: start fresh (same run id) when the current run has no checkpoint.

    Raises:
        RunConflictError: the current run has checkpoints and none verifies (the message names
            each and why).
    """
    root = output_dir / CHECKPOINTS
    current = read_run_file(output_dir)
    if current is None:
        existing = _foreign_checkpoints(root)
        if not existing:
            return RunPlan(run_id=new_run_id(), parent=None, checkpoint=None)
        # Older directories (no run.json): the run of the newest checkpoint is the current one.
        owner = run_id_of(existing[-1])
        current = {"run_id": owner or new_run_id(), "parent": None}
        candidates = (
            checkpoints_of_run(root, owner) if owner is not None else
            [path for path in existing if run_id_of(path) is None]
        )  # fmt: skip
    else:
        candidates = checkpoints_of_run(root, current["run_id"])
    parent = current.get("parent")
    if not candidates and isinstance(parent, dict) and parent.get("checkpoint"):
        origin = Path(parent["checkpoint"])
        LOGGER.warning(
            "--resume auto: run %s has no checkpoint yet; starting again from its origin %s",
            current["run_id"],
            origin,
        )
        candidates = [origin]
    failures: list[str] = []
    for checkpoint in reversed(candidates):
        try:
            verify(checkpoint)
        except Exception as error:
            failures.append(f"{checkpoint}: {error}")
            continue
        if failures:
            LOGGER.warning(
                "\n%s\n--resume auto: the newest checkpoint(s) of run %s do not verify:\n  %s\n"
                "RESUMING FROM THE OLDER %s INSTEAD; the steps after it are trained again.\n%s",
                "!" * 78,
                current["run_id"],
                "\n  ".join(failures),
                checkpoint,
                "!" * 78,
            )
        return RunPlan(run_id=current["run_id"], parent=parent, checkpoint=checkpoint)
    if failures:
        raise RunConflictError(
            f"--resume auto: no checkpoint of run {current['run_id']} in {str(root)!r} verifies: "
            + "; ".join(failures)
        )
    if not fresh_ok:
        raise RunConflictError(f"--resume auto: no checkpoint in {str(root)!r}")
    LOGGER.info("--resume auto: no checkpoint of run %s yet; starting it afresh", current["run_id"])
    return RunPlan(run_id=current["run_id"], parent=parent, checkpoint=None)
