"""FSDP2 for the trainer: ``fully_shard`` per encoder block and per tower, replicated logit scalars.

The trainer's ``strategy="fsdp"`` lands here. What is sharded:

- every block of every tower (the entries of each ``nn.ModuleList`` inside a tower: the encoder
  layers of ``siglip_models``), then each tower root (embeddings, final norm, head), then the
  step module as the FSDP root;
- not the model's own parameters (``log_scale``, ``bias``): FSDP2 shards along dim 0 and refuses
  0-d parameters, and two scalars are not worth sharding. They stay replicated, like DDP's, and
  :func:`average_replicated_gradients` averages their gradients over the ranks after backward.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn

from siglip_train._config import ConfigError

# Methods the trainer calls on a tower instead of ``forward``: FSDP must unshard around them too.
_TOWER_ENTRY_POINTS = ("forward_naflex",)


def require_process_group(device_type: str) -> None:
    """Refuse ``strategy="fsdp"`` outside a process group (FSDP shards over one).

    Raises:
        ConfigError: naming the field, what it needs and what there is.
    """
    if not (dist.is_available() and dist.is_initialized()):
        raise ConfigError(
            "config field 'strategy' is 'fsdp', which shards the model over a process group, "
            "but there is none (expected a run under torchrun, e.g. `torchrun "
            "--nproc_per_node=2 -m siglip_train train ...`, or an initialised "
            f"torch.distributed group; got a plain single {device_type} process): use "
            "strategy=ddp for one process, or torchrun (any --nproc_per_node, 1 included)"
        )


def mixed_precision_policy(
    device_type: str, autocast_dtype: torch.dtype | None
) -> torch.distributed.fsdp.MixedPrecisionPolicy:
    """bf16 parameters and compute with float32 gradient reduction on GPU; float32 on CPU.

    Args:
        device_type: ``"cuda"`` or ``"cpu"``.
        autocast_dtype: the trainer's compute dtype (``None``: float32).
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if device_type == "cuda" and autocast_dtype == torch.bfloat16:
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy(param_dtype=torch.float32, reduce_dtype=torch.float32)


def tower_blocks(tower: nn.Module) -> list[nn.Module]:
    """The blocks of a tower: the entries of every ``nn.ModuleList`` inside it."""
    blocks: list[nn.Module] = []
    for module in tower.modules():
        if isinstance(module, nn.ModuleList):
            blocks.extend(module)
    return blocks


def towers_of(model: nn.Module) -> list[nn.Module]:
    """The model's direct submodules that hold parameters (``vision_model``, ``text_model``)."""
    return [child for child in model.children() if any(True for _ in child.parameters())]


def replicated_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The model's own parameters (``log_scale``, ``bias``): kept replicated, not sharded."""
    return list(model.parameters(recurse=False))


