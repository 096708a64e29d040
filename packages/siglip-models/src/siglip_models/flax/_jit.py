"""``jax.jit`` of the towers for inference, with batch buckets so few sizes compile.

XLA compiles one program per input shape. :func:`jit_towers` pads each batch up to a bucket (the
next power of two by default), runs the program compiled for that bucket and drops the padding
rows: batch sizes 5, 6, 7 and 8 share one program, and a whole embedding job compiles at most
``log2(largest batch) + 1`` of them. Rows do not interact in either tower, so padding never
changes a real row. The weights are an argument of the program, not constants baked into it.
Padding rows repeat the last real row (a valid input: a NaFlex row of zeros would have no patch).

A NaFlex model's ``encode_image_naflex`` compiles one program per bucket and sequence length
``L``: the position grid is resized by a matrix product computed in the program from
``spatial_shapes``, so images of any aspect ratio share it.

Adding a tower: a jitted function of ``(state, *inputs)`` and a method that pads every input's
axis 0 with :meth:`JittedTowers._run`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from siglip_models.flax._model import SiglipModel


def _power_of_two_at_least(size: int) -> int:
    return 1 << max(size - 1, 0).bit_length()


class JittedTowers:
    """The towers of a model under ``jax.jit`` (inference); made by :func:`jit_towers`.

    Args:
        model: the model; its state is captured when this object is made.
        buckets: ``"power_of_two"`` pads each batch to the next power of two; None compiles
            every batch size as it comes.
    """

    def __init__(self, model: SiglipModel, *, buckets: str | None = "power_of_two") -> None:
        if not isinstance(model, SiglipModel):
            raise TypeError(
                f"jit_towers: expected a siglip_models.flax.SiglipModel, got {type(model).__name__}"
            )
        if buckets not in ("power_of_two", None):
            raise ValueError(f"jit_towers: buckets must be 'power_of_two' or None, got {buckets!r}")
        self.model = model
        self.buckets = buckets
        graphdef, self.state = nnx.split(model)

        def encode_image(state: Any, pixels: jax.Array) -> jax.Array:
            return nnx.merge(graphdef, state).encode_image(pixels)

        def encode_text(state: Any, token_ids: jax.Array) -> jax.Array:
            return nnx.merge(graphdef, state).encode_text(token_ids)

        def encode_image_naflex(
            state: Any, patches: jax.Array, patch_mask: jax.Array, spatial_shapes: jax.Array
        ) -> jax.Array:
            return nnx.merge(graphdef, state).encode_image_naflex(
                patches, patch_mask, spatial_shapes
            )

        self.image_program = jax.jit(encode_image)
        self.text_program = jax.jit(encode_text)
        self.naflex_program = jax.jit(encode_image_naflex)

    def _run(self, program: Callable[..., jax.Array], *inputs: Any) -> jax.Array:
        """``program(state, *inputs)`` with axis 0 of every input padded to the bucket."""
        batch = int(np.shape(inputs[0])[0])
        size = _power_of_two_at_least(batch) if self.buckets == "power_of_two" else batch
        padded = [
            jnp.pad(jnp.asarray(x), [(0, size - batch)] + [(0, 0)] * (jnp.ndim(x) - 1), "edge")
            if size != batch
            else jnp.asarray(x)
            for x in inputs
        ]
        return program(self.state, *padded)[:batch]

    def encode_image(self, pixels: Any) -> jax.Array:
        """Image embeddings (not normalised), as :meth:`SiglipModel.encode_image`.

        Args:
            pixels: ``[batch, image_size, image_size, 3]`` float in [-1, 1] (NHWC).

        Returns:
            ``[batch, embed]``.

        Raises:
            ValueError: for a shape other than ``[batch, image_size, image_size, 3]``.
        """
        self.model._check_pixels(pixels, "encode_image")
        return self._run(self.image_program, pixels)

    def encode_text(self, token_ids: Any) -> jax.Array:
        """Text embeddings (not normalised), as :meth:`SiglipModel.encode_text`.

        Args:
            token_ids: ``[batch, max_length]`` integer ids, right-padded to ``max_length``.

        Returns:
            ``[batch, embed]``.

        Raises:
            ValueError: if the ids are not integer or not padded to ``max_length``.
        """
        self.model._check_token_ids(token_ids)
        return self._run(self.text_program, token_ids)

    def encode_image_naflex(self, patches: Any, patch_mask: Any, spatial_shapes: Any) -> jax.Array:
        """NaFlex image embeddings (not normalised), as :meth:`SiglipModel.encode_image_naflex`.

        Args:
            patches: ``[batch, L, 3 * patch_size**2]`` float in [-1, 1].
            patch_mask: ``[batch, L]`` bool (or 0/1), the valid patches first.
            spatial_shapes: ``[batch, 2]`` integer ``(rows, cols)``.

        Returns:
            ``[batch, embed]``.

        Raises:
            ValueError: as :meth:`SiglipModel.encode_image_naflex` (checked on the concrete
                values before padding).
        """
        inputs = self.model._naflex_inputs(
            patches, patch_mask, spatial_shapes, "encode_image_naflex"
        )
        return self._run(self.naflex_program, *inputs)


def jit_towers(model: SiglipModel, *, buckets: str | None = "power_of_two") -> JittedTowers:
    """``encode_image`` / ``encode_text`` of a Flax model under ``jax.jit``, batch sizes bucketed.

    Each batch is padded to the next power of two and the padding rows are dropped from the
    output, so a stream of batches of any sizes compiles only a handful of programs. Outputs
    equal the eager (un-jitted) model within float32 rounding (the tests hold them to 1e-5).
    Parameters changed after this call are not seen: call it again.

    Args:
        model: a :class:`~siglip_models.flax.SiglipModel`.
        buckets: ``"power_of_two"`` (default) or None (one program per batch size).

    Returns:
        A :class:`JittedTowers` with ``encode_image`` and ``encode_text`` (and
        ``encode_image_naflex`` for a NaFlex model).

    Raises:
        TypeError: if ``model`` is not a ``siglip_models.flax.SiglipModel``.
        ValueError: an unknown ``buckets``.

    Examples:
        >>> import numpy as np
        >>> from siglip_models.flax import SiglipModel
        >>> from siglip_models.flax import jit_towers
        >>> model = SiglipModel("tiny-test")
        >>> towers = jit_towers(model)
        >>> pixels = np.random.default_rng(0).uniform(-1, 1, (3, 32, 32, 3)).astype(np.float32)
        >>> bool(np.allclose(towers.encode_image(pixels), model.encode_image(pixels), atol=1e-5))
        True
        >>> towers.image_program._cache_size()  # batch 3 ran the program compiled for 4
        1
    """
    return JittedTowers(model, buckets=buckets)
