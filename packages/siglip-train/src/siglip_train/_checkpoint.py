"""Checkpoints: HF-layout model weights + optimizer/scheduler/data/RNG state, atomic, verified.

Why our own format rather than ``torch.distributed.checkpoint`` for DDP: see "Checkpoints and
resuming" in docs/train.md. Under ``strategy="fsdp"`` the weights and optimizer state are DCP
shards instead (``_dcp``); everything else (atomic rename, manifest, keep-last-K, per-rank RNG and
data state) is shared.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from siglip_train._atomic import atomic_directory
from siglip_train._atomic import atomic_write_text
from siglip_train._common import CheckpointError
from siglip_train._config import TrainConfig
from siglip_train._config import config_to_dict
from siglip_train._config import save_config
from siglip_train._distributed import DistributedContext
from siglip_train._faults import fault_point
from siglip_train._logging import LOGGER
from siglip_train._run_identity import checkpoints_of_run

CHECKPOINT_FORMAT = "siglip-train-checkpoint/1"
MANIFEST = "manifest.json"
MODEL_DIRECTORY = "model"
TRAINING_STATE = "training_state.pt"
CONFIG_FILE = "config.yaml"
STEP_PREFIX = "step_"


def rank_state_file(rank: int) -> str:
    """File name of one process's RNG and data-loader state inside a checkpoint."""
    return f"rank{rank:03d}_state.pt"


def checkpoint_name(step: int) -> str:
    """Directory name of the checkpoint taken after ``step`` optimizer steps."""
    return f"{STEP_PREFIX}{step:09d}"


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_torch(obj: Any, path: Path) -> None:
    """``torch.save`` through a Python file: a full disk raises ``OSError(ENOSPC)``.

    (Given a path, torch writes through its own C++ stream and a full disk surfaces as
    ``RuntimeError: ... unexpected pos`` or ``basic_ios::clear``, with no path and no cause.)
    """
    with path.open("wb") as handle:
        torch.save(obj, handle)


def _as_os_error(error: Exception, path: Path) -> OSError | None:
    """A library's I/O failure (safetensors' ``os error 28``) as the ``OSError`` it is."""
    text = str(error)
    if "os error 28" in text or "No space left" in text:
        return OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (writing {str(path)!r})")
    return None


def uses_hf_layout(model: nn.Module) -> bool:
    """Whether the model saves/loads Hugging Face layout (``siglip_models.torch.SiglipModel``)."""
    return all(
        callable(getattr(model, name, None))
        for name in ("save_pretrained", "hf_state_dict", "load_hf_state_dict")
    )


def model_parameter_shapes(model: nn.Module) -> dict[str, list[int]]:
    """``{name: shape}`` of every entry of ``model.state_dict()`` (the mismatch check's key)."""
    return {name: list(tensor.shape) for name, tensor in model.state_dict().items()}


def save_model_weights(model: nn.Module, directory: Path) -> None:
    """Write the weights: ``save_pretrained`` (HF layout) when the model has it, else safetensors."""
    directory.mkdir(parents=True, exist_ok=True)
    if uses_hf_layout(model):
        model.save_pretrained(directory)  # type: ignore[operator]
        return
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})


def load_model_weights(model: nn.Module, directory: Path) -> None:
    """Load weights written by :func:`save_model_weights` into ``model`` (strict)."""
    from safetensors.torch import load_file

    weights_file = directory / "model.safetensors"
    if not weights_file.is_file():
        raise CheckpointError(f"checkpoint has no weights file {str(weights_file)!r}")
    state = load_file(str(weights_file))
    if uses_hf_layout(model):
        model.load_hf_state_dict(state, source=str(weights_file))  # type: ignore[operator]
        return
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"weights in {str(weights_file)!r} do not fit the model: "
            f"missing {sorted(missing)}, unexpected {sorted(unexpected)}"
        )


def capture_rng_state() -> dict[str, Any]:
    """The state of every random generator the training step may draw from."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (user code may draw from it)
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Hash every file under ``directory`` into the manifest and write it last."""
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            files[str(path.relative_to(directory))] = sha256_of_file(path)
    manifest = {**manifest, "format": CHECKPOINT_FORMAT, "files": files}
    atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))