def shard_two_towers(
    step_module: nn.Module,
    model: nn.Module,
    *,
    device_type: str,
    autocast_dtype: torch.dtype | None,
) -> list[nn.Parameter]:
    """Apply ``fully_shard`` per block, per tower root and at ``step_module`` (in place).

    Args:
        step_module: the module the trainer calls each step (it holds ``model``); the FSDP root.
        model: the two-tower model.
        device_type: ``"cpu"`` (gloo) or ``"cuda"`` (NCCL).
        autocast_dtype: see :func:`mixed_precision_policy`.

    Returns:
        The replicated parameters whose gradients the caller averages after backward.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.fsdp import register_fsdp_forward_method

    require_process_group(device_type)
    mesh = init_device_mesh(device_type, (dist.get_world_size(),))
    policy = mixed_precision_policy(device_type, autocast_dtype)
    replicated = replicated_parameters(model)
    for tower in towers_of(model):
        # Registered before fully_shard so that it runs before FSDP's own post-forward hook,
        # which warns about view outputs (an in-place op on one would skip its backward hook).
        tower.register_forward_hook(_output_as_own_tensor)
        for block in tower_blocks(tower):
            fully_shard(block, mesh=mesh, mp_policy=policy)
        fully_shard(tower, mesh=mesh, mp_policy=policy)
        for method in _TOWER_ENTRY_POINTS:
            if callable(getattr(tower, method, None)):
                register_fsdp_forward_method(tower, method)
    fully_shard(step_module, mesh=mesh, mp_policy=policy, ignored_params=set(replicated))
    return replicated


def _output_as_own_tensor(module: nn.Module, inputs: object, output: object) -> torch.Tensor | None:
    del module, inputs
    if isinstance(output, torch.Tensor) and output._is_view():
        return output.clone()
    return None


def average_replicated_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """All-reduce-mean the gradients of the replicated parameters (what DDP does for them)."""
    world_size = dist.get_world_size()
    for parameter in parameters:
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= world_size


def _local(tensor: torch.Tensor) -> torch.Tensor:
    from torch.distributed.tensor import DTensor

    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def clip_grad_norm(parameters: Sequence[nn.Parameter], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` for a mix of sharded (DTensor) and replicated gradients.

    The global norm is ``sqrt(Σ_sharded ||g_local||² summed over ranks + Σ_replicated ||g||²)``;
    gradients are scaled by ``min(1, max_norm / (norm + 1e-6))``, torch's formula.

    Returns:
        The global gradient norm before clipping (a float32 0-d tensor, the same on every rank).
    """
    from torch.distributed.tensor import DTensor

    grads: list[torch.Tensor] = [p.grad for p in parameters if p.grad is not None]
    sharded = [grad for grad in grads if isinstance(grad, DTensor)]
    plain = [grad for grad in grads if not isinstance(grad, DTensor)]
    device = (sharded or plain)[0].device if (sharded or plain) else torch.device("cpu")
    sharded_squares = torch.zeros((), dtype=torch.float32, device=device)
    for grad in sharded:
        sharded_squares += _local(grad).float().pow(2).sum()
    dist.all_reduce(sharded_squares)
    plain_squares = sum(
        (grad.float().pow(2).sum() for grad in plain),
        torch.zeros((), dtype=torch.float32, device=device),
    )
    total = (sharded_squares + plain_squares).sqrt()
    if math.isfinite(max_norm):
        coefficient = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for gradient in grads:
            _local(gradient).mul_(coefficient.to(gradient.dtype))
    return total


def state_bytes_per_rank(
    model: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, int]:
    """Bytes this rank holds for parameters, gradients and optimizer state (local shards only).

    Under FSDP a parameter, its gradient and its AdamW moments are DTensors of which this rank
    holds one shard: only that shard is counted, so the sum is ~1/W of DDP's.

    Args:
        model: the (sharded or plain) model.
        optimizer: its optimizer, if any (its state tensors are counted).

    Returns:
        ``{"parameters": ..., "gradients": ..., "optimizer": ...}`` in bytes.

    Examples:
        >>> import torch
        >>> from siglip_train.distributed import state_bytes_per_rank
        >>> model = torch.nn.Linear(4, 2)  # 10 float32 parameters
        >>> optimizer = torch.optim.AdamW(model.parameters())
        >>> model(torch.ones(1, 4)).sum().backward()
        >>> optimizer.step()
        >>> state_bytes_per_rank(model, optimizer)  # AdamW: two moments and a step per tensor
        {'parameters': 40, 'gradients': 40, 'optimizer': 88}
    """

    def size(tensor: torch.Tensor) -> int:
        local = _local(tensor)
        return local.numel() * local.element_size()

    parameters = list(model.parameters())
    held = {
        "parameters": sum(size(p) for p in parameters),
        "gradients": sum(size(p.grad) for p in parameters if p.grad is not None),
        "optimizer": 0,
    }
    if optimizer is not None:
        for state in optimizer.state.values():
            held["optimizer"] += sum(
                size(value) for value in state.values() if isinstance(value, torch.Tensor)
            )
    return held
