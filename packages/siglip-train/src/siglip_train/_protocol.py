"""The small protocols the trainer composes: a two-tower model, a loss, a resumable batch source."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any
from typing import Protocol
from typing import runtime_checkable

import torch


@runtime_checkable
class TwoTowerModel(Protocol):
    """What the trainer needs from a model (``siglip_models.torch.SiglipModel`` is one).

    - ``encode_image(pixels)``: ``pixels [batch, 3, height, width]`` float in [-1, 1] ->
      ``[batch, embed]`` UNnormalised embeddings (the trainer L2-normalises).
    - ``encode_text(token_ids)``: ``token_ids [batch, length]`` integer -> ``[batch, embed]``.
    - ``log_scale``: 0-d learnable ``nn.Parameter``; the loss uses ``scale = exp(log_scale)``.
    - ``bias``: 0-d learnable ``nn.Parameter``, the logit bias.

    It must also be an ``nn.Module``. NaFlex batches (``patches``, ``patch_mask``,
    ``spatial_shapes``) need ``encode_image_naflex(patches, patch_mask, spatial_shapes)`` instead
    of ``encode_image``. Optional: ``set_gradient_checkpointing(enabled)``
    (``model.grad_checkpointing``) and ``save_pretrained`` / ``hf_state_dict`` /
    ``load_hf_state_dict`` (checkpoints in Hugging Face layout; otherwise plain safetensors).
    """

    log_scale: torch.nn.Parameter
    bias: torch.nn.Parameter

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor: ...

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor: ...


class ContrastiveLoss(Protocol):
    """The siglip-loss signature: ``loss(image_emb, text_emb, *, scale, bias) -> 0-d tensor``.

    ``image_emb``/``text_emb`` are this process's L2-normalised ``[batch, embed]`` float32 rows.
    In a multi-process run the loss must itself exchange negatives across ranks and return a
    per-rank value whose mean over ranks is the global loss (as
    ``siglip_loss.torch.distributed_sigmoid_loss`` does); DDP then averages gradients. With
    ``loss.positives`` other than ``"diagonal"`` the trainer also passes ``image_groups`` and
    ``text_groups`` (``[batch]`` int64 ids, the siglip-loss keywords), so the loss must accept
    them.
    """

    def __call__(
        self,
        image_emb: torch.Tensor,
        text_emb: torch.Tensor,
        *,
        scale: torch.Tensor,
        bias: torch.Tensor,
    ) -> torch.Tensor: ...


Batch = Mapping[str, Any]
"""A batch: ``{"pixels": [B, 3, H, W] torch or [B, H, W, 3] numpy, "token_ids": [B, L], ...}``."""

BatchSource = Iterable[Batch]
"""Any iterable of batches; with ``state_dict()``/``load_state_dict()`` it is resumed exactly."""
