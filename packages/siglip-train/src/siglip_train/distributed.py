"""Training past one device's memory: FSDP sharded checkpoints' export, per-rank memory, planner.

- ``close_distributed()``: destroy the process group after the last ``Trainer`` under torchrun
  has returned, without gloo's abort at exit.
- ``export_checkpoint(checkpoint, output_dir, *, model)``: a (sharded or full) trainer checkpoint
  as one consolidated Hugging Face-layout model directory.
- ``state_bytes_per_rank(model, optimizer)``: bytes this rank holds for parameters, gradients and
  optimizer state (local FSDP shards only).
- ``plan_memory(model, *, batch, devices, ...)`` -> :class:`MemoryPlan`: the predicted per-device
  memory of a training step (``siglip-train plan``).

See docs/distributed.md.
"""

from siglip_train._dcp import export_checkpoint
from siglip_train._distributed import close_distributed
from siglip_train._fsdp import state_bytes_per_rank
from siglip_train._planner import MemoryPlan
from siglip_train._planner import TowerActivations
from siglip_train._planner import plan_memory

__all__ = [
    "MemoryPlan",
    "TowerActivations",
    "close_distributed",
    "export_checkpoint",
    "plan_memory",
    "state_bytes_per_rank",
]
