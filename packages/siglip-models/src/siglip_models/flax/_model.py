"""SigLIP two-tower model in Flax NNX, module for module the PyTorch one (NHWC pixels).

A NaFlex config swaps the patch conv for ``_NaflexVisionEmbeddings`` (linear patch embedding,
position grid resized per image by ``siglip_models._naflex``) and masks padding keys.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from einops import rearrange
from einops import repeat
from flax import nnx
from flax import struct

from siglip_models._config import SiglipConfig
from siglip_models._config import TextConfig
from siglip_models._config import VisionConfig
from siglip_models._config import get_config
from siglip_models._layout import check_pixels
from siglip_models._layout import check_token_ids
from siglip_models._layout import hf_to_nnx_layout
from siglip_models._layout import nnx_path_to_hf_key
from siglip_models._layout import nnx_to_hf_layout
from siglip_models._layout import read_hf_directory
from siglip_models._layout import validate_parameter_shapes
from siglip_models._layout import write_hf_directory
from siglip_models._naflex import check_naflex_inputs
from siglip_models._naflex import fixed_only_message
from siglip_models._naflex import naflex_only_message
from siglip_models._naflex import position_resize_weights
from siglip_models._npz import read_big_vision_npz
from siglip_models._resample import resample_position_embedding

_xavier = nnx.initializers.xavier_uniform()
_zeros = nnx.initializers.zeros_init()


def _dense(in_features: int, out_features: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(in_features, out_features, kernel_init=_xavier, bias_init=_zeros, rngs=rngs)


def _layer_norm(width: int, eps: float, rngs: nnx.Rngs) -> nnx.LayerNorm:
    # Two-pass variance, as torch computes it (the one-pass form loses digits at large means).
    return nnx.LayerNorm(width, epsilon=eps, use_fast_variance=False, rngs=rngs)


class _MLP(nnx.Module):
    def __init__(self, width: int, mlp_dim: int, rngs: nnx.Rngs) -> None:
        self.fc1 = _dense(width, mlp_dim, rngs)
        self.fc2 = _dense(mlp_dim, width, rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.fc1(tokens), approximate=True))


def _key_mask(key_mask: jax.Array | None) -> jax.Array | None:
    """``[batch, length]`` keys to attend to -> the ``[batch, heads, queries, keys]`` broadcast."""
    if key_mask is None:
        return None
    return rearrange(key_mask, "batch length -> batch 1 1 length")


class _SelfAttention(nnx.Module):
    """Multi-head self-attention, optionally key-masked; q/k/v run as one fused matmul."""

    def __init__(self, width: int, num_heads: int, rngs: nnx.Rngs) -> None:
        self.num_heads = num_heads
        self.q_proj = _dense(width, width, rngs)
        self.k_proj = _dense(width, width, rngs)
        self.v_proj = _dense(width, width, rngs)
        self.out_proj = _dense(width, width, rngs)

    def __call__(self, tokens: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        """``[batch, length, width]`` -> ``[batch, length, width]``; ``key_mask`` ``[batch,
        length]`` bool hides NaFlex padding keys (None: attend to all)."""
        projections = (self.q_proj, self.k_proj, self.v_proj)
        kernel = jnp.concatenate([p.kernel[...] for p in projections], axis=1)
        bias = jnp.concatenate([p.bias[...] for p in projections])  # type: ignore[index]
        qkv = tokens @ kernel.astype(tokens.dtype) + bias.astype(tokens.dtype)
        query, key, value = rearrange(
            qkv,
            "batch length (qkv heads head_dim) -> qkv batch length heads head_dim",
            qkv=3,
            heads=self.num_heads,
        )
        attended = jax.nn.dot_product_attention(query, key, value, mask=_key_mask(key_mask))
        return self.out_proj(
            rearrange(attended, "batch length heads head_dim -> batch length (heads head_dim)")
        )


class _EncoderLayer(nnx.Module):
    def __init__(self, width: int, num_heads: int, mlp_dim: int, eps: float, rngs: nnx.Rngs):
        self.layer_norm1 = _layer_norm(width, eps, rngs)
        self.self_attn = _SelfAttention(width, num_heads, rngs)
        self.layer_norm2 = _layer_norm(width, eps, rngs)
        self.mlp = _MLP(width, mlp_dim, rngs)

    def __call__(self, tokens: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        tokens = tokens + self.self_attn(self.layer_norm1(tokens), key_mask)
        return tokens + self.mlp(self.layer_norm2(tokens))


def _run_layer(layer: _EncoderLayer, tokens: jax.Array, key_mask: jax.Array | None) -> jax.Array:
    return layer(tokens, key_mask)


_run_layer_recomputed = nnx.remat(_run_layer)


class _Encoder(nnx.Module):
    def __init__(
        self, width: int, depth: int, num_heads: int, mlp_dim: int, eps: float, rngs: nnx.Rngs
    ) -> None:
        self.layers = nnx.List(
            [_EncoderLayer(width, num_heads, mlp_dim, eps, rngs) for _ in range(depth)]
        )
        self.gradient_checkpointing = False

    def __call__(self, tokens: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        run = _run_layer_recomputed if self.gradient_checkpointing else _run_layer
        for layer in self.layers:
            tokens = run(layer, tokens, key_mask)
        return tokens


class _VisionEmbeddings(nnx.Module):
    def __init__(self, config: VisionConfig, rngs: nnx.Rngs) -> None:
        patch = config.patch_size
        self.patch_embedding = nnx.Conv(
            3,
            config.width,
            kernel_size=(patch, patch),
            strides=(patch, patch),
            padding="VALID",
            kernel_init=nnx.initializers.lecun_normal(),
            bias_init=_zeros,
            rngs=rngs,
        )
        self.position_embedding = nnx.Embed(
            config.num_patches,
            config.width,
            embedding_init=nnx.initializers.normal(config.width**-0.5),
            rngs=rngs,
        )

    def __call__(self, pixels: jax.Array) -> jax.Array:
        kernel_dtype = self.patch_embedding.kernel[...].dtype
        patches = self.patch_embedding(pixels.astype(kernel_dtype))
        # Row-major over the patch grid, as the position embedding is laid out.
        tokens = rearrange(patches, "batch rows columns width -> batch (rows columns) width")
        return tokens + self.position_embedding.embedding[...].astype(tokens.dtype)


class _PackedAttention(nnx.Module):
    """``torch.nn.MultiheadAttention`` parameters: packed ``[q; k; v]`` rows (torch layout)."""

    def __init__(self, width: int, rngs: nnx.Rngs) -> None:
        key = rngs.params()
        blocks = [_xavier(k, (width, width)) for k in jax.random.split(key, 3)]
        self.in_proj_weight = nnx.Param(jnp.concatenate(blocks, axis=0))
        self.in_proj_bias = nnx.Param(jnp.zeros((3 * width,)))
        self.out_proj = _dense(width, width, rngs)


class _MultiheadAttentionPooling(nnx.Module):
    def __init__(self, config: VisionConfig, rngs: nnx.Rngs) -> None:
        width = config.width
        self.num_heads = config.num_heads
        self.probe = nnx.Param(_xavier(rngs.params(), (1, width)).reshape(1, 1, width))
        self.attention = _PackedAttention(width, rngs)
        self.layernorm = _layer_norm(width, config.layer_norm_eps, rngs)
        self.mlp = _MLP(width, config.mlp_dim, rngs)

    def __call__(self, tokens: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        """``[batch, length, width]`` tokens -> ``[batch, width]`` pooled embedding (``key_mask``
        ``[batch, length]`` hides NaFlex padding)."""
        batch, _, width = tokens.shape
        weight = self.attention.in_proj_weight[...].astype(tokens.dtype)
        bias = self.attention.in_proj_bias[...].astype(tokens.dtype)
        probe = self.probe[...].astype(tokens.dtype)
        query = probe @ weight[:width].T + bias[:width]  # [1, 1, width]
        key_value = tokens @ weight[width:].T + bias[width:]  # [batch, length, 2 * width]
        query = repeat(
            query,
            "1 probe (heads head_dim) -> batch probe heads head_dim",
            batch=batch,
            heads=self.num_heads,
        )
        key, value = rearrange(
            key_value,
            "batch length (kv heads head_dim) -> kv batch length heads head_dim",
            kv=2,
            heads=self.num_heads,
        )
        attended = jax.nn.dot_product_attention(query, key, value, mask=_key_mask(key_mask))
        pooled = self.attention.out_proj(
            rearrange(attended, "batch probe heads head_dim -> batch probe (heads head_dim)")
        )
        pooled = pooled + self.mlp(self.layernorm(pooled))
        return pooled[:, 0]  # the single probe


class _NaflexVisionEmbeddings(nnx.Module):
    """Linear patch embedding on flattened patches + the position grid resized per image."""

    def __init__(self, config: VisionConfig, rngs: nnx.Rngs) -> None:
        self.grid_size = config.grid_size
        self.patch_embedding = nnx.Linear(
            3 * config.patch_size**2,
            config.width,
            kernel_init=nnx.initializers.lecun_normal(),
            bias_init=_zeros,
            rngs=rngs,
        )
        self.position_embedding = nnx.Embed(
            config.num_patches,
            config.width,
            embedding_init=nnx.initializers.normal(config.width**-0.5),
            rngs=rngs,
        )

    def __call__(self, patches: jax.Array, spatial_shapes: jax.Array) -> jax.Array:
        kernel_dtype = self.patch_embedding.kernel[...].dtype
        tokens = self.patch_embedding(patches.astype(kernel_dtype))
        weights = position_resize_weights(
            spatial_shapes.astype(jnp.float32),
            length=patches.shape[1],
            grid_size=self.grid_size,
            xp=jnp,
            dtype=jnp.float32,
        )
        table = self.position_embedding.embedding[...].astype(jnp.float32)
        # Full float32 precision: the default TPU/GPU matmul precision would round the weights.
        positions = jnp.matmul(weights, table, precision=jax.lax.Precision.HIGHEST)
        return tokens + positions.astype(tokens.dtype)


class _VisionTower(nnx.Module):
    def __init__(self, config: VisionConfig, rngs: nnx.Rngs) -> None:
        self.embeddings: _VisionEmbeddings | _NaflexVisionEmbeddings = (
            _NaflexVisionEmbeddings(config, rngs)
            if config.naflex
            else _VisionEmbeddings(config, rngs)
        )
        self.encoder = _Encoder(
            config.width,
            config.depth,
            config.num_heads,
            config.mlp_dim,
            config.layer_norm_eps,
            rngs,
        )
        self.post_layernorm = _layer_norm(config.width, config.layer_norm_eps, rngs)
        self.head = _MultiheadAttentionPooling(config, rngs)

    def patch_tokens(self, pixels: jax.Array) -> jax.Array:
        assert isinstance(self.embeddings, _VisionEmbeddings)
        compute_dtype = self.post_layernorm.scale[...].dtype  # type: ignore[index]
        tokens = self.embeddings(pixels).astype(compute_dtype)
        normed: jax.Array = self.post_layernorm(self.encoder(tokens))
        return normed

    def __call__(self, pixels: jax.Array) -> jax.Array:
        return self.head(self.patch_tokens(pixels))

    def naflex_tokens(
        self, patches: jax.Array, patch_mask: jax.Array, spatial_shapes: jax.Array
    ) -> jax.Array:
        assert isinstance(self.embeddings, _NaflexVisionEmbeddings)
        compute_dtype = self.post_layernorm.scale[...].dtype  # type: ignore[index]
        tokens = self.embeddings(patches, spatial_shapes).astype(compute_dtype)
        normed: jax.Array = self.post_layernorm(self.encoder(tokens, patch_mask))
        return normed

    def forward_naflex(
        self, patches: jax.Array, patch_mask: jax.Array, spatial_shapes: jax.Array
    ) -> jax.Array:
        tokens = self.naflex_tokens(patches, patch_mask, spatial_shapes)
        return self.head(tokens, patch_mask)


class _TextEmbeddings(nnx.Module):
    def __init__(self, config: TextConfig, rngs: nnx.Rngs) -> None:
        init = nnx.initializers.normal(config.width**-0.5)
        self.token_embedding = nnx.Embed(
            config.vocab_size, config.width, embedding_init=init, rngs=rngs
        )
        self.position_embedding = nnx.Embed(
            config.max_length, config.width, embedding_init=init, rngs=rngs
        )

    def __call__(self, token_ids: jax.Array) -> jax.Array:
        tokens = jnp.take(self.token_embedding.embedding[...], token_ids, axis=0)
        return tokens + self.position_embedding.embedding[...]


class _TextTower(nnx.Module):
    def __init__(self, config: TextConfig, rngs: nnx.Rngs) -> None:
        self.embeddings = _TextEmbeddings(config, rngs)
        self.encoder = _Encoder(
            config.width,
            config.depth,
            config.num_heads,
            config.mlp_dim,
            config.layer_norm_eps,
            rngs,
        )
        self.final_layer_norm = _layer_norm(config.width, config.layer_norm_eps, rngs)
        self.head = _dense(config.width, config.embed_dim, rngs)

    def __call__(self, token_ids: jax.Array) -> jax.Array:
        compute_dtype = self.final_layer_norm.scale[...].dtype  # type: ignore[index]
        tokens = self.embeddings(token_ids).astype(compute_dtype)
        tokens = self.final_layer_norm(self.encoder(tokens))
        # No mask and the last position, whatever it holds (pad or EOS): as trained.
        pooled: jax.Array = self.head(tokens[:, -1])
        return pooled


@struct.dataclass
class SiglipOutput:
    """What :meth:`SiglipModel.__call__` returns (a pytree, so it passes through ``jit``).

    Attributes:
        image_emb: ``[batch_images, embed]`` L2-normalised image embeddings (float32).
        text_emb: ``[batch_texts, embed]`` L2-normalised text embeddings (float32).
        logits_per_image: ``[batch_images, batch_texts]``.
        logits_per_text: ``[batch_texts, batch_images]``.
        scale: 0-d ``exp(log_scale)``.
        bias: 0-d logit bias.
    """

    image_emb: jax.Array
    text_emb: jax.Array
    logits_per_image: jax.Array
    logits_per_text: jax.Array
    scale: jax.Array
    bias: jax.Array


def l2_normalize(x: jax.Array, *, axis: int = -1, eps: float = 1e-8) -> jax.Array:
    """``x / max(||x||_2, eps)`` along ``axis``: a zero row gives a zero row, never NaN.

    The package-wide policy (the same as ``siglip_loss``): computed in float32 (float64 for
    float64 input) and returned in the dtype of ``x``; the gradient stays finite (the norm is
    the square root of the clamped squared norm, so its derivative is never 0/0).

    Args:
        x: a floating-point array, e.g. embeddings ``[batch, embed]``.
        axis: the axis to normalise over.
        eps: the smallest norm divided by.

    Returns:
        An array of the shape and dtype of ``x``.

    Raises:
        TypeError: if ``x`` is not floating point (integer or bool).

    Examples:
        >>> import jax.numpy as jnp
        >>> l2_normalize(jnp.array([[3.0, 4.0], [0.0, 0.0]]))
        Array([[0.6, 0.8],
               [0. , 0. ]], dtype=float32)
    """
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"l2_normalize: x must be a floating-point array, got {x.dtype}")
    work = x.astype(jnp.float64 if x.dtype == jnp.float64 else jnp.float32)
    squared_norm = jnp.sum(work * work, axis=axis, keepdims=True)
    return (work / jnp.sqrt(jnp.maximum(squared_norm, eps * eps))).astype(x.dtype)


class SiglipModel(nnx.Module):
    """SigLIP / SigLIP 2 image and text towers in Flax NNX, fixed resolution or NaFlex.

    Same module tree and names as :class:`siglip_models.torch.SiglipModel` (and so as the
    Hugging Face checkpoint keys); Flax layouts for the leaves (``kernel`` ``(in, out)``, conv
    kernel ``HWIO``, LayerNorm ``scale``). Pixels are NHWC.

    Args:
        config: a :class:`~siglip_models.SiglipConfig` or a registered name.
        rngs: random streams for the from-scratch init (default ``nnx.Rngs(0)``).

    Examples:
        >>> import jax.numpy as jnp
        >>> from siglip_models.flax import SiglipModel
        >>> model = SiglipModel("tiny-test")
        >>> out = model(jnp.zeros((2, 32, 32, 3)), jnp.ones((3, 16), jnp.int32))
        >>> out.logits_per_image.shape
        (2, 3)
    """

    def __init__(self, config: SiglipConfig | str, *, rngs: nnx.Rngs | None = None) -> None:
        if isinstance(config, str):
            config = get_config(config)
        if not isinstance(config, SiglipConfig):
            raise TypeError(
                f"SiglipModel: config must be a SiglipConfig or a registered name, "
                f"got {type(config).__name__}"
            )
        rngs = rngs if rngs is not None else nnx.Rngs(0)
        self.config = config
        self.vision_model = _VisionTower(config.vision, rngs)
        self.text_model = _TextTower(config.text, rngs)
        self.log_scale = nnx.Param(jnp.asarray(config.log_scale_init, jnp.float32))
        self.bias = nnx.Param(jnp.asarray(config.bias_init, jnp.float32))

    # ------------------------------------------------------------- encoders
    def _check_pixels(self, pixels: jax.Array, method: str) -> None:
        if self.config.vision.naflex:
            raise ValueError(naflex_only_message(method))
        check_pixels(tuple(pixels.shape), self.config.vision.image_size, channels_last=True)

    def _naflex_inputs(
        self, patches: Any, patch_mask: Any, spatial_shapes: Any, method: str
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        if not self.config.vision.naflex:
            raise ValueError(fixed_only_message(method))

        def concrete(value: Any) -> np.ndarray | None:
            # Under jit the values are traced: only the static shapes can be checked.
            return None if isinstance(value, jax.core.Tracer) else np.asarray(value)

        mask_values, shape_values = concrete(patch_mask), concrete(spatial_shapes)
        check_naflex_inputs(
            tuple(patches.shape),
            mask_values,
            shape_values,
            patch_size=self.config.vision.patch_size,
        )
        if mask_values is None and tuple(patch_mask.shape) != tuple(patches.shape[:2]):
            raise ValueError(
                f"patch_mask must be [batch, length] = {tuple(patches.shape[:2])}, got shape "
                f"{tuple(patch_mask.shape)}"
            )
        if shape_values is None and tuple(spatial_shapes.shape) != (patches.shape[0], 2):
            raise ValueError(
                f"spatial_shapes must be [batch, 2], got shape {tuple(spatial_shapes.shape)}"
            )
        return (
            jnp.asarray(patches),
            jnp.asarray(patch_mask).astype(jnp.bool_),
            jnp.asarray(spatial_shapes).astype(jnp.int32),
        )

    def encode_image_naflex(
        self, patches: jax.Array, patch_mask: jax.Array, spatial_shapes: jax.Array
    ) -> jax.Array:
        """Image embeddings (MAP-head output) of a NaFlex batch, not normalised.

        The same computation as :meth:`siglip_models.torch.SiglipModel.encode_image_naflex`;
        under ``jax.jit`` the sequence length is static and the position-grid resize has no
        per-image loop and no cap on a side (only the shapes are checked while tracing).

        Args:
            patches: ``[batch, length, 3 * patch_size**2]`` float in [-1, 1], each patch in
                ``(patch_row, patch_col, channel)`` order, row-major over the patch grid.
            patch_mask: ``[batch, length]`` bool (or 0/1), True for the ``rows * cols`` valid
                patches, which come first.
            spatial_shapes: ``[batch, 2]`` integer ``(rows, cols)``.

        Returns:
            ``[batch, embed]``.

        Raises:
            ValueError: on a fixed-resolution model; a last axis other than
                ``3 * patch_size**2``; a side of 0; more valid patches than ``length``; a mask
                that is not a prefix of ones or does not count ``rows * cols``.

        Examples:
            >>> import jax.numpy as jnp
            >>> from siglip_models.flax import SiglipModel
            >>> model = SiglipModel("tiny-test-naflex")  # 4-pixel patches: 48 numbers each
            >>> patches = jnp.zeros((2, 6, 48))
            >>> mask = jnp.array([[True] * 6, [True] * 3 + [False] * 3])
            >>> shapes = jnp.array([[2, 3], [1, 3]])
            >>> model.encode_image_naflex(patches, mask, shapes).shape
            (2, 32)
        """
        patches, mask, shapes = self._naflex_inputs(
            patches, patch_mask, spatial_shapes, "encode_image_naflex"
        )
        return self.vision_model.forward_naflex(patches, mask, shapes)

    def encode_image_patches_naflex(
        self, patches: jax.Array, patch_mask: jax.Array, spatial_shapes: jax.Array
    ) -> jax.Array:
        """Final-LayerNorm patch tokens of a NaFlex batch: dense features for VLMs.

        Args:
            patches: ``[batch, length, 3 * patch_size**2]`` (see :meth:`encode_image_naflex`).
            patch_mask: ``[batch, length]``, True for the valid patches (a prefix).
            spatial_shapes: ``[batch, 2]`` ``(rows, cols)``.

        Returns:
            ``[batch, length, width]``; token ``n < rows * cols`` is patch
            ``(n // cols, n % cols)``; padding rows are zero.

        Raises:
            ValueError: as :meth:`encode_image_naflex`.
        """
        patches, mask, shapes = self._naflex_inputs(
            patches, patch_mask, spatial_shapes, "encode_image_patches_naflex"
        )
        tokens = self.vision_model.naflex_tokens(patches, mask, shapes)
        return tokens * mask[..., None].astype(tokens.dtype)

    def _check_token_ids(self, token_ids: jax.Array) -> None:
        check_token_ids(
            tuple(token_ids.shape),
            token_ids.dtype,
            is_integer=bool(jnp.issubdtype(token_ids.dtype, jnp.integer)),
            max_length=self.config.text.max_length,
        )

    def encode_image_patches(self, pixels: jax.Array) -> jax.Array:
        """Final-LayerNorm patch tokens ``[batch, num_patches, width]`` (row-major, no class token).

        Args:
            pixels: ``[batch, image_size, image_size, 3]`` float in [-1, 1].

        Returns:
            ``[batch, num_patches, width]``, patches in row-major order.

        Raises:
            ValueError: for a shape other than ``[batch, image_size, image_size, 3]``.
        """
        self._check_pixels(pixels, "encode_image_patches")
        return self.vision_model.patch_tokens(pixels)

    def encode_image(self, pixels: jax.Array) -> jax.Array:
        """Image embeddings (MAP-head output), not normalised.

        Args:
            pixels: ``[batch, image_size, image_size, 3]`` float in [-1, 1] (NHWC).

        Returns:
            ``[batch, embed]``.

        Raises:
            ValueError: for a shape other than ``[batch, image_size, image_size, 3]``.
        """
        self._check_pixels(pixels, "encode_image")
        return self.vision_model(pixels)

    def encode_text(self, token_ids: jax.Array) -> jax.Array:
        """Text embeddings (head of the last position), not normalised.

        Args:
            token_ids: ``[batch, max_length]`` integer ids padded on the right to exactly
                ``config.text.max_length``; no attention mask.

        Returns:
            ``[batch, embed]``.

        Raises:
            ValueError: if the ids are not integer or not padded to ``max_length``.
        """
        self._check_token_ids(token_ids)
        return self.text_model(token_ids)

    def logits(self, image_emb: jax.Array, text_emb: jax.Array) -> jax.Array:
        """``exp(log_scale) * image_emb @ text_emb.T + bias`` for normalised embeddings.

        Args:
            image_emb: ``[batch_images, embed]``.
            text_emb: ``[batch_texts, embed]``.

        Returns:
            ``[batch_images, batch_texts]`` float32 logits_per_image.
        """
        scale = jnp.exp(self.log_scale[...].astype(jnp.float32))
        return scale * image_emb @ text_emb.T + self.bias[...].astype(jnp.float32)

    def __call__(self, pixels: jax.Array, token_ids: jax.Array) -> SiglipOutput:
        """Embed both, normalise, and score every image against every text.

        Args:
            pixels: ``[batch_images, image_size, image_size, 3]`` in [-1, 1].
            token_ids: ``[batch_texts, max_length]``.

        Returns:
            :class:`SiglipOutput` with normalised float32 embeddings and logits.
        """
        image_emb = l2_normalize(self.encode_image(pixels).astype(jnp.float32))
        text_emb = l2_normalize(self.encode_text(token_ids).astype(jnp.float32))
        logits_per_image = self.logits(image_emb, text_emb)
        return SiglipOutput(
            image_emb=image_emb,
            text_emb=text_emb,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_image.T,
            scale=jnp.exp(self.log_scale[...].astype(jnp.float32)),
            bias=self.bias[...].astype(jnp.float32),
        )

    # ---------------------------------------------------------------- knobs
    def set_gradient_checkpointing(self, enabled: bool = True) -> SiglipModel:
        """Recompute every encoder block in the backward pass (``nnx.remat``).

        Args:
            enabled: turn recomputation on (True) or off (False).

        Returns:
            ``self``.
        """
        self.vision_model.encoder.gradient_checkpointing = enabled
        self.text_model.encoder.gradient_checkpointing = enabled
        return self

    def to_inference_dtype(self, dtype: Any = jnp.bfloat16) -> SiglipModel:
        """Cast every parameter but the patch/position embeddings and scale/bias to ``dtype``.

        As big_vision, patch extraction and position embeddings stay float32; the outputs of
        ``__call__`` are float32.

        Args:
            dtype: the dtype of the encoders and heads, e.g. ``jnp.bfloat16``.

        Returns:
            ``self``.
        """
        keep = {("log_scale",), ("bias",)}
        for path, variable in nnx.to_flat_state(nnx.state(self, nnx.Param)):
            if path in keep or path[:2] == ("vision_model", "embeddings"):
                continue
            variable.set_value(variable.get_value().astype(dtype))
        return self

    def resize_position_embedding(
        self, image_size: int, *, method: Literal["bilinear", "bicubic"] = "bilinear"
    ) -> SiglipModel:
        """Resample the learned position grid for another resolution, in place.

        ``bilinear`` = big_vision's load-time ``scipy.ndimage.zoom(order=1)``; ``bicubic`` = HF
        ``interpolate_pos_encoding``.

        Args:
            image_size: the new input side in pixels.
            method: ``"bilinear"`` (big_vision) or ``"bicubic"`` (HF).

        Returns:
            ``self``, with ``config.vision.image_size`` updated.

        Raises:
            ValueError: if the new size has fewer pixels than one patch, or on a NaFlex model.
        """
        if self.config.vision.naflex:
            raise ValueError(
                "resize_position_embedding: a NaFlex model resizes its position grid to every "
                "image's patch grid at run time; choose max_num_patches when preprocessing"
            )
        new_config = self.config.replace(vision={"image_size": image_size})
        grid = new_config.vision.grid_size
        embedding = self.vision_model.embeddings.position_embedding
        old = np.asarray(embedding.embedding[...], dtype=np.float32)
        new = resample_position_embedding(old, (grid, grid), method=method)
        embedding.embedding = nnx.Param(jnp.asarray(new, embedding.embedding[...].dtype))
        embedding.num_embeddings = grid * grid
        self.config = new_config
        return self

    # ------------------------------------------------------------- weights
    def hf_state_dict(self) -> dict[str, jax.Array]:
        """Every parameter under its Hugging Face key, in torch layout.

        Returns:
            HF key -> array (dense kernels transposed to ``(out, in)``, conv kernel OIHW,
            ``logit_scale`` / ``logit_bias`` of shape ``(1,)``).
        """
        state = nnx.to_flat_state(nnx.state(self, nnx.Param))
        return {
            nnx_path_to_hf_key(path): nnx_to_hf_layout(path, variable.get_value())
            for path, variable in state
        }

    def load_hf_state_dict(self, arrays: Mapping[str, Any], *, source: str = "dict") -> None:
        """Replace every parameter from Hugging Face-layout arrays (all or nothing).

        Args:
            arrays: HF key -> array (numpy, JAX or anything ``jnp.asarray`` takes).
            source: where the weights came from, quoted in errors.

        Raises:
            CheckpointError: for a missing or unexpected key or a shape that does not fit.
        """
        validate_parameter_shapes(
            {k: tuple(v.shape) for k, v in arrays.items()}, self.config, source=source
        )
        flat = nnx.to_flat_state(nnx.state(self, nnx.Param))
        values = [
            hf_to_nnx_layout(path, jnp.asarray(arrays[nnx_path_to_hf_key(path)])).astype(
                variable.get_value().dtype
            )
            for path, variable in flat
        ]
        for (_, variable), value in zip(flat, values):
            variable.set_value(value)
        nnx.update(self, nnx.from_flat_state(flat))

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        dtype: Any = jnp.float32,
        image_size: int | None = None,
        resize_method: Literal["bilinear", "bicubic"] = "bilinear",
    ) -> SiglipModel:
        """Load a Hugging Face ``SiglipModel`` directory (the same files the torch model reads).

        Also accepts a siglip-train checkpoint ``step_<N>/`` or run directory (its newest step;
        see :func:`siglip_models.resolve_model_directory`) and a big_vision ``.npz`` file (see
        :meth:`from_big_vision`).

        Args:
            path: the directory (or a ``.npz`` file).
            dtype: parameter dtype after loading.
            image_size: run at this resolution (position grid resampled with ``resize_method``).
            resize_method: ``"bilinear"`` (big_vision) or ``"bicubic"`` (HF).

        Returns:
            The model.

        Raises:
            FileNotFoundError: no config.json / model.safetensors.
            CheckpointError: keys or shapes that do not fit the config.

        Examples:
            >>> import tempfile
            >>> from siglip_models.flax import SiglipModel
            >>> directory = tempfile.mkdtemp()
            >>> SiglipModel("tiny-test").save_pretrained(directory)
            >>> SiglipModel.from_pretrained(directory).config.text.max_length
            16
        """
        if Path(path).suffix == ".npz":
            return cls.from_big_vision(
                path, dtype=dtype, image_size=image_size, resize_method=resize_method
            )
        from safetensors.flax import load_file

        config, arrays = read_hf_directory(path, load_file)
        return cls._from_arrays(config, arrays, str(path), dtype, image_size, resize_method)

    @classmethod
    def from_big_vision(
        cls,
        path: str | os.PathLike[str],
        config: SiglipConfig | str | None = None,
        *,
        dtype: Any = jnp.float32,
        image_size: int | None = None,
        resize_method: Literal["bilinear", "bicubic"] = "bilinear",
    ) -> SiglipModel:
        """Load a big_vision two-tower ``.npz`` checkpoint.

        Args:
            path: the ``.npz`` (with or without a ``params/`` prefix, stacked ``encoderblock/``
                or per-layer ``encoderblock_i/``, bfloat16 stored as 2-byte void).
            config: the config (or registered name) the weights must match; inferred from the
                shapes when None.
            dtype: parameter dtype after loading.
            image_size: run at this resolution (position grid resampled with ``resize_method``).
            resize_method: ``"bilinear"`` (big_vision) or ``"bicubic"`` (HF).

        Returns:
            The model.

        Raises:
            CheckpointError: if the weights do not fit ``config``.
        """
        if isinstance(config, str):
            config = get_config(config)
        inferred, arrays = read_big_vision_npz(path, config)
        return cls._from_arrays(inferred, arrays, str(path), dtype, image_size, resize_method)

    @classmethod
    def _from_arrays(
        cls,
        config: SiglipConfig,
        arrays: Mapping[str, Any],
        source: str,
        dtype: Any,
        image_size: int | None,
        resize_method: Literal["bilinear", "bicubic"],
    ) -> SiglipModel:
        validate_parameter_shapes(
            {k: tuple(v.shape) for k, v in arrays.items()}, config, source=source
        )
        # Build without running the random init (shapes only), then fill every leaf.
        abstract = nnx.eval_shape(lambda: cls(config))
        graphdef, state = nnx.split(abstract)
        flat = nnx.to_flat_state(state)
        for path, variable in flat:
            if isinstance(variable, nnx.Param):
                value = hf_to_nnx_layout(path, jnp.asarray(arrays[nnx_path_to_hf_key(path)]))
                variable.set_value(value.astype(dtype))
        model: SiglipModel = nnx.merge(graphdef, nnx.from_flat_state(flat))
        if image_size is not None and image_size != config.vision.image_size:
            model.resize_position_embedding(image_size, method=resize_method)
        return model

    def save_pretrained(self, path: str | os.PathLike[str]) -> None:
        """Write ``config.json`` + ``model.safetensors`` (torch layout, HF key names).

        The same files as :meth:`siglip_models.torch.SiglipModel.save_pretrained`, written
        atomically and durably the same way.

        Args:
            path: the directory (created if missing).

        Raises:
            OSError: if a file cannot be written (the message names it; nothing partial is left).
        """
        from safetensors.flax import save_file

        arrays = {k: jnp.asarray(v) for k, v in self.hf_state_dict().items()}
        write_hf_directory(
            path,
            self.config,
            lambda temporary: save_file(arrays, temporary, metadata={"format": "pt"}),
        )
