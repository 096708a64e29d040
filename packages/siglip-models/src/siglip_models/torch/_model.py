"""SigLIP two-tower model in PyTorch, parameter for parameter the Hugging Face ``SiglipModel``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from siglip_models._config import SiglipConfig
from siglip_models._config import TextConfig
from siglip_models._config import VisionConfig
from siglip_models._config import get_config
from siglip_models._layout import read_hf_config
from siglip_models._layout import validate_parameter_shapes
from siglip_models._layout import weight_files
from siglip_models._layout import write_atomic
from siglip_models._layout import write_hf_config
from siglip_models._npz import read_big_vision_npz
from siglip_models._resample import resample_position_embedding

__all__ = ["SiglipModel", "SiglipOutput"]

# Our scalar parameters and the HF keys (shape (1,)) they are saved under.
_SCALAR_KEYS = {"log_scale": "logit_scale", "bias": "logit_bias"}


_GELU_IN_PLACE = getattr(torch._C._nn, "gelu_", None)


def _onednn_available() -> bool:
    return bool(torch.backends.mkldnn.is_available()) and hasattr(
        torch.ops.mkldnn, "_linear_pointwise"
    )


class _PackedWeight:
    """Linear weight(s) pre-packed into oneDNN's blocked layout for CPU inference.

    Packing once saves the per-call repacking of the GEMM and lets oneDNN fuse the bias and the
    tanh GELU into the matmul. Several sources (q, k, v) are packed as their row concatenation.
    The pack remembers the sources' version counters: an in-place update (an optimizer step,
    ``load_state_dict``) makes it stale and it is rebuilt on next use.
    """

    def __init__(self, *sources: torch.Tensor) -> None:
        self.sources = sources
        self.versions: tuple[int, ...] = ()
        self.packed = sources[0]

    def get(self) -> torch.Tensor:
        versions = tuple(source._version for source in self.sources)
        if versions != self.versions:
            with torch.no_grad():
                weight = torch.cat([source.detach() for source in self.sources])
                self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, None)
            self.versions = versions
        return self.packed


def _packed_linear(
    tokens: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor, *, gelu: bool = False
) -> torch.Tensor:
    if gelu:
        out: torch.Tensor = torch.ops.mkldnn._linear_pointwise(
            tokens, packed, bias, "gelu", [], "tanh"
        )
    else:
        out = torch.ops.mkldnn._linear_pointwise(tokens, packed, bias, "none", [], "")
    return out


class _MLP(nn.Module):
    """``fc2(gelu_tanh(fc1(x)))``."""

    def __init__(self, width: int, mlp_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, width)
        self.packed: tuple[_PackedWeight, _PackedWeight] | None = None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.packed is not None and not torch.is_grad_enabled():
            fc1, fc2 = self.packed
            hidden = _packed_linear(tokens, fc1.get(), self.fc1.bias, gelu=True)
            return _packed_linear(hidden, fc2.get(), self.fc2.bias)
        activations: torch.Tensor = self.fc1(tokens)
        if torch.is_grad_enabled() or _GELU_IN_PLACE is None:
            activations = F.gelu(activations, approximate="tanh")
        else:  # inference: overwrite the [tokens, mlp_dim] buffer instead of allocating another
            _GELU_IN_PLACE(activations, approximate="tanh")
        out: torch.Tensor = self.fc2(activations)
        return out


class _SelfAttention(nn.Module):
    """Multi-head self-attention without mask; q/k/v run as one fused matmul."""

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)
        self.packed: tuple[_PackedWeight, _PackedWeight] | None = None

    def fused_qkv(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``[3 * width, width]`` weight and ``[3 * width]`` bias, rows ``[q; k; v]``."""
        weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        return weight, bias

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, length, width = tokens.shape
        packed = self.packed if not torch.is_grad_enabled() else None
        if packed is not None:
            qkv_bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
            qkv = _packed_linear(tokens, packed[0].get(), qkv_bias)
        else:
            # One [width, 3*width] matmul instead of three: same numbers, better GEMM efficiency.
            weight, bias = self.fused_qkv()
            qkv = F.linear(tokens, weight, bias)
        qkv = qkv.view(batch, length, 3, self.num_heads, -1)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [batch, heads, length, hd]
        attended = F.scaled_dot_product_attention(query, key, value)
        merged = attended.transpose(1, 2).reshape(batch, length, width)
        if packed is not None:
            return _packed_linear(merged, packed[1].get(), self.out_proj.bias)
        out: torch.Tensor = self.out_proj(merged)
        return out


