"""Encoders for PyTorch models: numpy in, numpy out, no gradients, any device and dtype."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from siglip_eval._encoders import Encoder

Tokenizer = Callable[[list[str]], Any]


def _to_numpy(output: Any, *, what: str) -> np.ndarray:
    # transformers >= 5 returns BaseModelOutputWithPooling from get_*_features (mteb #4205).
    if not isinstance(output, torch.Tensor):
        pooled = getattr(output, "pooler_output", None)
        if pooled is None:
            raise TypeError(
                f"{what}: expected a tensor (or an output with pooler_output), got {type(output).__name__}"
            )
        output = pooled
    array: np.ndarray = output.detach().to(torch.float32).cpu().numpy()
    return array


def torch_encoder(
    model: Any,
    tokenizer: Tokenizer,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    name: str | None = None,
    image_method: str = "encode_image",
    text_method: str = "encode_text",
    naflex_method: str = "encode_image_naflex",
) -> Encoder:
    """An ``Encoder`` over a PyTorch model with ``encode_image(NCHW)`` / ``encode_text(ids)``.

    Works for ``siglip_models.torch.SiglipModel`` and any model with the same two methods
    (open_clip models too). Pixels arrive NHWC float32 in [-1, 1] and are permuted to NCHW; texts
    go through ``tokenizer`` (e.g. ``siglip_data.SentencePieceTokenizer``, which pads to the
    trained length with the family's pad id) and become int64 ids. Each call runs in eval mode
    under ``torch.inference_mode`` and then restores the model's previous train/eval mode (safe
    for periodic evaluation during training); outputs come back as float32 numpy.

    NaFlex: a batch that is a ``siglip_data.naflex.NaflexBatch`` (readers with a NaFlex
    ``preprocess``) goes to ``naflex_method(patches, patch_mask, spatial_shapes)`` instead
    (``siglip_models.torch.SiglipModel.encode_image_naflex``).

    Args:
        model: the model (in eval mode during each call only).
        tokenizer: ``list[str] -> [batch, length]`` int ids.
        device: where to run (default: the model's device).
        dtype: input pixel dtype (default: the model's parameter dtype, e.g. bfloat16).
        name: cache key (default: the class name).
        image_method: name of the image method to call.
        text_method: name of the text method to call.
        naflex_method: name of the method called with NaFlex batches.

    Returns:
        ``Encoder``.

    Examples:
        >>> import numpy as np
        >>> import torch
        >>> from siglip_eval.torch import torch_encoder
        >>> class Toy(torch.nn.Module):
        ...     def encode_image(self, pixels):
        ...         return pixels.mean(dim=(2, 3))
        ...
        ...     def encode_text(self, ids):
        ...         return ids[:, :3].float()
        >>> encoder = torch_encoder(Toy(), lambda texts: np.ones((len(texts), 4), np.int32))
        >>> encoder.encode_images(np.zeros((2, 8, 8, 3), np.float32)).shape
        (2, 3)
    """
    parameter = next(iter(model.parameters()), None)
    run_device = (
        torch.device(device)
        if device is not None
        else (parameter.device if parameter is not None else torch.device("cpu"))
    )
    pixel_dtype = dtype or (
        parameter.dtype
        if parameter is not None and parameter.is_floating_point()
        else torch.float32
    )
    encode_image = getattr(model, image_method)
    encode_text = getattr(model, text_method)

    def in_eval_mode(method: Callable[[Any], Any], inputs: Any, what: str) -> np.ndarray:
        # Eval mode only for this call: a model evaluated during training (BatchNorm, dropout)
        # goes back to the mode it was in.
        was_training = bool(getattr(model, "training", False))
        model.eval()
        try:
            with torch.inference_mode():
                return _to_numpy(method(inputs), what=what)
        finally:
            model.train(was_training)

    def encode_naflex(batch: Any) -> np.ndarray:
        method = getattr(model, naflex_method, None)
        if method is None:
            raise TypeError(
                f"a NaFlex batch needs a model with {naflex_method}(patches, patch_mask, "
                f"spatial_shapes); {type(model).__name__} has none"
            )
        patches = torch.from_numpy(np.ascontiguousarray(batch.patches, dtype=np.float32))
        inputs = (
            patches.to(device=run_device, dtype=pixel_dtype),
            torch.from_numpy(np.asarray(batch.patch_mask)).to(run_device),
            torch.from_numpy(np.asarray(batch.spatial_shapes)).to(run_device),
        )
        return in_eval_mode(lambda args: method(*args), inputs, naflex_method)

    def encode_images(pixels: Any) -> np.ndarray:
        if hasattr(pixels, "spatial_shapes"):  # a siglip_data.naflex.NaflexBatch
            return encode_naflex(pixels)
        batch = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
        batch = batch.permute(0, 3, 1, 2).to(device=run_device, dtype=pixel_dtype)
        return in_eval_mode(encode_image, batch, image_method)

    def encode_texts(texts: list[str]) -> np.ndarray:
        ids = torch.as_tensor(
            np.asarray(tokenizer(list(texts))), dtype=torch.long, device=run_device
        )
        return in_eval_mode(encode_text, ids, text_method)

    return Encoder(
        encode_images=encode_images, encode_texts=encode_texts, name=name or type(model).__name__
    )


def transformers_encoder(
    model: Any,
    tokenizer: Any,
    *,
    max_length: int = 64,
    device: str | torch.device | None = None,
    name: str | None = None,
) -> Encoder:
    """An ``Encoder`` over a Hugging Face ``SiglipModel`` (or ``Siglip2Model``) and its tokenizer.

    Texts are tokenized with ``padding="max_length", max_length=max_length, truncation=True``:
    SigLIP pools the last position and has no attention mask, so dynamic padding silently ruins
    zero-shot accuracy. SigLIP 2 was trained on lowercased text: lowercase it yourself if your
    tokenizer does not. ``get_image_features``' newer output objects are unwrapped. NaFlex batches
    (``siglip_data.naflex.NaflexBatch``) go to a ``Siglip2Model`` as ``pixel_values``,
    ``pixel_attention_mask`` and ``spatial_shapes``.

    Args:
        model: ``transformers.SiglipModel`` (or anything with ``get_image_features`` /
            ``get_text_features``).
        tokenizer: the matching HF tokenizer.
        max_length: the trained text length (64; 16 for SigLIP So400m/14-224).
        device: where to run (default: the model's device).
        name: cache key.

    Returns:
        ``Encoder``.
    """

    def tokenize(texts: list[str]) -> Any:
        encoded = tokenizer(
            texts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
        )
        return encoded["input_ids"]

    class _Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def encode_image(self, pixels: torch.Tensor) -> Any:
            return model.get_image_features(pixel_values=pixels)

        def encode_text(self, ids: torch.Tensor) -> Any:
            return model.get_text_features(input_ids=ids)

        def encode_image_naflex(
            self, patches: torch.Tensor, patch_mask: torch.Tensor, spatial_shapes: torch.Tensor
        ) -> Any:
            return model.get_image_features(
                pixel_values=patches,
                pixel_attention_mask=patch_mask.to(torch.int32),
                spatial_shapes=spatial_shapes.to(torch.int64),
            )

    return torch_encoder(
        _Wrapper(),
        tokenize,
        device=device,
        name=name or getattr(model, "name_or_path", None) or type(model).__name__,
    )


def from_pretrained(
    path: str | os.PathLike[str],
    tokenizer: Tokenizer,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    name: str | None = None,
) -> tuple[Encoder, Any]:
    """Load a checkpoint on disk with ``siglip_models.torch.SiglipModel`` and wrap it.

    Args:
        path: a Hugging Face ``SiglipModel`` folder (``config.json`` + ``model.safetensors``) or a
            big_vision ``.npz``.
        tokenizer: ``list[str] -> [batch, length]`` ids (e.g. ``siglip_data.SentencePieceTokenizer``).
        device: where to run.
        dtype: the model's parameter and input dtype.
        name: cache key (default: the resolved path).

    Returns:
        ``(encoder, model)``; ``model.config.vision.image_size`` is the resolution to feed.
    """
    from siglip_models.torch import SiglipModel

    model = SiglipModel.from_pretrained(path, device=device, dtype=dtype)
    return torch_encoder(model, tokenizer, name=name or os.path.abspath(path)), model