def read_manifest(directory: Path, *, verify: bool = True) -> dict[str, Any]:
    """Read and (optionally) verify a checkpoint's manifest against the files' sha256.

    Raises:
        CheckpointError: not a directory, no manifest (incomplete write), unknown format, a file
            missing, or a file whose hash differs (corrupt).
    """
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint {str(directory)!r} is not a directory")
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(
            f"checkpoint {str(directory)!r} has no {MANIFEST}: it is incomplete (interrupted "
            "while writing) or not a siglip-train checkpoint"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{str(manifest_path)!r} is corrupt: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != CHECKPOINT_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise CheckpointError(
            f"{str(manifest_path)!r} has format {found!r}, expected {CHECKPOINT_FORMAT!r}"
        )
    missing = [key for key in ("files", "step", "parameters") if key not in manifest]
    if missing or not isinstance(manifest.get("files"), dict):
        raise CheckpointError(
            f"{str(manifest_path)!r} is incomplete: it lacks {missing or ['a files mapping']} "
            "(edited by hand or written by another tool)"
        )
    if verify:
        for relative, expected in manifest["files"].items():
            path = directory / relative
            if not path.is_file():
                raise CheckpointError(f"checkpoint {str(directory)!r} is missing {relative!r}")
            actual = sha256_of_file(path)
            if actual != expected:
                raise CheckpointError(
                    f"checkpoint file {str(path)!r} is corrupt: sha256 {actual[:16]}... but the "
                    f"manifest recorded {expected[:16]}... when it was written"
                )
    return manifest


def check_model_matches(manifest: Mapping[str, Any], model: nn.Module, directory: Path) -> None:
    """Refuse a checkpoint whose parameter names or shapes differ from ``model``'s."""
    saved = {name: list(shape) for name, shape in manifest["parameters"].items()}
    current = model_parameter_shapes(model)
    missing = sorted(set(current) - set(saved))
    unexpected = sorted(set(saved) - set(current))
    different = sorted(
        f"{name}: checkpoint {saved[name]} vs model {current[name]}"
        for name in set(saved) & set(current)
        if saved[name] != current[name]
    )
    if missing or unexpected or different:
        raise CheckpointError(
            f"checkpoint {str(directory)!r} does not match the model (a different architecture "
            f"or config?): missing in checkpoint {missing[:5]}, not in model {unexpected[:5]}, "
            f"shape mismatches {different[:5]}"
        )


def list_checkpoints(checkpoint_root: str | os.PathLike[str]) -> list[Path]:
    """Complete-looking checkpoint directories under ``checkpoint_root``, oldest first."""
    checkpoint_root = Path(checkpoint_root)
    if not checkpoint_root.is_dir():
        return []
    found = [
        path
        for path in checkpoint_root.iterdir()
        if path.is_dir() and path.name.startswith(STEP_PREFIX) and path.name[5:].isdigit()
    ]
    return sorted(found, key=lambda path: int(path.name[len(STEP_PREFIX) :]))


def latest_checkpoint(checkpoint_root: str | os.PathLike[str]) -> Path | None:
    """The newest checkpoint with a manifest under ``checkpoint_root``, or ``None``.

    Args:
        checkpoint_root: a run's ``checkpoints/`` directory (``str`` or path).

    Returns:
        The newest ``step_<N>/`` holding a ``manifest.json`` (written last, so the checkpoint is
        complete), or ``None`` when there is none or the directory does not exist.

    Examples:
        >>> import tempfile
        >>> from siglip_train import latest_checkpoint
        >>> latest_checkpoint(tempfile.mkdtemp()) is None
        True
    """
    for path in reversed(list_checkpoints(Path(checkpoint_root))):
        if (path / MANIFEST).is_file():
            return path
    return None


def remove_stale_temporaries(checkpoint_root: Path) -> None:
    """Remove temp directories of interrupted checkpoint writes (they hold disk space)."""
    if not checkpoint_root.is_dir():
        return
    for pattern in (f".{STEP_PREFIX}*.tmp", f".tmp-{STEP_PREFIX}*"):
        for stale in checkpoint_root.glob(pattern):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)


def prune_checkpoints(checkpoint_root: Path, keep_last: int, run_id: str | None = None) -> None:
    """Delete all but the newest ``keep_last`` checkpoints of run ``run_id`` and leftover temp dirs.

    Only checkpoints whose manifest names ``run_id`` are candidates (``None``: every checkpoint,
    the behaviour of older versions): another run's checkpoints, such as the origin of a
    roll-back, are never deleted. ``keep_last=0`` keeps all. Called by the writing rank right
    after a checkpoint was renamed into place, so every temp directory left (``.step_N.*.tmp``;
    ``.tmp-step_N`` from older versions) is from an interrupted earlier write.
    """
    remove_stale_temporaries(checkpoint_root)
    if keep_last <= 0:
        return
    candidates = (
        list_checkpoints(checkpoint_root)
        if run_id is None
        else checkpoints_of_run(checkpoint_root, run_id)
    )
    for path in candidates[:-keep_last]:
        shutil.rmtree(path, ignore_errors=True)