class _EncoderLayer(nn.Module):
    """Pre-LN block: ``x + attn(LN1(x))`` then ``x + mlp(LN2(x))``."""

    def __init__(self, width: int, num_heads: int, mlp_dim: int, eps: float) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(width, eps=eps)
        self.self_attn = _SelfAttention(width, num_heads)
        self.layer_norm2 = nn.LayerNorm(width, eps=eps)
        self.mlp = _MLP(width, mlp_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            tokens = tokens + self.self_attn(self.layer_norm1(tokens))
            out: torch.Tensor = tokens + self.mlp(self.layer_norm2(tokens))
            return out
        # Inference: residual adds in place (the encoder owns this buffer; nothing saves it).
        tokens += self.self_attn(self.layer_norm1(tokens))
        tokens += self.mlp(self.layer_norm2(tokens))
        return tokens


class _Encoder(nn.Module):
    def __init__(self, width: int, depth: int, num_heads: int, mlp_dim: int, eps: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            _EncoderLayer(width, num_heads, mlp_dim, eps) for _ in range(depth)
        )
        self.gradient_checkpointing = False

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        recompute = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for layer in self.layers:
            if recompute:
                tokens = checkpoint(layer, tokens, use_reentrant=False)
            else:
                tokens = layer(tokens)
        return tokens


class _VisionEmbeddings(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.patch_embedding = nn.Conv2d(
            3, config.width, config.patch_size, stride=config.patch_size, padding="valid"
        )
        self.position_embedding = nn.Embedding(config.num_patches, config.width)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        patches: torch.Tensor = self.patch_embedding(pixels.to(self.patch_embedding.weight.dtype))
        tokens = patches.flatten(2).transpose(1, 2)  # [batch, patches (row-major), width]
        return tokens + self.position_embedding.weight.to(tokens.dtype)


class _PackedAttention(nn.Module):
    """Parameters of ``torch.nn.MultiheadAttention``: packed ``[q; k; v]`` rows and out_proj."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)


class _MultiheadAttentionPooling(nn.Module):
    """MAP head: a learned probe attends over the tokens, then a residual MLP."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        width = config.width
        self.num_heads = config.num_heads
        self.probe = nn.Parameter(torch.empty(1, 1, width))
        # Packed rows [q; k; v] as torch.nn.MultiheadAttention (and HF checkpoints) store them.
        self.attention = _PackedAttention(width)
        self.layernorm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.mlp = _MLP(width, config.mlp_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, length, width = tokens.shape
        weight = self.attention.in_proj_weight
        bias = self.attention.in_proj_bias
        query = F.linear(self.probe.to(tokens.dtype), weight[:width], bias[:width])
        key_value = F.linear(tokens, weight[width:], bias[width:])
        query = query.view(1, 1, self.num_heads, -1).transpose(1, 2).expand(batch, -1, -1, -1)
        key, value = key_value.view(batch, length, 2, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(query, key, value)
        pooled: torch.Tensor = self.attention.out_proj(
            attended.transpose(1, 2).reshape(batch, 1, width)
        )
        pooled = pooled + self.mlp(self.layernorm(pooled))
        return pooled[:, 0]


class _VisionTower(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = _VisionEmbeddings(config)
        self.encoder = _Encoder(
            config.width, config.depth, config.num_heads, config.mlp_dim, config.layer_norm_eps
        )
        self.post_layernorm = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.head = _MultiheadAttentionPooling(config)

    def patch_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        tokens = self.embeddings(pixels).to(self.post_layernorm.weight.dtype)
        out: torch.Tensor = self.post_layernorm(self.encoder(tokens))
        return out

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        pooled: torch.Tensor = self.head(self.patch_tokens(pixels))
        return pooled


class _TextEmbeddings(nn.Module):
    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.position_embedding = nn.Embedding(config.max_length, config.width)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        tokens: torch.Tensor = self.token_embedding(token_ids)
        return tokens + self.position_embedding.weight


class _TextTower(nn.Module):
    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = _TextEmbeddings(config)
        self.encoder = _Encoder(
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


@dataclass
class SiglipOutput:
    """What :meth:`SiglipModel.forward` returns.

    Attributes:
        image_emb: ``[batch_images, embed]`` L2-normalised image embeddings (float32).
        text_emb: ``[batch_texts, embed]`` L2-normalised text embeddings (float32).
        logits_per_image: ``[batch_images, batch_texts]`` ``exp(log_scale) * image_emb @
            text_emb.T + bias``.
        logits_per_text: ``[batch_texts, batch_images]``, the transpose.
        scale: 0-d ``exp(log_scale)``.
        bias: 0-d logit bias.
    """

    image_emb: torch.Tensor
    text_emb: torch.Tensor
    logits_per_image: torch.Tensor
    logits_per_text: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor


def _normalize(embedding: torch.Tensor) -> torch.Tensor:
    embedding = embedding.float()
    norm: torch.Tensor = embedding.norm(dim=-1, keepdim=True)
    return embedding / norm


class SiglipModel(nn.Module):
    """SigLIP / SigLIP 2 (fixed resolution) image and text towers in PyTorch.

    The parameter tree is the Hugging Face ``SiglipModel`` one (``vision_model.…``,
    ``text_model.…``), so HF checkpoints load with no renaming; ``log_scale`` and ``bias`` are
    0-d parameters stored as ``logit_scale`` / ``logit_bias`` (shape ``(1,)``) on disk.

    .. math::
        \\text{logits\\_per\\_image} = e^{\\text{log\\_scale}}\\,
        \\hat{x}\\,\\hat{y}^\\top + \\text{bias}

    Args:
        config: a :class:`~siglip_models.SiglipConfig` or the name of a registered one.

    Example:
        >>> import torch
        >>> model = SiglipModel("tiny-test").eval()
        >>> pixels = torch.zeros(2, 3, 32, 32)
        >>> token_ids = torch.ones(3, 16, dtype=torch.long)
        >>> model(pixels, token_ids).logits_per_image.shape
        torch.Size([2, 3])
    """

    def __init__(self, config: SiglipConfig | str) -> None:
        super().__init__()
        if isinstance(config, str):
            config = get_config(config)
        if not isinstance(config, SiglipConfig):
            raise TypeError(
                f"SiglipModel: config must be a SiglipConfig or a registered name, "
                f"got {type(config).__name__}"
            )
        self.config = config
        self.vision_model = _VisionTower(config.vision)
        self.text_model = _TextTower(config.text)
        self.log_scale = nn.Parameter(torch.tensor(float(config.init_log_scale)))
        self.bias = nn.Parameter(torch.tensor(float(config.init_bias)))
        self.reset_parameters()

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def reset_parameters(self) -> None:
        """From-scratch init as big_vision: xavier-uniform dense kernels, zero biases, LeCun-normal
        patch conv, normal(1/sqrt(width)) embeddings, log_scale = log 10, bias = -10."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for tower in (self.vision_model, self.text_model):
            width = tower.config.width
            for embedding in tower.embeddings.modules():
                if isinstance(embedding, nn.Embedding):
                    nn.init.normal_(embedding.weight, std=width**-0.5)
        conv = self.vision_model.embeddings.patch_embedding
        fan_in = conv.weight[0].numel()
        nn.init.trunc_normal_(conv.weight, std=fan_in**-0.5 / 0.8796256610342398)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
        head = self.vision_model.head
        nn.init.xavier_uniform_(head.probe.view(1, -1))
        width = self.config.vision.width
        for rows in range(3):  # q, k, v each xavier-uniform on its own [width, width] block
            nn.init.xavier_uniform_(
                head.attention.in_proj_weight[rows * width : (rows + 1) * width]
            )
        nn.init.zeros_(head.attention.in_proj_bias)
        self.log_scale.fill_(self.config.init_log_scale)
        self.bias.fill_(self.config.init_bias)

    # ------------------------------------------------------------- encoders
    def _check_pixels(self, pixels: torch.Tensor) -> None:
        size = self.config.vision.image_size
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(
                f"pixels must be [batch, 3, height, width] (NCHW), got shape {tuple(pixels.shape)}"
            )
        if pixels.shape[2] != size or pixels.shape[3] != size:
            raise ValueError(
                f"pixels must be {size}x{size} for this model, got "
                f"{pixels.shape[2]}x{pixels.shape[3]}; resize the image, or call "
                "resize_position_embedding() to run at another resolution"
            )

    def encode_image_patches(self, pixels: torch.Tensor) -> torch.Tensor:
        """Final-LayerNorm patch tokens, the dense features VLMs and segmentation probes use.

        Args:
            pixels: ``[batch, 3, image_size, image_size]`` float in [-1, 1].

        Returns:
            ``[batch, num_patches, width]``, patches in row-major order (no class token).
        """
        self._check_pixels(pixels)
        patches: torch.Tensor = self.vision_model.patch_tokens(pixels)
        return patches

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Image embeddings (MAP-head output), not normalised.

        Args:
            pixels: ``[batch, 3, image_size, image_size]`` float in [-1, 1] (NCHW).

        Returns:
            ``[batch, embed]``.

        Raises:
            ValueError: for a shape other than ``[batch, 3, image_size, image_size]``.
        """
        self._check_pixels(pixels)
        pooled: torch.Tensor = self.vision_model(pixels)
        return pooled

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Text embeddings (head of the last position), not normalised.

        Args:
            token_ids: ``[batch, max_length]`` integer ids, padded on the right to exactly
                ``config.text.max_length`` with the family's pad id; no attention mask.

        Returns:
            ``[batch, embed]``.

        Raises:
            ValueError: if the ids are not integer or not padded to ``max_length``.
        """
        length = self.config.text.max_length
        if token_ids.ndim != 2 or token_ids.shape[1] != length:
            raise ValueError(
                f"token_ids must be [batch, {length}] (padded to the trained length "
                f"{length}: the pooled token is the last position), got shape "
                f"{tuple(token_ids.shape)}"
            )
        if token_ids.dtype.is_floating_point or token_ids.dtype == torch.bool:
            raise ValueError(f"token_ids must be an integer tensor, got {token_ids.dtype}")
        pooled: torch.Tensor = self.text_model(token_ids)
        return pooled

    def logits(self, image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        """``exp(log_scale) * image_emb @ text_emb.T + bias`` for normalised embeddings.

        Args:
            image_emb: ``[batch_images, embed]``.
            text_emb: ``[batch_texts, embed]``.

        Returns:
            ``[batch_images, batch_texts]`` float32 logits_per_image.
        """
        return self.log_scale.float().exp() * image_emb @ text_emb.T + self.bias.float()

    def forward(self, pixels: torch.Tensor, token_ids: torch.Tensor) -> SiglipOutput:
        """Embed both, normalise, and score every image against every text.

        Args:
            pixels: ``[batch_images, 3, image_size, image_size]`` in [-1, 1].
            token_ids: ``[batch_texts, max_length]``.

        Returns:
            :class:`SiglipOutput` with normalised float32 embeddings and logits.
        """
        image_emb = _normalize(self.encode_image(pixels))
        text_emb = _normalize(self.encode_text(token_ids))
        logits_per_image = self.logits(image_emb, text_emb)
        return SiglipOutput(
            image_emb=image_emb,
            text_emb=text_emb,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_image.T,
            scale=self.log_scale.float().exp(),
            bias=self.bias.float(),
        )

    # ---------------------------------------------------------------- knobs
    def set_gradient_checkpointing(self, enabled: bool = True) -> SiglipModel:
        """Recompute every encoder block in backward (saves activation memory); returns self."""
        self.vision_model.encoder.gradient_checkpointing = enabled
        self.text_model.encoder.gradient_checkpointing = enabled
        return self

    def optimize_for_cpu_inference(self, enabled: bool = True) -> SiglipModel:
        """Pre-pack the encoder matmul weights for oneDNN (float32 CPU inference); returns self.

        Under ``torch.no_grad()`` / ``inference_mode()`` the encoder blocks then run their q/k/v,
        output and MLP matmuls on pre-packed weights, with bias and tanh GELU fused into the
        GEMM (no separate GELU pass). Results agree with the plain path to float32 rounding (the
        summation order differs; the tests hold both to 1e-5 of transformers). With gradients
        enabled the plain path runs, so training is unaffected; a pack whose weights changed in
        place (optimizer step, ``load_hf_state_dict``) is rebuilt on next use. Replacing a
        parameter object (``module.weight = nn.Parameter(...)``) needs another call.

        Raises:
            RuntimeError: if this PyTorch build has no oneDNN, or parameters are not float32 on
                CPU.
        """
        layers = [module for module in self.modules() if isinstance(module, (_MLP, _SelfAttention))]
        if not enabled:
            for module in layers:
                module.packed = None
            return self
        if not _onednn_available():
            raise RuntimeError("optimize_for_cpu_inference: this PyTorch build has no oneDNN")
        for parameter in self.parameters():
            if parameter.device.type != "cpu" or parameter.dtype != torch.float32:
                raise RuntimeError(
                    "optimize_for_cpu_inference needs float32 parameters on the CPU, got "
                    f"{parameter.dtype} on {parameter.device}"
                )
        for module in layers:
            if isinstance(module, _MLP):
                module.packed = (_PackedWeight(module.fc1.weight), _PackedWeight(module.fc2.weight))
            else:
                module.packed = (
                    _PackedWeight(module.q_proj.weight, module.k_proj.weight, module.v_proj.weight),
                    _PackedWeight(module.out_proj.weight),
                )
        return self

    def to_inference_dtype(self, dtype: torch.dtype = torch.bfloat16) -> SiglipModel:
        """Cast the encoders and heads to ``dtype``; keep patch and position embeddings float32.

        big_vision keeps patch extraction and position embeddings in float32; casting them too
        moves image tokens visibly (OpenTau PR #482). Embeddings returned by ``forward`` and the
        logits are float32. Returns self.
        """
        self.optimize_for_cpu_inference(False)
        self.to(dtype)
        self.vision_model.embeddings.float()
        self.log_scale.data = self.log_scale.data.float()
        self.bias.data = self.bias.data.float()
        return self

    @torch.no_grad()
    def resize_position_embedding(
        self, image_size: int, *, method: Literal["bilinear", "bicubic"] = "bilinear"
    ) -> SiglipModel:
        """Resample the learned position grid for another input resolution, in place.

        ``bilinear`` reproduces big_vision's load-time resampling (``scipy.ndimage.zoom``,
        order 1); ``bicubic`` reproduces HF ``interpolate_pos_encoding``. Returns self with
        ``config.vision.image_size`` updated.

        Raises:
            ValueError: if the new size has fewer pixels than one patch.
        """
        new_config = self.config.replace(vision={"image_size": image_size})
        grid = new_config.vision.grid_size
        embedding = self.vision_model.embeddings.position_embedding
        old = embedding.weight.detach().float().cpu().numpy()
        new = resample_position_embedding(old, (grid, grid), method=method)
        embedding.weight = nn.Parameter(
            torch.from_numpy(new).to(embedding.weight.device, embedding.weight.dtype)
        )
        embedding.num_embeddings = grid * grid
        self.config = new_config
        self.vision_model.config = new_config.vision
        return self

    # ------------------------------------------------------------- weights
    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict under Hugging Face ``SiglipModel`` key names and shapes."""
        state = {}
        for key, tensor in self.state_dict().items():
            if key in _SCALAR_KEYS:
                state[_SCALAR_KEYS[key]] = tensor.reshape(1)
            else:
                state[key] = tensor
        return state

    def load_hf_state_dict(self, state: Mapping[str, torch.Tensor], *, source: str = "") -> None:
        """Load every parameter from a Hugging Face-layout state dict (all or nothing).

        Raises:
            CheckpointError: for a missing or unexpected key or a shape that does not fit.
        """
        validate_parameter_shapes(
            {k: tuple(v.shape) for k, v in state.items()}, self.config, source=source or "dict"
        )
        ours = {}
        for key, tensor in state.items():
            if key.endswith(".position_ids"):
                continue
            name = {v: k for k, v in _SCALAR_KEYS.items()}.get(key)
            ours[name or key] = tensor.reshape(()) if name else tensor
        own = self.state_dict()
        with torch.no_grad():
            for key, tensor in ours.items():
                own[key].copy_(tensor)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        image_size: int | None = None,
        resize_method: Literal["bilinear", "bicubic"] = "bilinear",
    ) -> SiglipModel:
        """Load a Hugging Face ``SiglipModel`` directory (``config.json`` + ``model.safetensors``).

        Also accepts a big_vision ``.npz`` file (see :meth:`from_big_vision`).

        Args:
            path: the directory (or a ``.npz`` file).
            dtype: parameter dtype after loading.
            device: where the parameters live.
            image_size: run at this resolution (position grid resampled with ``resize_method``).
            resize_method: ``"bilinear"`` (big_vision) or ``"bicubic"`` (HF).

        Returns:
            The model in eval mode.

        Raises:
            FileNotFoundError: no config.json / model.safetensors.
            CheckpointError: keys or shapes that do not fit the config.
        """
        if Path(path).suffix == ".npz":
            return cls.from_big_vision(
                path, dtype=dtype, device=device, image_size=image_size, resize_method=resize_method
            )
        from safetensors.torch import load_file

        config = read_hf_config(path)
        state: dict[str, torch.Tensor] = {}
        for file in weight_files(path):
            state.update(load_file(str(file)))
        return cls._from_state(config, state, str(path), dtype, device, image_size, resize_method)

    @classmethod
    def from_big_vision(
        cls,
        path: str | os.PathLike[str],
        config: SiglipConfig | str | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        image_size: int | None = None,
        resize_method: Literal["bilinear", "bicubic"] = "bilinear",
    ) -> SiglipModel:
        """Load a big_vision two-tower ``.npz`` checkpoint.

        Args:
            path: the ``.npz`` (with or without a ``params/`` prefix, stacked ``encoderblock/``
                or per-layer ``encoderblock_i/``, bfloat16 stored as 2-byte void).
            config: the config the weights must match; inferred from the shapes when None.

        Raises:
            CheckpointError: if the weights do not fit ``config``.
        """
        if isinstance(config, str):
            config = get_config(config)
        inferred, arrays = read_big_vision_npz(path, config)
        state = {key: torch.from_numpy(np.ascontiguousarray(a)) for key, a in arrays.items()}
        return cls._from_state(inferred, state, str(path), dtype, device, image_size, resize_method)

    @classmethod
    def _from_state(
        cls,
        config: SiglipConfig,
        state: Mapping[str, torch.Tensor],
        source: str,
        dtype: torch.dtype,
        device: torch.device | str,
        image_size: int | None,
        resize_method: Literal["bilinear", "bicubic"],
    ) -> SiglipModel:
        validate_parameter_shapes(
            {k: tuple(v.shape) for k, v in state.items()}, config, source=source
        )
        with torch.device("meta"):
            model = cls(config)
        model.to_empty(device=device)
        model.to(dtype)
        model.load_hf_state_dict(state, source=source)
        if image_size is not None and image_size != config.vision.image_size:
            model.resize_position_embedding(image_size, method=resize_method)
        return model.eval()

    def save_pretrained(self, path: str | os.PathLike[str]) -> None:
        """Write ``config.json`` + ``model.safetensors`` that transformers' ``SiglipModel`` loads.

        Each file is written to a temporary name and moved into place.
        """
        from safetensors.torch import save_file

        directory = Path(path)
        state = {k: v.detach().contiguous().cpu() for k, v in self.hf_state_dict().items()}
        write_atomic(
            directory / "model.safetensors",
            lambda temporary: save_file(state, temporary, metadata={"format": "pt"}),
        )
        write_hf_config(directory, self.config)
