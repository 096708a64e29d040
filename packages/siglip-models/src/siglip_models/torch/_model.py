"""SigLIP two-tower model in PyTorch, parameter for parameter the Hugging Face ``SiglipModel``.

The layers are in ``_layers.py``, the optional oneDNN inference path in ``_cpu_inference.py``;
this module holds the model's public surface and its checkpoint I/O (HF directories, big_vision
``.npz``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from siglip_models._config import SiglipConfig
from siglip_models._config import get_config
from siglip_models._layout import SCALAR_KEYS
from siglip_models._layout import check_pixels
from siglip_models._layout import check_token_ids
from siglip_models._layout import read_hf_directory
from siglip_models._layout import validate_parameter_shapes
from siglip_models._layout import write_hf_directory
from siglip_models._naflex import check_naflex_inputs
from siglip_models._naflex import fixed_only_message
from siglip_models._naflex import naflex_only_message
from siglip_models._npz import read_big_vision_npz
from siglip_models._resample import resample_position_embedding
from siglip_models.torch._layers import TextTower
from siglip_models.torch._layers import VisionTower
from siglip_models.torch._layers import l2_normalize


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


class SiglipModel(nn.Module):
    """SigLIP / SigLIP 2 image and text towers in PyTorch, fixed resolution or NaFlex.

    The parameter tree is the Hugging Face ``SiglipModel`` one (``vision_model.…``,
    ``text_model.…``; ``Siglip2Model`` for a NaFlex config, whose image tower takes
    variable-length patch sequences through :meth:`encode_image_naflex`), so HF checkpoints
    load with no renaming; ``log_scale`` and ``bias`` are
    0-d parameters stored as ``logit_scale`` / ``logit_bias`` (shape ``(1,)``) on disk.

    .. math::
        \\text{logits\\_per\\_image} = e^{\\text{log\\_scale}}\\,
        \\hat{x}\\,\\hat{y}^\\top + \\text{bias}

    Args:
        config: a :class:`~siglip_models.SiglipConfig` or the name of a registered one.

    Examples:
        >>> import torch
        >>> from siglip_models.torch import SiglipModel
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
        self.vision_model = VisionTower(config.vision)
        self.text_model = TextTower(config.text)
        self.log_scale = nn.Parameter(torch.tensor(float(config.log_scale_init)))
        self.bias = nn.Parameter(torch.tensor(float(config.bias_init)))
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
        self.log_scale.fill_(self.config.log_scale_init)
        self.bias.fill_(self.config.bias_init)

    # ------------------------------------------------------------- encoders
    def _check_pixels(self, pixels: torch.Tensor, method: str) -> None:
        if self.config.vision.naflex:
            raise ValueError(naflex_only_message(method))
        check_pixels(tuple(pixels.shape), self.config.vision.image_size, channels_last=False)

    def _naflex_inputs(
        self,
        patches: torch.Tensor,
        patch_mask: torch.Tensor,
        spatial_shapes: torch.Tensor,
        method: str,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.config.vision.naflex:
            raise ValueError(fixed_only_message(method))
        shapes = torch.as_tensor(spatial_shapes)
        mask = torch.as_tensor(patch_mask)
        check_naflex_inputs(
            tuple(patches.shape),
            mask.detach().cpu().numpy(),
            shapes.detach().cpu().numpy(),
            patch_size=self.config.vision.patch_size,
        )
        device = patches.device
        return mask.to(device=device, dtype=torch.bool), shapes.to(device=device)

    def encode_image_naflex(
        self, patches: torch.Tensor, patch_mask: torch.Tensor, spatial_shapes: torch.Tensor
    ) -> torch.Tensor:
        """Image embeddings (MAP-head output) of a NaFlex batch, not normalised.

        Each image keeps its aspect ratio: ``siglip_data.naflex.naflex_preprocess`` resizes it
        to a ``rows x cols`` grid of at most ``length`` patches and pads the sequence. The
        learned position grid is resized to every image's ``(rows, cols)`` (antialiased
        bilinear, half-pixel centres); padding keys are masked in every attention layer and in
        the MAP head, so padding never changes an embedding.

        Args:
            patches: ``[batch, length, 3 * patch_size**2]`` float in [-1, 1], each patch in
                ``(patch_row, patch_col, channel)`` order, row-major over the patch grid.
            patch_mask: ``[batch, length]`` bool (or 0/1), True for the ``rows * cols`` valid
                patches, which come first.
            spatial_shapes: ``[batch, 2]`` integer ``(rows, cols)`` of every image's grid.

        Returns:
            ``[batch, embed]``.

        Raises:
            ValueError: on a fixed-resolution model; a last axis other than
                ``3 * patch_size**2``; a side of 0; more valid patches than ``length``; a mask
                that is not a prefix of ones or does not count ``rows * cols``.

        Examples:
            >>> import torch
            >>> from siglip_models.torch import SiglipModel
            >>> _ = torch.manual_seed(0)
            >>> model = SiglipModel("tiny-test-naflex").eval()  # 4-pixel patches
            >>> patches = torch.rand(2, 6, 48) * 2 - 1
            >>> mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
            >>> shapes = torch.tensor([[2, 3], [1, 3]])  # a 2x3 grid and a 1x3 strip
            >>> model.encode_image_naflex(patches, mask, shapes).shape
            torch.Size([2, 32])
        """
        mask, shapes = self._naflex_inputs(
            patches, patch_mask, spatial_shapes, "encode_image_naflex"
        )
        pooled: torch.Tensor = self.vision_model.forward_naflex(patches, mask, shapes)
        return pooled

    def encode_image_patches_naflex(
        self, patches: torch.Tensor, patch_mask: torch.Tensor, spatial_shapes: torch.Tensor
    ) -> torch.Tensor:
        """Final-LayerNorm patch tokens of a NaFlex batch: dense features for VLMs.

        Args:
            patches: ``[batch, length, 3 * patch_size**2]`` (see :meth:`encode_image_naflex`).
            patch_mask: ``[batch, length]``, True for the valid patches (a prefix).
            spatial_shapes: ``[batch, 2]`` ``(rows, cols)``.

        Returns:
            ``[batch, length, width]``; token ``n < rows * cols`` of an image is patch
            ``(n // cols, n % cols)``; padding rows are zero. Reshape the valid rows of image
            ``b`` with ``tokens[b, : rows * cols].reshape(rows, cols, width)``.

        Raises:
            ValueError: as :meth:`encode_image_naflex`.
        """
        mask, shapes = self._naflex_inputs(
            patches, patch_mask, spatial_shapes, "encode_image_patches_naflex"
        )
        tokens = self.vision_model.naflex_tokens(patches, mask, shapes)
        return tokens * mask[..., None].to(tokens.dtype)

    def _check_token_ids(self, token_ids: torch.Tensor) -> None:
        dtype = token_ids.dtype
        check_token_ids(
            tuple(token_ids.shape),
            dtype,
            is_integer=not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool),
            max_length=self.config.text.max_length,
        )

    def encode_image_patches(self, pixels: torch.Tensor) -> torch.Tensor:
        """Final-LayerNorm patch tokens, the dense features VLMs and segmentation probes use.

        Args:
            pixels: ``[batch, 3, image_size, image_size]`` float in [-1, 1].

        Returns:
            ``[batch, num_patches, width]``, patches in row-major order (no class token).

        Raises:
            ValueError: for a shape other than ``[batch, 3, image_size, image_size]``.
        """
        self._check_pixels(pixels, "encode_image_patches")
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
        self._check_pixels(pixels, "encode_image")
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
        self._check_token_ids(token_ids)
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
        image_emb = l2_normalize(self.encode_image(pixels).float())
        text_emb = l2_normalize(self.encode_text(token_ids).float())
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
        """Recompute every encoder block in backward (saves activation memory).

        Args:
            enabled: turn recomputation on (True) or off (False); it applies in training mode.

        Returns:
            ``self``.
        """
        self.vision_model.encoder.gradient_checkpointing = enabled
        self.text_model.encoder.gradient_checkpointing = enabled
        return self

    def optimize_for_cpu_inference(self, enabled: bool = True) -> SiglipModel:
        """Pre-pack the encoder matmul weights for oneDNN (CPU inference); returns self.

        Under ``torch.no_grad()`` / ``inference_mode()`` the encoder blocks then run their q/k/v,
        output and MLP matmuls on pre-packed weights, with bias and tanh GELU fused into the
        GEMM (no separate GELU pass). float32 results agree with the plain path to float32
        rounding (the summation order differs; the tests hold both to 1e-5 of transformers).
        A bfloat16 model (``to_inference_dtype(torch.bfloat16)`` first, then this) packs to
        oneDNN's bfloat16 GEMMs where the CPU has them (AVX512-BF16 or AMX): float32
        accumulation and one rounding per fused GEMM, so it stays as close to the float32 model
        as the plain bfloat16 path does. With gradients enabled the plain path runs, so training
        is unaffected; a pack whose weights changed in place (optimizer step,
        ``load_hf_state_dict``) is rebuilt on next use. Replacing a parameter object
        (``module.weight = nn.Parameter(...)``) needs another call.

        The layers stay plain: every MLP and self-attention module is swapped for a packed twin
        that shares its ``nn.Linear`` submodules, so parameters and state-dict keys do not change;
        ``enabled=False`` swaps the plain modules back.

        Args:
            enabled: pack (True) or restore the plain modules (False).

        Returns:
            ``self``.

        Examples:
            >>> import torch
            >>> from siglip_models.torch import SiglipModel
            >>> _ = torch.manual_seed(0)
            >>> model = SiglipModel("tiny-test").eval()
            >>> pixels = torch.rand(2, 3, 32, 32) * 2 - 1
            >>> with torch.inference_mode():
            ...     plain = model.encode_image(pixels)
            ...     packed = model.optimize_for_cpu_inference().encode_image(pixels)
            >>> torch.allclose(plain, packed, atol=1e-5)
            True

        Raises:
            RuntimeError: if this PyTorch build has no oneDNN, encoder parameters are not float32
                or bfloat16 on the CPU, or bfloat16 layers meet a CPU without oneDNN bfloat16.
        """
        # Imported here: the model does not depend on the optional oneDNN path unless asked.
        from siglip_models.torch._cpu_inference import pack_for_cpu_inference
        from siglip_models.torch._cpu_inference import unpack

        if enabled:
            pack_for_cpu_inference(self)
        else:
            unpack(self)
        return self

    def to_inference_dtype(self, dtype: torch.dtype = torch.bfloat16) -> SiglipModel:
        """Cast the encoders and heads to ``dtype``; keep patch and position embeddings float32.

        big_vision keeps patch extraction and position embeddings in float32; casting them too
        moves image tokens visibly (OpenTau PR #482). Embeddings returned by ``forward`` and the
        logits are float32. Undoes :meth:`optimize_for_cpu_inference`; call it again after the cast
        to pack the ``dtype`` weights (float32 or bfloat16).

        Args:
            dtype: the dtype of the encoders and heads, e.g. ``torch.bfloat16``.

        Returns:
            ``self``.
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
        order 1); ``bicubic`` reproduces HF ``interpolate_pos_encoding``.

        Args:
            image_size: the new input side in pixels.
            method: ``"bilinear"`` (big_vision) or ``"bicubic"`` (HF).

        Returns:
            ``self``, with ``config.vision.image_size`` updated.

        Raises:
            ValueError: if the new size has fewer pixels than one patch, or on a NaFlex model
                (it resizes its grid per image by itself).
        """
        if self.config.vision.naflex:
            raise ValueError(
                "resize_position_embedding: a NaFlex model resizes its position grid to every "
                "image's patch grid at run time; choose max_num_patches when preprocessing"
            )
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
        """The state dict under Hugging Face ``SiglipModel`` key names and shapes.

        Returns:
            Key -> tensor (sharing storage with the parameters); ``logit_scale`` and
            ``logit_bias`` have shape ``(1,)``.
        """
        state = {}
        for key, tensor in self.state_dict().items():
            if key in SCALAR_KEYS:
                state[SCALAR_KEYS[key]] = tensor.reshape(1)
            else:
                state[key] = tensor
        return state

    def load_hf_state_dict(self, state: Mapping[str, torch.Tensor], *, source: str = "") -> None:
        """Load every parameter from a Hugging Face-layout state dict (all or nothing).

        Args:
            state: HF key -> tensor, as :meth:`hf_state_dict` returns or a checkpoint holds.
            source: where the weights came from, quoted in errors.

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
            name = {v: k for k, v in SCALAR_KEYS.items()}.get(key)
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

        Also accepts a siglip-train checkpoint ``step_<N>/`` or run directory (its newest step;
        see :func:`siglip_models.resolve_model_directory`) and a big_vision ``.npz`` file (see
        :meth:`from_big_vision`).

        Args:
            path: the directory (or a ``.npz`` file).
            dtype: parameter dtype after loading.
            device: where the parameters live.
            image_size: run at this resolution (position grid resampled with ``resize_method``).
            resize_method: ``"bilinear"`` (big_vision) or ``"bicubic"`` (HF).

        Returns:
            The model in eval mode.

        Raises:
            FileNotFoundError: no config.json / model.safetensors (the message says where a
                config.json is, if one is below ``path``).
            CheckpointError: keys or shapes that do not fit the config.

        Examples:
            >>> import tempfile
            >>> from siglip_models.torch import SiglipModel
            >>> directory = tempfile.mkdtemp()
            >>> SiglipModel("tiny-test").save_pretrained(directory)
            >>> SiglipModel.from_pretrained(directory).config.vision.image_size
            32
        """
        if Path(path).suffix == ".npz":
            return cls.from_big_vision(
                path, dtype=dtype, device=device, image_size=image_size, resize_method=resize_method
            )
        from safetensors.torch import load_file

        config, state = read_hf_directory(path, load_file)
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
            config: the config (or registered name) the weights must match; inferred from the
                shapes when None.
            dtype: parameter dtype after loading.
            device: where the parameters live.
            image_size: run at this resolution (position grid resampled with ``resize_method``).
            resize_method: ``"bilinear"`` (big_vision) or ``"bicubic"`` (HF).

        Returns:
            The model in eval mode.

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

        Each file is written atomically and durably (temporary file in the same directory, fsync,
        rename, fsync of the directory); other files in the directory are left alone.

        Args:
            path: the directory (created if missing).

        Raises:
            OSError: if a file cannot be written (the message names it; nothing partial is left).
        """
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous().cpu() for k, v in self.hf_state_dict().items()}
        write_hf_directory(
            path,
            self.config,
            lambda temporary: save_file(state, temporary, metadata={"format": "pt"}),
        )
