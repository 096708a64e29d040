"""Sharded checkpoints with ``torch.distributed.checkpoint`` (DCP) and their consolidated export.

Under ``strategy="fsdp"`` every rank writes its own shards of the model and optimizer state into
``step_<N>/sharded/`` (DCP's format: one ``.distcp`` file per rank and a ``.metadata`` index of
the global shapes), next to the usual per-rank RNG/data files, ``training_state.pt`` (scheduler,
step, config) and the sha256 manifest. DCP reads the shards back onto any number of ranks, so a
run saved on W ranks resumes on any W' (FSDP or one process). The directory is still written
under a temp name and renamed into place by ``_checkpoint.write_checkpoint``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

SHARDED_DIRECTORY = "sharded"


def _state_dicts(
    model: nn.Module, optimizer: torch.optim.Optimizer | None
) -> dict[str, dict[str, Any]]:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    from torch.distributed.checkpoint.state_dict import get_state_dict

    if optimizer is None:
        return {"model": get_model_state_dict(model)}
    model_state, optimizer_state = get_state_dict(model, optimizer)
    return {"model": model_state, "optimizer": optimizer_state}


def save_sharded(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Every rank writes its shards of ``model`` and ``optimizer`` into ``directory`` (collective).

    Args:
        directory: the DCP directory (``step_<N>/sharded`` inside the checkpoint's temp dir).
        model: the (FSDP-sharded or plain) model; keys are its unsharded parameter names.
        optimizer: its optimizer; its state is keyed by the same names.
    """
    from torch.distributed.checkpoint.state_dict_saver import save

    save(_state_dicts(model, optimizer), checkpoint_id=directory)


def load_sharded(
    directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None
) -> None:
    """Load a DCP checkpoint into ``model`` (and ``optimizer``), resharding to this world size.

    Works on any number of ranks, and in a single process without a process group.
    """
    from torch.distributed.checkpoint.state_dict import set_model_state_dict
    from torch.distributed.checkpoint.state_dict import set_state_dict
    from torch.distributed.checkpoint.state_dict_loader import load

    state = _state_dicts(model, optimizer)
    single = not (dist.is_available() and dist.is_initialized())
    with warnings.catch_warnings():
        # One process without a group (an export, a 1-process resume) is meant: DCP warns anyway.
        warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
        load(state, checkpoint_id=directory, no_dist=single)
    if optimizer is None:
        set_model_state_dict(model, state["model"])
    else:
        set_state_dict(
            model,
            optimizer,
            model_state_dict=state["model"],
            optim_state_dict=state["optimizer"],
        )


def export_checkpoint(
    checkpoint: str | os.PathLike[str], output_dir: str | os.PathLike[str], *, model: nn.Module
) -> Path:
    """Write a checkpoint's weights as one consolidated model directory (one process, no group).

    A sharded (FSDP) checkpoint is gathered from its DCP shards; a DDP checkpoint's ``model/``
    is read as is. ``siglip_models.torch.SiglipModel`` gets the Hugging Face layout
    (``config.json`` + ``model.safetensors``) that ``SiglipModel.from_pretrained`` and
    transformers' ``SiglipModel.from_pretrained`` load; any other model a ``model.safetensors``.

    Args:
        checkpoint: a ``step_<N>`` directory written by the trainer.
        output_dir: where to write (created; files in it are replaced atomically).
        model: an unsharded model of the checkpoint's architecture (its weights are replaced).

    Returns:
        ``output_dir`` as a ``Path``.

    Raises:
        CheckpointError: corrupt or incomplete checkpoint, or one of another model shape.

    Examples:
        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from siglip_models.torch import SiglipModel
        >>> from siglip_train import TrainConfig, Trainer, apply_overrides
        >>> from siglip_train.distributed import export_checkpoint
        >>> _ = torch.manual_seed(0)
        >>> batches = [
        ...     {
        ...         "pixels": torch.rand(2, 3, 32, 32) * 2 - 1,
        ...         "token_ids": torch.randint(0, 100, (2, 16)),
        ...     }
        ... ]
        >>> run = tempfile.mkdtemp()
        >>> config = apply_overrides(
        ...     TrainConfig(),
        ...     [
        ...         f"output_dir={run}",
        ...         "steps=1",
        ...         "logging.progress_bar=false",
        ...         "logging.tensorboard=false",
        ...     ],
        ... )
        >>> checkpoint = Trainer(SiglipModel("tiny-test"), batches, config).fit().checkpoint
        >>> out = export_checkpoint(
        ...     checkpoint, Path(run) / "export", model=SiglipModel("tiny-test")
        ... )
        >>> sorted(path.name for path in out.iterdir())
        ['config.json', 'model.safetensors']
    """
    from siglip_train._checkpoint import MODEL_DIRECTORY
    from siglip_train._checkpoint import check_model_matches
    from siglip_train._checkpoint import load_model_weights
    from siglip_train._checkpoint import read_manifest
    from siglip_train._checkpoint import save_model_weights

    directory = Path(checkpoint)
    manifest = read_manifest(directory)
    check_model_matches(manifest, model, directory)
    if manifest.get("weights") == "sharded":
        load_sharded(directory / SHARDED_DIRECTORY, model, None)
    else:
        load_model_weights(model, directory / MODEL_DIRECTORY)
    out = Path(output_dir)
    save_model_weights(model, out)
    return out
