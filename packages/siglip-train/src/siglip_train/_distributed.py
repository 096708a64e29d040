"""Process-group setup from torchrun's environment variables."""

from __future__ import annotations

import dataclasses
import datetime
import gc
import os

import torch
import torch.distributed as dist


@dataclasses.dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the run.

    Attributes:
        rank: global rank (0 in a single-process run).
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
        initialized_here: True when :func:`init_distributed` created the process group.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


# How long a collective may wait for the other processes by default: a hung or stopped rank then
# fails the job in minutes instead of torch's 30 (gloo) so that torchrun can restart it.
DEFAULT_COLLECTIVE_TIMEOUT_SECONDS = {"cpu": 300.0, "cuda": 600.0}


def init_distributed(
    device_type: str, *, timeout_seconds: float = 0.0, group_for_one: bool = False
) -> DistributedContext:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).

    Uses NCCL for CUDA and gloo for CPU. A run without ``WORLD_SIZE`` (or with 1) is a single
    process and creates no group. An existing default group is reused.

    Args:
        device_type: ``"cpu"`` or ``"cuda"``.
        timeout_seconds: how long a collective waits for the others before it fails; 0 means
            :data:`DEFAULT_COLLECTIVE_TIMEOUT_SECONDS` (300 s on CPU, 600 s on GPU).
        group_for_one: also create a group of one process under torchrun
            (``--nproc_per_node=1``: ``WORLD_SIZE=1`` and ``MASTER_ADDR`` set), which FSDP needs.
    """
    if dist.is_available() and dist.is_initialized():
        return DistributedContext(
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 and not (group_for_one and "MASTER_ADDR" in os.environ):
        return DistributedContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        backend=backend,
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(
            seconds=timeout_seconds or DEFAULT_COLLECTIVE_TIMEOUT_SECONDS.get(device_type, 600.0)
        ),
    )
    return DistributedContext(
        rank=rank, world_size=world_size, local_rank=local_rank, initialized_here=True
    )


def close_distributed() -> None:
    """Destroy the default process group, if there is one, after the last trainer has returned.

    Garbage is collected first: DDP's reducer, FSDP's state and the last step's tensors sit in
    reference cycles, and left alive past ``destroy_process_group`` they can make gloo abort the
    process at interpreter exit ("terminate called without an active exception"; about 1 launch
    in 10 on a 2-core CPU). Call it when the trainers are out of scope (after the function that
    ran them has returned), as ``siglip-train train`` does. Without a group it does nothing.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
