"""The layers of the two towers, plain PyTorch: one code path for training and inference.

Module and parameter names are Hugging Face ``SiglipModel``'s, so its checkpoints load with no
renaming. Faster CPU inference is a separate, optional transformation of these modules
(``_cpu_inference.py``); nothing here branches on ``torch.is_grad_enabled()``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from einops import repeat
from torch import nn
from torch.utils.checkpoint import checkpoint

from siglip_models._config import TextConfig
from siglip_models._config import VisionConfig
from siglip_models.torch._naflex import NaflexVisionEmbeddings


def l2_normalize(x: torch.Tensor, *, dim: int = -1, eps: float = 1e-8) -> torch.Tensor:
    """``x / max(||x||_2, eps)`` along ``dim``: a zero row gives a zero row, never NaN.

    The package-wide policy (the same as ``siglip_loss``): computed in float32 (float64 for
    float64 input) and returned in the dtype of ``x``; the gradient stays finite.

    Args:
        x: a floating-point tensor, e.g. embeddings ``[batch, embed]``.
        dim: the axis to normalise over.
        eps: the smallest norm divided by.

    Returns:
        A tensor of the shape and dtype of ``x``.

    Raises:
        TypeError: if ``x`` is not floating point (integer or bool).

    Examples:
        >>> import torch
        >>> l2_normalize(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
        tensor([[0.6000, 0.8000],
                [0.0000, 0.0000]])
    """
    if not x.dtype.is_floating_point:
        raise TypeError(f"l2_normalize: x must be a floating-point tensor, got {x.dtype}")
    work = x.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    norm: torch.Tensor = torch.linalg.vector_norm(work, dim=dim, keepdim=True)
    return (work / norm.clamp_min(eps)).to(x.dtype)


def attend(qkv: torch.Tensor, num_heads: int, key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head attention of projected queries, keys and values.

    Args:
        qkv: ``[batch, length, 3 * width]``, the q, k and v projections concatenated in that
            order on the last axis; ``width = heads * head_dim``.
        num_heads: ``heads``.
        key_mask: optional bool ``[batch, length]``, True for the keys every query may attend
            to (NaFlex padding is False); None attends to all (the fixed-resolution path).

    Returns:
        ``[batch, length, width]``, the heads merged back (before the output projection).
    """
    query, key, value = rearrange(
        qkv,
        "batch length (qkv heads head_dim) -> qkv batch heads length head_dim",
        qkv=3,
        heads=num_heads,
    )
    if key_mask is None:
        attended = F.scaled_dot_product_attention(query, key, value)
    else:
        mask = rearrange(key_mask, "batch length -> batch 1 1 length")
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
    return rearrange(attended, "batch heads length head_dim -> batch length (heads head_dim)")


class MLP(nn.Module):
    """``fc2(gelu_tanh(fc1(x)))``."""

    def __init__(self, width: int, mlp_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        activations = F.gelu(self.fc1(tokens), approximate="tanh")
        out: torch.Tensor = self.fc2(activations)
        return out


class SelfAttention(nn.Module):
    """Multi-head self-attention, optionally key-masked; q/k/v run as one fused matmul."""

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def fused_qkv(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``[3 * width, width]`` weight and ``[3 * width]`` bias, rows ``[q; k; v]``."""
        weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        return weight, bias

    def forward(self, tokens: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        # One [width, 3*width] matmul instead of three: same numbers, better GEMM efficiency.
        weight, bias = self.fused_qkv()
        attended = attend(F.linear(tokens, weight, bias), self.num_heads, key_mask)
        out: torch.Tensor = self.out_proj(attended)
        return out


class EncoderLayer(nn.Module):
    """Pre-LN block: ``x + attn(LN1(x))`` then ``x + mlp(LN2(x))``."""

    def __init__(self, width: int, num_heads: int, mlp_dim: int, eps: float) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(width, eps=eps)
        self.self_attn = SelfAttention(width, num_heads)
        self.layer_norm2 = nn.LayerNorm(width, eps=eps)
        self.mlp = MLP(width, mlp_dim)

    def forward(self, tokens: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        tokens = tokens + self.self_attn(self.layer_norm1(tokens), key_mask)
        out: torch.Tensor = tokens + self.mlp(self.layer_norm2(tokens))
        return out


class Encoder(nn.Module):
    """``depth`` encoder blocks; with ``gradient_checkpointing`` set, each is recomputed in the
    backward pass of a training step."""

    def __init__(self, width: int, depth: int, num_heads: int, mlp_dim: int, eps: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(width, num_heads, mlp_dim, eps) for _ in range(depth)
        )
        self.gradient_checkpointing = False

    def forward(self, tokens: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        recompute = self.gradient_checkpointing and self.training
        for layer in self.layers:
            if recompute:
                tokens = checkpoint(layer, tokens, key_mask, use_reentrant=False)
            else:
                tokens = layer(tokens, key_mask)
        return tokens


class VisionEmbeddings(nn.Module):
    """Patch conv (with bias) plus the learned position embedding; no class token."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.patch_embedding = nn.Conv2d(
            3, config.width, config.patch_size, stride=config.patch_size, padding="valid"
        )
        self.position_embedding = nn.Embedding(config.num_patches, config.width)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        patches: torch.Tensor = self.patch_embedding(pixels.to(self.patch_embedding.weight.dtype))
        # Row-major over the patch grid, as the position embedding is laid out.
        tokens = rearrange(patches, "batch width rows columns -> batch (rows columns) width")
        return tokens + self.position_embedding.weight.to(tokens.dtype)


class PackedAttention(nn.Module):
    """Parameters of ``torch.nn.MultiheadAttention``: packed ``[q; k; v]`` rows and out_proj."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)


class MultiheadAttentionPooling(nn.Module):
    """MAP head: a learned probe attends over the tokens, then a residual MLP."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        width = config.width
        self.num_heads = config.num_heads
        self.probe = nn.Parameter(torch.empty(1, 1, width))
        # Packed rows [q; k; v] as torch.nn.MultiheadAttention (and HF checkpoints) store them.
        self.attention = PackedAttention(width)
        self.layernorm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.mlp = MLP(width, config.mlp_dim)

    def forward(self, tokens: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[batch, length, width]`` tokens -> ``[batch, width]`` pooled embedding.

        ``key_mask`` (bool ``[batch, length]``, True = attend) hides NaFlex padding tokens.
        """
        batch, _, width = tokens.shape
        weight = self.attention.in_proj_weight
        bias = self.attention.in_proj_bias
        query = F.linear(self.probe.to(tokens.dtype), weight[:width], bias[:width])
        key_value = F.linear(tokens, weight[width:], bias[width:])
        query = repeat(
            query,
            "1 probe (heads head_dim) -> batch heads probe head_dim",
            batch=batch,
            heads=self.num_heads,
        )
        key, value = rearrange(
            key_value,
            "batch length (kv heads head_dim) -> kv batch heads length head_dim",
            kv=2,
            heads=self.num_heads,
        )
        if key_mask is None:
            attended = F.scaled_dot_product_attention(query, key, value)
        else:
            mask = rearrange(key_mask, "batch length -> batch 1 1 length")
            attended = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
        pooled: torch.Tensor = self.attention.out_proj(
            rearrange(attended, "batch heads probe head_dim -> batch probe (heads head_dim)")
        )
        pooled = pooled + self.mlp(self.layernorm(pooled))
        return pooled[:, 0]  # the single probe


class VisionTower(nn.Module):
    """Embeddings, encoder, final LayerNorm and MAP head: pixels to the image embedding.

    A NaFlex config (``config.naflex``) gets :class:`NaflexVisionEmbeddings` (linear patch
    embedding, resized position grid) and runs through :meth:`naflex_tokens` /
    :meth:`forward_naflex`; everything after the embeddings is shared.
    """

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings: VisionEmbeddings | NaflexVisionEmbeddings = (
            NaflexVisionEmbeddings(config) if config.naflex else VisionEmbeddings(config)
        )
        self.encoder = Encoder(
            config.width, config.depth, config.num_heads, config.mlp_dim, config.layer_norm_eps
        )
        self.post_layernorm = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.head = MultiheadAttentionPooling(config)

    def patch_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        tokens = self.embeddings(pixels).to(self.post_layernorm.weight.dtype)
        out: torch.Tensor = self.post_layernorm(self.encoder(tokens))
        return out

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        pooled: torch.Tensor = self.head(self.patch_tokens(pixels))
        return pooled

    def naflex_tokens(
        self, patches: torch.Tensor, patch_mask: torch.Tensor, spatial_shapes: torch.Tensor
    ) -> torch.Tensor:
        """Final-LayerNorm tokens ``[batch, length, width]`` of a NaFlex batch (padding keys
        masked in every block; padding rows themselves are not meaningful)."""
        tokens = self.embeddings(patches, spatial_shapes).to(self.post_layernorm.weight.dtype)
        out: torch.Tensor = self.post_layernorm(self.encoder(tokens, patch_mask))
        return out

    def forward_naflex(
        self, patches: torch.Tensor, patch_mask: torch.Tensor, spatial_shapes: torch.Tensor
    ) -> torch.Tensor:
        """The pooled image embedding ``[batch, width]`` of a NaFlex batch."""
        tokens = self.naflex_tokens(patches, patch_mask, spatial_shapes)
        pooled: torch.Tensor = self.head(tokens, patch_mask)
        return pooled


class TextEmbeddings(nn.Module):
    """Token embedding plus the learned position embedding."""

    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.position_embedding = nn.Embedding(config.max_length, config.width)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        tokens: torch.Tensor = self.token_embedding(token_ids)
        return tokens + self.position_embedding.weight


class TextTower(nn.Module):
    """Embeddings, encoder (no mask), final LayerNorm, last position, linear head."""

    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = TextEmbeddings(config)
        self.encoder = Encoder(
            config.width, config.depth, config.num_heads, config.mlp_dim, config.layer_norm_eps
        )
        self.final_layer_norm = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.head = nn.Linear(config.width, config.embed_dim)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        tokens = self.embeddings(token_ids).to(self.final_layer_norm.weight.dtype)
        tokens = self.final_layer_norm(self.encoder(tokens))
        # No mask and the last position, whatever it holds (pad or EOS): as trained.
        pooled: torch.Tensor = self.head(tokens[:, -1])
        return pooled
