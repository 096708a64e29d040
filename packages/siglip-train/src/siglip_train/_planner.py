"""Per-device memory of a training step, from a model config's shapes: ``siglip-train plan``.

What one device holds at the peak of a step (the end of the forward pass: this trainer frees the
previous step's gradients only after the forward, so they are still there):

- parameters: float32 master weights, ``P`` (DDP) or ``P / W`` (FSDP), plus under FSDP the
  gathered copies of the largest tower root (the text tower's token table) and two blocks (the
  one running and the one prefetched) in the compute dtype; DDP with bf16 autocast also caches a
  bf16 copy of every weight;
- gradients: float32, ``P`` or ``P / W``; DDP adds its all-reduce buckets (``P`` more), FSDP one
  group's unsharded gradient before its reduce-scatter;
- optimizer state: AdamW's two float32 moments, ``2 P`` or ``2 P / W``;
- activations kept for backward, per tower and per block, counted from the layer code of
  ``siglip_models`` (pre-LN block: the block input, both LayerNorm outputs, ``qkv``, the
  attention output and its contiguous copy, the MLP input, ``fc1`` and GELU outputs, and the
  attention's per-head log-sum-exp: ``9 width + 2 mlp_dim + heads`` values per token), plus the
  tower's own (patch pixels, final LayerNorm, the MAP head's keys and values). With activation
  checkpointing a block keeps only its input, and one block at a time is recomputed;
- the loss's buffers (docs/loss.md, docs/distributed.md): the embeddings before and after
  normalisation, the ``[n, D]`` gradients kept for backward, the ring's travelling blocks and
  five gradient buffers, and one ``block_size²`` float32 tile. A frozen tower (LiT) has no
  gradients, optimizer state or saved activations.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any
from typing import Literal

GIB = 1024**3
FUSED_BLOCK_SIZE = 2048  # siglip_loss.torch's default tile side


@dataclasses.dataclass(frozen=True)
class TowerActivations:
    """Bytes one tower keeps for backward on one device.

    Attributes:
        tokens: tokens per example.
        per_block: bytes one encoder block keeps (local batch, full block).
        blocks: number of blocks.
        other: the tower's embeddings, final LayerNorm and head.
        total: what the tower holds at the end of the forward pass.
    """

    tokens: int
    per_block: int
    blocks: int
    other: int
    total: int


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """The predicted per-device memory of one training step (bytes).

    Attributes:
        model: the registry name (or ``"custom"``).
        batch: the global batch.
        devices: the number of devices ``W``.
        strategy: ``"ddp"`` or ``"fsdp"``.
        dtype: ``"fp32"`` or ``"bf16"`` (compute and activations; weights stay float32).
        checkpointing: activation checkpointing per block.
        parameters: parameter count of the model.
        parameter_bytes: master weights held (and gathered copies under FSDP).
        gradient_bytes: gradients held (and DDP's buckets).
        optimizer_bytes: AdamW state held.
        image: the image tower's activations.
        text: the text tower's activations.
        loss_bytes: the loss's buffers.
        total: the sum.
        device_memory: the device size in bytes, if given.
    """

    model: str
    batch: int
    devices: int
    strategy: str
    dtype: str
    checkpointing: bool
    parameters: int
    parameter_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    image: TowerActivations
    text: TowerActivations
    loss_bytes: int
    total: int
    device_memory: int | None

    @property
    def fits(self) -> bool | None:
        """Whether ``total`` fits ``device_memory`` (``None`` when no size was given)."""
        return None if self.device_memory is None else self.total <= self.device_memory

    def report(self) -> str:
        """The plan as a small text table (GiB), as ``siglip-train plan`` prints it."""

        def gib(value: int) -> str:
            return f"{value / GIB:10.3f}"

        local = self.batch // self.devices
        lines = [
            f"{self.model}: {self.parameters / 1e6:.1f} M parameters, global batch {self.batch} "
            f"on {self.devices} devices ({local} per device), {self.strategy}, {self.dtype}"
            + (", activation checkpointing" if self.checkpointing else ""),
            f"{'per device':<46}{'GiB':>10}",
            f"{'parameters':<46}{gib(self.parameter_bytes)}",
            f"{'gradients':<46}{gib(self.gradient_bytes)}",
            f"{'optimizer state (AdamW)':<46}{gib(self.optimizer_bytes)}",
        ]
        for name, tower in (("image", self.image), ("text", self.text)):
            lines.append(
                f"{f'{name} activations ({tower.blocks} x {tower.per_block / GIB:.3f} per block)':<46}"
                f"{gib(tower.total)}"
            )
        lines += [
            f"{'loss buffers':<46}{gib(self.loss_bytes)}",
            f"{'total':<46}{gib(self.total)}",
        ]
        if self.device_memory is not None:
            verdict = "fits" if self.fits else "does NOT fit"
            lines.append(f"{verdict} in {self.device_memory / GIB:.1f} GiB")
        return "\n".join(lines)


def _tower_activations(
    *,
    tokens: int,
    width: int,
    mlp_dim: int,
    heads: int,
    depth: int,
    local_batch: int,
    other_per_token: int,
    other_per_example: int,
    value_bytes: int,
    checkpointing: bool,
    frozen: bool,
) -> TowerActivations:
    if frozen:
        return TowerActivations(tokens, 0, depth, 0, 0)
    rows = local_batch * tokens
    per_block = rows * (9 * width + 2 * mlp_dim + heads) * value_bytes
    other = (rows * other_per_token + local_batch * other_per_example) * value_bytes
    if checkpointing:
        kept = depth * rows * width * value_bytes + per_block  # inputs + one recomputed block
    else:
        kept = depth * per_block
    return TowerActivations(tokens, per_block, depth, other, kept + other)


def _count(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def plan_memory(
    model: Any,
    *,
    batch: int,
    devices: int,
    strategy: Literal["ddp", "fsdp"] = "fsdp",
    dtype: Literal["fp32", "bf16"] = "bf16",
    checkpointing: bool = False,
    freeze: Literal["none", "image", "text"] = "none",
    loss: Literal["sigmoid", "softmax"] = "sigmoid",
    loss_strategy: Literal["ring", "all_gather"] = "ring",
    device_memory_gib: float | None = None,
) -> MemoryPlan:
    """Predict the per-device memory of a training step of a ``siglip_models`` config.

    The model is built on the ``meta`` device (no memory, exact parameter counts per block).

    Args:
        model: a registry name (``siglip_models.list_configs()``) or a ``SiglipConfig``.
        batch: the global batch (image-text pairs), divisible by ``devices``.
        devices: the number of devices ``W``.
        strategy: ``"ddp"`` or ``"fsdp"``.
        dtype: ``"bf16"`` (autocast / FSDP bf16 compute) or ``"fp32"``.
        checkpointing: activation checkpointing per block (``model.grad_checkpointing``).
        freeze: ``"image"`` (LiT) or ``"text"``: that tower has no gradients, optimizer state
            or saved activations.
        loss: ``"sigmoid"`` or ``"softmax"``.
        loss_strategy: the distributed sigmoid loss's ``strategy``.
        device_memory_gib: the device size, to say whether it fits.

    Returns:
        :class:`MemoryPlan`.

    Raises:
        ValueError: ``batch`` not divisible by ``devices``, or a non-positive size.
        KeyError: an unknown registry name (the message lists the known ones).

    Examples:
        >>> from siglip_train.distributed import plan_memory
        >>> plan = plan_memory("tiny-test", batch=8, devices=2, strategy="fsdp", dtype="fp32")
        >>> plan.parameters, plan.optimizer_bytes == 2 * 4 * plan.parameters // 2
        (45499, True)
        >>> plan_memory("tiny-test", batch=8, devices=3)
        Traceback (most recent call last):
        ...
        ValueError: batch must be divisible by devices (the global batch is split evenly), got batch=8 and devices=3
    """
    import torch

    from siglip_models import get_config
    from siglip_models.torch import SiglipModel
    from siglip_train._fsdp import tower_blocks

    if batch < 1 or devices < 1:
        raise ValueError(f"batch and devices must be >= 1, got batch={batch}, devices={devices}")
    if batch % devices:
        raise ValueError(
            "batch must be divisible by devices (the global batch is split evenly), got "
            f"batch={batch} and devices={devices}"
        )
    name = model if isinstance(model, str) else "custom"
    config = get_config(model) if isinstance(model, str) else model
    with torch.device("meta"):
        built = SiglipModel(config)
    local = batch // devices
    value_bytes = 2 if dtype == "bf16" else 4
    vision, text = config.vision, config.text
    towers = {"image": built.vision_model, "text": built.text_model}
    total_parameters = _count(built)
    trainable = total_parameters - sum(
        _count(tower) for tower_name, tower in towers.items() if freeze == tower_name
    )
    sharded = strategy == "fsdp"
    share = devices if sharded else 1
    parameter_bytes = math.ceil(4 * total_parameters / share)
    gradient_bytes = math.ceil(4 * trainable / share)
    optimizer_bytes = 2 * gradient_bytes
    if sharded:
        # Gathered for compute: the largest tower root and two blocks (running + prefetched).
        blocks = {name: tower_blocks(tower) for name, tower in towers.items()}
        roots = [
            _count(tower) - sum(_count(block) for block in blocks[name])
            for name, tower in towers.items()
        ]
        block = max(_count(tower_blocks_[0]) for tower_blocks_ in blocks.values())
        parameter_bytes += (max(roots) + 2 * block) * value_bytes
        # One group's unsharded gradient before its reduce-scatter (a tower root's: the token
        # table's gradient is dense).
        gradient_bytes += max(*roots, block) * value_bytes
    else:
        if devices > 1:
            gradient_bytes += 4 * trainable  # DDP's all-reduce buckets
        if dtype == "bf16":
            parameter_bytes += 2 * total_parameters  # autocast's cached bf16 weight copies
    image_tokens = (vision.image_size // vision.patch_size) ** 2
    image = _tower_activations(
        tokens=image_tokens,
        width=vision.width,
        mlp_dim=vision.mlp_dim,
        heads=vision.num_heads,
        depth=vision.depth,
        local_batch=local,
        other_per_token=4 * vision.width,  # final LayerNorm in/out, the head's keys and values
        other_per_example=3 * vision.image_size**2,  # the pixels the patch conv keeps
        value_bytes=value_bytes,
        checkpointing=checkpointing,
        frozen=freeze == "image",
    )
    text_tower = _tower_activations(
        tokens=text.max_length,
        width=text.width,
        mlp_dim=text.mlp_dim,
        heads=text.num_heads,
        depth=text.depth,
        local_batch=local,
        other_per_token=2 * text.width,  # final LayerNorm in/out
        other_per_example=0,
        value_bytes=value_bytes,
        checkpointing=checkpointing,
        frozen=freeze == "text",
    )
    embed = text.embed_dim
    tile = min(FUSED_BLOCK_SIZE, local) ** 2
    if loss == "softmax" and devices > 1:
        floats = 4 * local * embed + 2 * batch * embed + 4 * local * batch
    elif devices == 1 or loss == "softmax":
        floats = 6 * local * embed + (tile if loss == "sigmoid" else 4 * local * local)
    elif loss_strategy == "ring":
        floats = 13 * local * embed + tile  # + 2 travelling blocks + 5 gradient buffers
    else:
        floats = 6 * local * embed + 2 * batch * embed + tile
    loss_bytes = 4 * floats
    total = (
        parameter_bytes
        + gradient_bytes
        + optimizer_bytes
        + image.total
        + text_tower.total
        + loss_bytes
    )
    return MemoryPlan(
        model=name,
        batch=batch,
        devices=devices,
        strategy=strategy,
        dtype=dtype,
        checkpointing=checkpointing,
        parameters=total_parameters,
        parameter_bytes=parameter_bytes,
        gradient_bytes=gradient_bytes,
        optimizer_bytes=optimizer_bytes,
        image=image,
        text=text_tower,
        loss_bytes=loss_bytes,
        total=total,
        device_memory=None if device_memory_gib is None else int(device_memory_gib * GIB),
    )


def measured_peak_bytes(step: Callable[[], None], alive: Iterable[Any]) -> int:
    """The peak of live tensor bytes while ``step()`` runs on CPU (what the plan predicts).

    ``torch.profiler`` with ``profile_memory=True`` records every allocation and free of torch's
    CPU allocator; the peak of their running sum plus the bytes of ``alive`` (the tensors that
    exist when the step starts: parameters, gradients, optimizer state; FSDP: local shards) is
    the step's peak. RSS would also count the allocator's cached pages and the Python heap.

    Args:
        step: one training step.
        alive: the tensors alive before it (DTensors count their local shard).
    """
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile

    from siglip_train._fsdp import _local

    held = sum(_local(t).numel() * _local(t).element_size() for t in alive)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        step()
    events = sorted(
        (e for e in profiler.profiler.kineto_results.events() if e.name() == "[memory]"),
        key=lambda e: e.start_ns(),
    )
    running = peak = 0
    for event in events:
        running += event.nbytes()
        peak = max(peak, running)
    return int(held + peak)
