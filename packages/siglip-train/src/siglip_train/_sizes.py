"""Named model sizes whose vocabulary, image size and text length follow the tokenizer and data.

``tiny`` is the demo's shape (1.8 M parameters at a 1,000-piece vocabulary: trains on a CPU in
minutes); ``small`` a CPU-afternoon model; ``base`` the ViT-B shape of SigLIP B/16.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from siglip_models import SiglipConfig


@dataclasses.dataclass(frozen=True)
class Size:
    """Tower shape of a named size (both towers share width, heads and MLP width)."""

    width: int
    vision_depth: int
    text_depth: int
    num_heads: int
    mlp_ratio: int
    patch_fraction: int  # patch side = image_size // patch_fraction, unless patch_size is given
    patch_size: int = 0


SIZES: dict[str, Size] = {
    "tiny": Size(width=128, vision_depth=4, text_depth=3, num_heads=4, mlp_ratio=4, patch_fraction=4),
    "small": Size(width=256, vision_depth=6, text_depth=6, num_heads=4, mlp_ratio=4, patch_fraction=8),
    "base": Size(width=768, vision_depth=12, text_depth=12, num_heads=12, mlp_ratio=4, patch_fraction=0, patch_size=16),
}  # fmt: skip


def size_config(
    name: str,
    *,
    vocab_size: int,
    image_size: int,
    text_length: int,
    pad_id: int,
    patch_size: int = 0,
    width: int = 0,
    depth: int = 0,
    num_heads: int = 0,
) -> SiglipConfig:
    """The ``siglip_models.SiglipConfig`` of size ``name`` for this tokenizer and data.

    Args:
        name: a key of :data:`SIZES`.
        vocab_size: rows of the token table.
        image_size: square image side.
        text_length: tokens per caption.
        pad_id: the tokenizer's pad id.
        patch_size: overrides the size's patch side (0 keeps it).
        width: overrides the width (0 keeps it).
        depth: overrides the depth of both towers (0 keeps them).
        num_heads: overrides the heads (0 keeps them).

    Raises:
        ValueError: a shape siglip-models refuses (the message names the field).
    """
    from siglip_models import SiglipConfig
    from siglip_models import TextConfig
    from siglip_models import VisionConfig

    size = SIZES[name]
    tower_width = width or size.width
    heads = num_heads or size.num_heads
    patch = patch_size or size.patch_size or max(1, image_size // size.patch_fraction)
    return SiglipConfig(
        vision=VisionConfig(
            image_size=image_size,
            patch_size=patch,
            width=tower_width,
            depth=depth or size.vision_depth,
            num_heads=heads,
            mlp_dim=tower_width * size.mlp_ratio,
        ),
        text=TextConfig(
            vocab_size=vocab_size,
            max_length=text_length,
            width=tower_width,
            depth=depth or size.text_depth,
            num_heads=heads,
            mlp_dim=tower_width * size.mlp_ratio,
            embed_dim=tower_width,
            pad_id=pad_id,
        ),
    )
