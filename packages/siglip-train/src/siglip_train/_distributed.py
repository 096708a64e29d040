"""Process-group setup (torchrun env vars) and the losses' multi-process forms."""

from __future__ import annotations

import dataclasses
import datetime
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F


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


def init_distributed(device_type: str) -> DistributedContext:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).

    Uses NCCL for CUDA and gloo for CPU. A run without ``WORLD_SIZE`` (or with 1) is a single
    process and creates no group. An existing default group is reused.
    """
    if dist.is_available() and dist.is_initialized():
        return DistributedContext(
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
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
        timeout=datetime.timedelta(minutes=30),
    )
    return DistributedContext(
        rank=rank, world_size=world_size, local_rank=local_rank, initialized_here=True
    )


def distributed_softmax_loss(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    *,
    scale: torch.Tensor,
    bias: torch.Tensor | None = None,
    group: dist.ProcessGroup | None = None,
) -> torch.Tensor:
    r"""CLIP's softmax loss with global negatives; the mean over ranks is the global loss.

    Each rank scores its ``n`` local rows against all ``N = W n`` rows of the other modality:

    .. math::
        L_r = \frac{1}{2n} \sum_{i \in r} \Big[ \mathrm{CE}(t\, x_i Y^\top, i)
              + \mathrm{CE}(t\, y_i X^\top, i) \Big]

    The all-gather is differentiable (its backward sums gradients over ranks), so with DDP's
    gradient averaging every parameter gets the gradient of the global loss. ``bias`` is
    accepted for signature compatibility and unused (the softmax is shift-invariant).

    Args:
        image_emb: ``[n, dim]`` this rank's normalised image embeddings.
        text_emb: ``[n, dim]`` this rank's normalised text embeddings (same ``n`` on every rank).
        scale: 0-d temperature multiplier ``exp(log_scale)``.
        bias: ignored.
        group: process group (default: the world).

    Returns:
        0-d float32 per-rank loss.
    """
    del bias
    from torch.distributed.nn.functional import all_gather

    rank = dist.get_rank(group)
    local = image_emb.shape[0]
    all_images = torch.cat(all_gather(image_emb.contiguous(), group=group))
    all_texts = torch.cat(all_gather(text_emb.contiguous(), group=group))
    if all_images.shape[0] != local * dist.get_world_size(group):
        raise ValueError("distributed_softmax_loss: every rank must pass the same batch size")
    labels = torch.arange(local, device=image_emb.device) + rank * local
    logits_image = scale * image_emb.float() @ all_texts.float().T
    logits_text = scale * text_emb.float() @ all_images.float().T
    return 0.5 * (F.cross_entropy(logits_image, labels) + F.cross_entropy(logits_text, labels))
