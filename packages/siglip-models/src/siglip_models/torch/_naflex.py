"""SigLIP 2 NaFlex embeddings in PyTorch: linear patch embedding plus the resized position grid.

Parameter names are transformers' ``Siglip2VisionEmbeddings``
(``patch_embedding``: ``nn.Linear(3 * patch**2, width)``; ``position_embedding``:
``nn.Embedding(grid**2, width)``), so ``Siglip2Model`` checkpoints load with no renaming.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from siglip_models._config import VisionConfig
from siglip_models._naflex import position_resize_weights


def resized_position_embedding(
    table: torch.Tensor, spatial_shapes: torch.Tensor, length: int
) -> torch.Tensor:
    """The ``[grid**2, width]`` position table resized to every image's patch grid, in float32.

    Args:
        table: ``[grid * grid, width]`` learned positions, row-major over the square grid.
        spatial_shapes: ``[batch, 2]`` integer ``(rows, cols)``.
        length: the padded sequence length.

    Returns:
        ``[batch, length, width]`` float32; padding tokens hold cell (0, 0).
    """
    grid_size = math.isqrt(table.shape[0])
    weights = position_resize_weights(
        spatial_shapes.to(device=table.device, dtype=torch.float32),
        length=length,
        grid_size=grid_size,
        xp=torch,
        dtype=torch.float32,
    )
    resized: torch.Tensor = weights @ table.float()
    return resized


class NaflexVisionEmbeddings(nn.Module):
    """``patch_embedding(patches) + resized position grid``, for flattened patches.

    Patches are ``[batch, length, 3 * patch**2]`` in ``(patch_row, patch_col, channel)`` order
    (``siglip_data.naflex`` writes them so), float in [-1, 1], padding rows anything.
    """

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.patch_embedding = nn.Linear(3 * config.patch_size**2, config.width)
        self.position_embedding = nn.Embedding(config.num_patches, config.width)

    def forward(self, patches: torch.Tensor, spatial_shapes: torch.Tensor) -> torch.Tensor:
        """``[batch, length, 3 * patch**2]`` -> ``[batch, length, width]`` in the weight dtype."""
        weight = self.patch_embedding.weight
        tokens: torch.Tensor = self.patch_embedding(patches.to(weight.dtype))
        positions = resized_position_embedding(
            self.position_embedding.weight, spatial_shapes, patches.shape[1]
        )
        return tokens + positions.to(tokens.dtype)