def resolve_resume_path(resume: str | os.PathLike[str], output_dir: Path) -> Path | None:
    """Turn ``--resume`` into a checkpoint directory.

    ``"auto"`` means the newest checkpoint of ``output_dir`` (``None`` when there is none: a fresh
    start); a run directory means its newest checkpoint; a checkpoint directory means itself.

    Raises:
        CheckpointError: an explicit path that holds no checkpoint.
    """
    if str(resume) == "auto":
        return latest_checkpoint(output_dir / "checkpoints")
    path = Path(resume)
    if (path / MANIFEST).is_file() or path.name.startswith(STEP_PREFIX):
        return path
    for root in (path / "checkpoints", path):
        found = latest_checkpoint(root)
        if found is not None:
            return found
    raise CheckpointError(f"--resume {str(resume)!r}: no checkpoint found there")


def load_training_state(directory: Path) -> dict[str, Any]:
    """The optimizer/scheduler/step dict of a checkpoint (trusted local file)."""
    try:
        return torch.load(directory / TRAINING_STATE, map_location="cpu", weights_only=False)  # type: ignore[no-any-return]
    except (OSError, RuntimeError, EOFError) as error:
        raise CheckpointError(
            f"{str(directory / TRAINING_STATE)!r} is unreadable: {error}"
        ) from None


def load_rank_state(directory: Path, rank: int) -> dict[str, Any]:
    """One process's RNG and data-loader state."""
    path = directory / rank_state_file(rank)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(directory)!r} has no state for rank {rank}")
    return torch.load(path, map_location="cpu", weights_only=False)  # type: ignore[no-any-return]


def _barrier(context: DistributedContext) -> None:
    if context.is_distributed:
        dist.barrier()


@contextlib.contextmanager
def _shared_atomic_directory(final: Path, context: DistributedContext) -> Iterator[Path]:
    """Rank 0 builds ``final`` under a temp name (fsync, rename); every rank gets the temp path.

    The caller must make every rank finish writing (a barrier) before the block ends.
    """
    if not context.is_main:
        names: list[Any] = [None]
        dist.broadcast_object_list(names, src=0)
        yield Path(names[0])
        return
    with atomic_directory(final) as temporary:
        if context.is_distributed:
            dist.broadcast_object_list([str(temporary)], src=0)
        yield temporary


def write_checkpoint(
    checkpoint_root: Path,
    step: int,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: TrainConfig,
    rank_state: Mapping[str, Any],
    context: DistributedContext,
    run_id: str | None = None,
    extra_state: Mapping[str, Any] | None = None,
    write_assets: Callable[[Path], None] | None = None,
    save_sharded: Callable[[Path], None] | None = None,
) -> Path:
    """Write the checkpoint of ``step`` (every rank calls it); returns its directory.

    With ``save_sharded`` (FSDP), every rank calls ``save_sharded(temp_dir / "sharded")`` to write
    its shards of the weights and optimizer state (DCP) instead of rank 0 writing ``model/``
    and the optimizer into ``training_state.pt``; the manifest records ``"weights": "sharded"``.

    Each rank writes its ``rank_state`` (RNG, data position); rank 0 writes the weights, the
    optimizer, scheduler and config, ``write_assets(model_directory)`` (tokenizer,
    preprocessing), then ``manifest.json`` (sha256 of every file, the run id) last. All of it
    goes into a temp directory that is fsynced and renamed into place, so a checkpoint directory
    is complete or absent. Then only the newest ``config.checkpoint.keep_last`` of run
    ``run_id`` are kept.

    Raises:
        OSError: a write failed (a full disk: ``ENOSPC``); the message names the checkpoint and
            the cause, the temp directory is removed and earlier checkpoints are untouched.
    """
    final = checkpoint_root / checkpoint_name(step)
    if context.is_main:
        # Only rank 0 writes checkpoints, one at a time: a temp dir here now is from a write that
        # was killed, and freeing its space first lets this write succeed on a nearly full disk.
        remove_stale_temporaries(checkpoint_root)
    with _shared_atomic_directory(final, context) as temporary:
        try:
            save_torch(dict(rank_state), temporary / rank_state_file(context.rank))
            if save_sharded is not None:
                from siglip_train._dcp import SHARDED_DIRECTORY

                save_sharded(temporary / SHARDED_DIRECTORY)
            if context.is_main:
                if save_sharded is None:
                    save_model_weights(model, temporary / MODEL_DIRECTORY)
                if write_assets is not None:
                    write_assets(temporary / MODEL_DIRECTORY)
                save_torch(
                    {
                        "step": step,
                        "optimizer": optimizer.state_dict() if save_sharded is None else None,
                        "scheduler": scheduler.state_dict(),
                        "config": config_to_dict(config),
                        "world_size": context.world_size,
                        "run_id": run_id,
                        **(extra_state or {}),
                    },
                    temporary / TRAINING_STATE,
                )
                save_config(config, temporary / CONFIG_FILE)
                fault_point("checkpoint.files_written")
        except OSError:
            raise
        except Exception as error:
            converted = _as_os_error(error, final)
            if converted is None:
                raise
            raise converted from error
        _barrier(context)  # every rank's state file is in place before the manifest hashes it
        if context.is_main:
            write_manifest(
                temporary,
                {
                    "step": step,
                    "world_size": context.world_size,
                    "parameters": model_parameter_shapes(model),
                    "model_class": type(model).__name__,
                    "run_id": run_id,
                    "weights": "full" if save_sharded is None else "sharded",
                },
            )
    if context.is_main:
        fault_point("checkpoint.renamed")
        prune_checkpoints(checkpoint_root, config.checkpoint.keep_last, run_id)
        fault_point("checkpoint.pruned")
    _barrier(context)
    return final


