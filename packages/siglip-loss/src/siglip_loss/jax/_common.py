"""What every JAX loss shares: input checks, the compute dtype and scalar coercion.

One dtype policy for the whole backend (``docs/loss.md``, "Precision"): float16, bfloat16 and
float32 inputs are computed and summed in float32, float64 inputs in float64 (with
``jax_enable_x64``; without it JAX has no float64 and they are computed in float32), in the dense,
chunked, fused and sharded losses alike.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from siglip_loss._validation import check_groups
from siglip_loss._validation import check_pair
from siglip_loss._validation import check_positive_weighting
from siglip_loss._validation import check_scalar

Scalar = float | jax.Array


def compute_dtype(*arrays: Any) -> np.dtype[Any]:
    """float64 when an input is float64 and x64 is enabled, float32 otherwise."""
    if any(np.dtype(array.dtype) == np.float64 for array in arrays):
        # Without jax_enable_x64 this is float32: asking for float64 would only warn.
        return np.dtype(jax.dtypes.canonicalize_dtype(np.float64))
    return np.dtype(np.float32)


def scalar_in_dtype(value: Scalar, dtype: Any) -> jax.Array:
    """``value`` (a Python number or 0-d array) as a 0-d ``dtype`` array.

    The cast is differentiable: a JAX value carries no graph that could be kept or dropped, so
    JAX needs one coercion where torch needs two (``siglip_loss.torch._common``).
    """
    return jnp.asarray(value, dtype=dtype)


def scale_and_bias_in_compute_dtype(
    image_emb: jax.Array, text_emb: jax.Array, *, scale: Scalar, bias: Scalar
) -> tuple[jax.Array, jax.Array]:
    """``scale`` and ``bias`` as 0-d arrays of the inputs' compute dtype (differentiable casts)."""
    dtype = compute_dtype(image_emb, text_emb)
    return scalar_in_dtype(scale, dtype), scalar_in_dtype(bias, dtype)


def check_inputs(
    image_emb: jax.Array,
    text_emb: jax.Array,
    *,
    scale: Scalar,
    bias: Scalar | None,
    image_groups: Any = None,
    text_groups: Any = None,
    positive_weighting: str = "uniform",
) -> tuple[int, int]:
    """Validate the arguments of a JAX loss and return ``(batch, dim)`` (the image batch).

    Every public JAX loss calls this first (and only its public entry point does), so all raise
    the same messages. Shapes and dtypes are static under ``jax.jit``; values of traced
    ``scale``/``bias`` cannot be checked there. ``bias=None`` skips the bias check (for
    ``softmax_loss``). With group ids, the text batch may differ from the image batch.

    Raises:
        TypeError: an embedding is not a floating array, a group array is not an integer array,
            or a scalar is not a number or a 0-d floating array.
        ValueError: a shape is not ``[batch, dim]``, the batches differ without groups, the dims
            differ, a batch is 0, only one group array is given, a group array is not one id per
            row, ``positive_weighting`` is unknown, a concrete ``scale`` is not finite and
            positive, or a concrete ``bias`` is not finite.
    """
    grouped = image_groups is not None or text_groups is not None
    shape = check_pair(image_emb, text_emb, rectangular=grouped)
    check_groups(
        image_groups,
        text_groups,
        image_batch=int(image_emb.shape[0]),
        text_batch=int(text_emb.shape[0]),
    )
    check_positive_weighting(positive_weighting)
    check_scalar("scale", scale, positive=True)
    if bias is not None:
        check_scalar("bias", bias)
    return shape
