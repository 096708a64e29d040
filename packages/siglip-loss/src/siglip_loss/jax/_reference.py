"""Dense JAX reference losses: one [batch, batch] logits matrix, autodiff for gradients."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from siglip_loss._validation import check_pair
from siglip_loss._validation import check_scalar

Scalar = float | jax.Array


def compute_dtype(*arrays: Any) -> jnp.dtype:
    """float32, or float64 when an input is float64 (with x64 enabled)."""
    if any(jnp.dtype(a.dtype) == jnp.float64 for a in arrays):
        return jnp.dtype(jnp.float64)
    return jnp.dtype(jnp.float32)


def l2_normalize(x: jax.Array, *, axis: int = -1, eps: float = 1e-8) -> jax.Array:
    """``x / max(||x||, eps)`` along ``axis``: zero vectors give zeros (and finite gradients).

    Computed in float32 (or float64) and returned in the dtype of ``x``.

    Args:
        x: array of any shape, e.g. ``[batch, dim]``.
        axis: the axis to normalise over.
        eps: the smallest norm divided by.

    Example:
        >>> l2_normalize(jnp.array([[3.0, 4.0], [0.0, 0.0]]))
        Array([[0.6, 0.8],
               [0. , 0. ]], dtype=float32)
    """
    work = jnp.asarray(x).astype(compute_dtype(x))
    squared_norm = jnp.sum(work * work, axis=axis, keepdims=True)
    return (work * jax.lax.rsqrt(jnp.maximum(squared_norm, eps * eps))).astype(x.dtype)


def sigmoid_loss_reference(
    image_emb: jax.Array, text_emb: jax.Array, *, scale: Scalar, bias: Scalar
) -> jax.Array:
    """Dense sigmoid loss: builds the whole ``[batch, batch]`` logits matrix. See ``sigmoid_loss``."""
    check_pair(image_emb, text_emb)
    check_scalar("scale", scale, positive=True)
    check_scalar("bias", bias)
    dtype = compute_dtype(image_emb, text_emb)
    image, text = image_emb.astype(dtype), text_emb.astype(dtype)
    batch = image.shape[0]
    logits = jnp.asarray(scale, dtype) * (image @ text.T) + jnp.asarray(
        bias, dtype
    )  # [batch, batch]
    labels = 2.0 * jnp.eye(batch, dtype=dtype) - 1.0
    return -jnp.sum(jax.nn.log_sigmoid(labels * logits)) / batch


def softmax_loss(image_emb: jax.Array, text_emb: jax.Array, *, scale: Scalar) -> jax.Array:
    r"""CLIP's symmetric InfoNCE loss, the baseline.

    .. math::
        L = \tfrac{1}{2}\big(\operatorname{CE}(tXY^\top, I) + \operatorname{CE}(tYX^\top, I)\big)

    Args:
        image_emb: ``[batch, dim]`` image embeddings.
        text_emb: ``[batch, dim]`` text embeddings.
        scale: positive multiplier ``t``; a Python float or a 0-d array (differentiable).

    Returns:
        0-d float32 array (float64 for float64 inputs).

    Example:
        >>> round(float(softmax_loss(jnp.zeros((4, 3)), jnp.zeros((4, 3)), scale=10.0)), 4)
        1.3863
    """
    check_pair(image_emb, text_emb)
    check_scalar("scale", scale, positive=True)
    dtype = compute_dtype(image_emb, text_emb)
    logits = jnp.asarray(scale, dtype) * (image_emb.astype(dtype) @ text_emb.astype(dtype).T)

    def cross_entropy_on_diagonal(rows: jax.Array) -> jax.Array:
        return jnp.mean(jax.nn.logsumexp(rows, axis=1) - jnp.diagonal(rows))

    return 0.5 * (cross_entropy_on_diagonal(logits) + cross_entropy_on_diagonal(logits.T))
