"""Sharded checkpoints of the JAX trainer with orbax, and the HF-layout export.

One orbax step directory per checkpoint, ``checkpoints/step_<N>`` (the torch trainer's name):
``state`` holds the parameters and the optimizer state as sharded arrays (each process writes
its shards; restored onto whatever mesh the resuming run has), ``meta`` a JSON record of the
step, the data loader's state, the RNG key, the config and every parameter's shape. orbax writes
into a temporary directory and renames it when every process has finished (atomic commit), and
deletes all but the newest ``keep_last``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from siglip_train._common import CheckpointError

CHECKPOINT_DIR = "checkpoints"
FORMAT = "siglip-train-jax/1"


class OrbaxCheckpoints:
    """The checkpoints of one run directory (every process creates one and calls every method).

    Args:
        root: the ``checkpoints`` directory.
        keep_last: keep the newest this many (0: all).
    """

    def __init__(self, root: str | os.PathLike[str], *, keep_last: int) -> None:
        self.root = Path(root).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep_last or None,
            step_prefix="step",
            step_format_fixed_length=9,
            enable_async_checkpointing=False,
            create=True,
        )
        self.manager = ocp.CheckpointManager(
            self.root, options=options, item_names=("state", "meta")
        )

    def steps(self) -> list[int]:
        """The committed checkpoints' steps, oldest first."""
        return sorted(int(step) for step in self.manager.all_steps())

    def path(self, step: int) -> Path:
        """The directory of the checkpoint of ``step``."""
        return self.root / f"step_{step:09d}"

    def save(
        self, step: int, *, params: Mapping[str, jax.Array], opt_state: Any, meta: dict[str, Any]
    ) -> Path:
        """Write (and commit) the checkpoint of ``step``; returns its directory."""
        state = {"params": dict(params), "opt_state": _flat_leaves(opt_state)}
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                meta=ocp.args.JsonSave({"format": FORMAT, **meta}),
            ),
            force=True,
        )
        self.manager.wait_until_finished()
        return self.path(step)

    def read_meta(self, step: int) -> dict[str, Any]:
        """The JSON record of the checkpoint of ``step``."""
        restored = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        meta: dict[str, Any] = dict(restored["meta"])
        if meta.get("format") != FORMAT:
            raise CheckpointError(
                f"checkpoint {str(self.path(step))!r}: expected format {FORMAT!r}, got "
                f"{meta.get('format')!r} (a torch checkpoint? resume it with the torch trainer)"
            )
        return meta

    def restore(
        self,
        step: int,
        *,
        params: Mapping[str, jax.ShapeDtypeStruct],
        opt_state: Any,
    ) -> tuple[dict[str, jax.Array], Any]:
        """Read ``step`` onto the shardings of the abstract ``params`` and ``opt_state``.

        The shapes were checked against the meta record first (:func:`check_shapes`); the
        shardings may differ from the saved run's (another device count or mesh).
        """
        leaves, treedef = jax.tree.flatten(opt_state)
        target = {
            "params": dict(params),
            "opt_state": {str(index): leaf for index, leaf in enumerate(leaves)},
        }
        restored = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
        )["state"]
        opt_leaves = [restored["opt_state"][str(index)] for index in range(len(leaves))]
        return dict(restored["params"]), jax.tree.unflatten(treedef, opt_leaves)

    def close(self) -> None:
        """Wait for pending writes and release the manager."""
        self.manager.close()


def _flat_leaves(tree: Any) -> dict[str, Any]:
    # optax states are nested named tuples with empty nodes; their leaves in order are enough,
    # the structure comes from the resuming run's own (identical) optimizer.
    return {str(index): leaf for index, leaf in enumerate(jax.tree.leaves(tree))}


def check_shapes(saved: Mapping[str, Any], current: Mapping[str, Any], *, source: str) -> None:
    """Refuse a checkpoint of another model: names and shapes must match exactly.

    Raises:
        CheckpointError: naming the first differing parameter, the expected and the saved shape.
    """
    missing = sorted(set(current) - set(saved))
    unexpected = sorted(set(saved) - set(current))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {source!r} is of another model: parameters missing there "
            f"{missing[:5]}, not in this model {unexpected[:5]}"
        )
    for name, shape in current.items():
        if list(saved[name]) != list(shape):
            raise CheckpointError(
                f"checkpoint {source!r} is of another model shape: parameter {name!r} "
                f"expected shape {tuple(shape)}, got {tuple(saved[name])}"
            )
