"""AdamW parameter groups (decay on weights only, per-tower lr) and warmup + cosine schedule."""

from __future__ import annotations

import re
from collections.abc import Iterable
from collections.abc import Sequence

import torch
from torch import nn

from siglip_train._common import NO_DECAY_NAME_PATTERNS
from siglip_train._common import warmup_cosine_multiplier


def decay_parameter_names(
    model: nn.Module, *, no_decay_patterns: Sequence[str] = NO_DECAY_NAME_PATTERNS
) -> set[str]:
    """Names of the parameters that get weight decay: weight matrices and convolution kernels.

    A parameter decays when it has 2 or more dimensions, is not owned by an ``nn.Embedding``
    (token tables), a normalisation layer, and its name matches none of ``no_decay_patterns``
    (position embeddings, ``log_scale``, ``bias``, biases). This mirrors big_vision's default
    ``.*/kernel$`` mask.

    Args:
        model: the model whose ``named_parameters()`` are classified.
        no_decay_patterns: regular expressions (``re.search``) on the parameter name.

    Returns:
        The set of parameter names that decay.

    Examples:
        >>> layer = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        >>> sorted(decay_parameter_names(layer))
        ['0.weight']
    """
    excluded_modules = (
        nn.Embedding,
        nn.EmbeddingBag,
        nn.LayerNorm,
        nn.GroupNorm,
        nn.RMSNorm,
        nn.modules.batchnorm._BatchNorm,
    )
    excluded: set[str] = set()
    for module_name, module in model.named_modules():
        if isinstance(module, excluded_modules):
            for parameter_name, _ in module.named_parameters(recurse=False):
                excluded.add(f"{module_name}.{parameter_name}" if module_name else parameter_name)
    compiled = [re.compile(pattern) for pattern in no_decay_patterns]
    decay = set()
    for name, parameter in model.named_parameters():
        if parameter.ndim < 2 or name in excluded:
            continue
        if any(pattern.search(name) for pattern in compiled):
            continue
        decay.add(name)
    return decay


def build_parameter_groups(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    image_parameter_names: Iterable[str] = (),
    text_parameter_names: Iterable[str] = (),
    image_lr_multiplier: float = 1.0,
    text_lr_multiplier: float = 1.0,
    logit_lr_multiplier: float = 1.0,
) -> list[dict]:
    """AdamW parameter groups: (tower, decay) combinations, frozen parameters left out.

    Each group carries ``"name"``, ``"lr"``, ``"initial_lr"`` (the peak lr the schedule scales)
    and ``"weight_decay"``.

    Args:
        model: the model; parameters with ``requires_grad=False`` are skipped.
        lr: the peak learning rate.
        weight_decay: AdamW weight decay for the decaying parameters.
        image_parameter_names: names of image-tower parameters (get ``image_lr_multiplier``).
        text_parameter_names: names of text-tower parameters (get ``text_lr_multiplier``).
        image_lr_multiplier: lr multiplier of the image tower.
        text_lr_multiplier: lr multiplier of the text tower.
        logit_lr_multiplier: lr multiplier of parameters in neither tower (``log_scale``, ``bias``).

    Returns:
        A list of parameter-group dicts for ``torch.optim.AdamW``; empty groups are dropped.
    """
    decay = decay_parameter_names(model)
    image_names = set(image_parameter_names)
    text_names = set(text_parameter_names)
    groups: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        tower = "image" if name in image_names else "text" if name in text_names else "shared"
        groups.setdefault((tower, name in decay), []).append(parameter)
    multipliers = {
        "image": image_lr_multiplier,
        "text": text_lr_multiplier,
        "shared": logit_lr_multiplier,
    }
    result = []
    for (tower, decays), parameters in sorted(groups.items()):
        group_lr = lr * multipliers[tower]
        result.append(
            {
                "name": f"{tower}/{'decay' if decays else 'no_decay'}",
                "params": parameters,
                "lr": group_lr,
                "initial_lr": group_lr,
                "weight_decay": weight_decay if decays else 0.0,
            }
        )
    return result


def build_optimizer(
    parameter_groups: list[dict], *, betas: tuple[float, float], eps: float
) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` over ``parameter_groups`` (decoupled weight decay).

    Raises:
        ValueError: no parameter is trainable.
    """
    if not parameter_groups:
        raise ValueError("parameter_groups is empty: every parameter is frozen, nothing to train")
    return torch.optim.AdamW(parameter_groups, betas=betas, eps=eps)


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int, min_lr_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` applying :func:`warmup_cosine_multiplier` to every group's ``initial_lr``."""

    def multiplier(step: int) -> float:
        return warmup_cosine_multiplier(
            step, total_steps=total_steps, warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
