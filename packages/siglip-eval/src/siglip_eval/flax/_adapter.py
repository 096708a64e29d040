"""Encoders for Flax NNX models: numpy in, numpy out, jitted once per input shape."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from siglip_eval._encoders import Encoder

Tokenizer = Callable[[list[str]], Any]


def flax_encoder(
    model: Any,
    tokenizer: Tokenizer,
    *,
    name: str | None = None,
    jit: bool = True,
    image_method: str = "encode_image",
    text_method: str = "encode_text",
    naflex_method: str = "encode_image_naflex",
) -> Encoder:
    """An ``Encoder`` over a Flax NNX model with ``encode_image(NHWC)`` / ``encode_text(ids)``.

    Works for ``siglip_models.flax.SiglipModel``. Pixels stay NHWC float32 in [-1, 1]; texts go
    through ``tokenizer`` and become int32 ids. With ``jit`` each method is compiled once per batch
    shape (``nnx.jit``); the last, smaller batch compiles once more. A
    ``siglip_data.naflex.NaflexBatch`` goes to ``naflex_method(patches, patch_mask,
    spatial_shapes)`` (``siglip_models.flax.SiglipModel.encode_image_naflex``), compiled once
    per sequence length.

    Args:
        model: the NNX model.
        tokenizer: ``list[str] -> [batch, length]`` int ids.
        name: cache key (default: the class name).
        jit: compile the encoders.
        image_method: name of the image method to call.
        text_method: name of the text method to call.
        naflex_method: name of the method called with NaFlex batches.

    Returns:
        ``Encoder``.

    Examples:
        >>> import numpy as np
        >>> from flax import nnx
        >>> from siglip_eval.flax import flax_encoder
        >>> class Toy(nnx.Module):
        ...     def encode_image(self, pixels):
        ...         return pixels.mean(axis=(1, 2))
        ...
        ...     def encode_text(self, ids):
        ...         return ids[:, :3].astype("float32")
        >>> encoder = flax_encoder(Toy(), lambda texts: np.ones((len(texts), 4), np.int32))
        >>> encoder.encode_images(np.zeros((2, 8, 8, 3), np.float32)).shape
        (2, 3)
        >>> encoder.encode_texts(["a", "b"]).tolist()
        [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """

    def run_image(module: Any, pixels: jax.Array) -> Any:
        return getattr(module, image_method)(pixels)

    def run_text(module: Any, ids: jax.Array) -> Any:
        return getattr(module, text_method)(ids)

    def run_naflex(
        module: Any, patches: jax.Array, patch_mask: jax.Array, spatial_shapes: jax.Array
    ) -> Any:
        return getattr(module, naflex_method)(patches, patch_mask, spatial_shapes)

    image_fn = nnx.jit(run_image) if jit else run_image
    text_fn = nnx.jit(run_text) if jit else run_text
    naflex_fn = nnx.jit(run_naflex) if jit else run_naflex

    def encode_images(pixels: Any) -> np.ndarray:
        if hasattr(pixels, "spatial_shapes"):  # a siglip_data.naflex.NaflexBatch
            output = naflex_fn(
                model,
                jnp.asarray(np.asarray(pixels.patches, dtype=np.float32)),
                jnp.asarray(np.asarray(pixels.patch_mask, dtype=bool)),
                jnp.asarray(np.asarray(pixels.spatial_shapes, dtype=np.int32)),
            )
            return np.asarray(output, dtype=np.float32)
        output = image_fn(model, jnp.asarray(np.asarray(pixels, dtype=np.float32)))
        return np.asarray(output, dtype=np.float32)

    def encode_texts(texts: list[str]) -> np.ndarray:
        ids = jnp.asarray(np.asarray(tokenizer(list(texts))), dtype=jnp.int32)
        return np.asarray(text_fn(model, ids), dtype=np.float32)

    return Encoder(
        encode_images=encode_images, encode_texts=encode_texts, name=name or type(model).__name__
    )


def from_pretrained(
    path: str | os.PathLike[str],
    tokenizer: Tokenizer,
    *,
    name: str | None = None,
) -> tuple[Encoder, Any]:
    """Load a checkpoint on disk with ``siglip_models.flax.SiglipModel`` and wrap it.

    Args:
        path: a Hugging Face ``SiglipModel`` folder (``config.json`` + ``model.safetensors``) or a
            big_vision ``.npz``.
        tokenizer: ``list[str] -> [batch, length]`` ids (e.g. ``siglip_data.SentencePieceTokenizer``).
        name: cache key (default: the resolved path).

    Returns:
        ``(encoder, model)``; ``model.config.vision.image_size`` is the resolution to feed.
    """
    from siglip_models.flax import SiglipModel

    model = SiglipModel.from_pretrained(path)
    return flax_encoder(model, tokenizer, name=name or os.path.abspath(path)), model
