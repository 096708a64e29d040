"""The losses ``config.loss`` names, mapped to siglip-loss functions with one signature."""

from __future__ import annotations

import functools
from typing import Any

import torch

from siglip_train._config import LossConfig
from siglip_train._protocol import ContrastiveLoss

# The model parameters each loss ignores. The trainer freezes them: a trainable parameter that
# gets no gradient breaks DDP (its reducer waits for that gradient forever; open_clip #1076), and
# freezing also keeps AdamW's weight decay and the optimizer state off it.
_IGNORED_PARAMETERS: dict[str, frozenset[str]] = {
    "sigmoid": frozenset(),
    "softmax": frozenset({"bias"}),  # CLIP's softmax has no logit bias
}


def ignored_parameters(config: LossConfig) -> frozenset[str]:
    """Names of the model parameters (``bias``) that the loss ``config.name`` does not use."""
    return _IGNORED_PARAMETERS[config.name]


def default_loss(config: LossConfig, world_size: int) -> ContrastiveLoss:
    """The loss ``config`` names, in its multi-process form when ``world_size > 1``.

    Every form takes ``(image_emb, text_emb, *, scale, bias)``; the softmax ignores ``bias``.
    The sigmoid forms also take ``image_groups``/``text_groups`` (the trainer passes them when
    ``config.positives`` is not ``"diagonal"``) and apply ``config.positive_weighting``.
    """
    from siglip_loss import torch as loss_torch

    if config.name == "softmax":
        if world_size > 1:
            return loss_torch.distributed_softmax_loss  # type: ignore[no-any-return]

        def softmax(
            image_emb: torch.Tensor, text_emb: torch.Tensor, *, scale: torch.Tensor, bias: Any
        ) -> torch.Tensor:
            del bias
            loss: torch.Tensor = loss_torch.softmax_loss(image_emb, text_emb, scale=scale)
            return loss

        return softmax
    if world_size > 1:
        strategy = config.distributed_strategy
        weighting = config.positive_weighting

        def distributed_sigmoid(
            image_emb: torch.Tensor,
            text_emb: torch.Tensor,
            *,
            scale: torch.Tensor,
            bias: torch.Tensor,
            image_groups: torch.Tensor | None = None,
            text_groups: torch.Tensor | None = None,
        ) -> torch.Tensor:
            loss: torch.Tensor = loss_torch.distributed_sigmoid_loss(
                image_emb,
                text_emb,
                scale=scale,
                bias=bias,
                image_groups=image_groups,
                text_groups=text_groups,
                positive_weighting=weighting,
                strategy=strategy,
            )
            return loss

        return distributed_sigmoid
    if config.positive_weighting != "uniform":
        return functools.partial(  # type: ignore[return-value]
            loss_torch.sigmoid_loss, positive_weighting=config.positive_weighting
        )
    sigmoid: ContrastiveLoss = loss_torch.sigmoid_loss
    return sigmoid