def verify_checkpoint(directory: Path, model: nn.Module, world_size: int) -> None:
    """Refuse a checkpoint that is corrupt, incomplete, of another model or another world size.

    Raises:
        CheckpointError: naming what does not fit.
    """
    manifest = read_manifest(directory)
    check_model_matches(manifest, model, directory)
    saved_world = manifest.get("world_size", 1)
    if saved_world != world_size and not is_sharded(manifest):
        raise CheckpointError(
            f"checkpoint {str(directory)!r} was written by {saved_world} process(es) but this "
            f"run has {world_size}; per-rank data and RNG state cannot be mapped"
        )


def is_sharded(manifest: Mapping[str, Any]) -> bool:
    """Whether a checkpoint holds DCP shards (FSDP), which load on any world size."""
    return manifest.get("weights") == "sharded"


@dataclasses.dataclass
class RestoredState:
    """What :func:`restore_checkpoint` read back besides the weights and RNG states.

    Attributes:
        step: optimizer steps the checkpoint was taken after.
        batches_consumed: batches this rank had drawn from its source.
        training_state: the optimizer / scheduler state dicts (and step, config, world size).
        sharded: the weights and optimizer state are DCP shards, loaded once the model is
            sharded and the optimizer built (:func:`siglip_train._dcp.load_sharded`).
        data_state_restored: the batch source's own state was restored (else the caller
            fast-forwards it by ``batches_consumed``).
    """

    step: int
    batches_consumed: int
    training_state: dict[str, Any]
    sharded: bool = False
    data_state_restored: bool = False


def restore_checkpoint(
    directory: Path, *, model: nn.Module, batches: Any, rank: int, world_size: int = 1
) -> RestoredState:
    """Load weights, this rank's RNG states and data-loader state from a verified checkpoint.

    A sharded checkpoint written on another number of ranks (resharding): rank ``r`` takes the
    RNG state of saved rank ``r mod W_saved``, and the batch source is not given a loader state
    (another world size splits the data differently): the caller fast-forwards it.

    Raises:
        CheckpointError: the checkpoint holds a data-loader state but ``batches`` has no
            ``load_state_dict()``, or this rank's state file is missing.
    """
    manifest = read_manifest(directory, verify=False)
    sharded = is_sharded(manifest)
    if not sharded:
        load_model_weights(model, directory / MODEL_DIRECTORY)
    training_state = load_training_state(directory)
    saved_world = int(training_state.get("world_size", 1))
    same_world = saved_world == world_size
    rank_state = load_rank_state(directory, rank if same_world else rank % saved_world)
    restore_rng_state(rank_state["rng"])
    data_state = rank_state.get("data") if same_world else None
    if not same_world:
        LOGGER.warning(
            "resuming %s (written by %d ranks) on %d: resharded weights and optimizer state; "
            "the batch source is fast-forwarded by %d batches",
            directory,
            saved_world,
            world_size,
            int(rank_state["batches_consumed"]),
        )
    if data_state is not None:
        loader = getattr(batches, "load_state_dict", None)
        if not callable(loader):
            raise CheckpointError(
                f"checkpoint {str(directory)!r} holds a data-loader state but the batch "
                f"source {type(batches).__name__} has no load_state_dict()"
            )
        loader(data_state)
    LOGGER.info("resumed from %s at step %d", directory, int(training_state["step"]))
    return RestoredState(
        step=int(training_state["step"]),
        batches_consumed=int(rank_state["batches_consumed"]),
        training_state=training_state,
        sharded=sharded,
        data_state_restored=data_state is not None,
    )
