"""Checkpoints: HF-layout model weights + optimizer/scheduler/data/RNG state, atomic, verified."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from siglip_train._config import atomic_write_text

CHECKPOINT_FORMAT = "siglip-train-checkpoint/1"
MANIFEST = "manifest.json"
MODEL_DIRECTORY = "model"
TRAINING_STATE = "training_state.pt"
CONFIG_FILE = "config.yaml"
STEP_PREFIX = "step_"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, corrupt, or does not fit the model or run."""


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


def list_checkpoints(checkpoint_root: Path) -> list[Path]:
    """Complete-looking checkpoint directories under ``checkpoint_root``, oldest first."""
    if not checkpoint_root.is_dir():
        return []
    found = [
        path
        for path in checkpoint_root.iterdir()
        if path.is_dir() and path.name.startswith(STEP_PREFIX) and path.name[5:].isdigit()
    ]
    return sorted(found, key=lambda path: int(path.name[len(STEP_PREFIX) :]))


def latest_checkpoint(checkpoint_root: Path) -> Path | None:
    """The newest checkpoint with a manifest under ``checkpoint_root``, or ``None``."""
    for path in reversed(list_checkpoints(checkpoint_root)):
        if (path / MANIFEST).is_file():
            return path
    return None


def prune_checkpoints(checkpoint_root: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints (0 keeps all) and leftover temp dirs.

    Called by the writing rank right after a checkpoint was renamed into place, so every
    ``.tmp-*`` directory left is from an interrupted earlier write.
    """
    for stale in checkpoint_root.glob(f".tmp-{STEP_PREFIX}*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    if keep_last <= 0:
        return
    for path in list_checkpoints(checkpoint_root)[:-keep_last]:
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
    return torch.load(directory / TRAINING_STATE, map_location="cpu", weights_only=False)  # type: ignore[no-any-return]


def load_rank_state(directory: Path, rank: int) -> dict[str, Any]:
    """One process's RNG and data-loader state."""
    path = directory / rank_state_file(rank)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(directory)!r} has no state for rank {rank}")
    return torch.load(path, map_location="cpu", weights_only=False)  # type: ignore[no-any-return]
