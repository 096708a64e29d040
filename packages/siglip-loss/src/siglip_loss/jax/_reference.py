"""Dense JAX reference losses: one [batch, batch] logits matrix, autodiff for gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from siglip_loss.jax._common import Scalar
from siglip_loss.jax._common import check_inputs
from siglip_loss.jax._common import compute_dtype
from siglip_loss.jax._common import scalar_in_dtype
from siglip_loss.jax._common import scale_and_bias_in_compute_dtype
from siglip_loss.jax._positives import BlockGroups


def l2_normalize(x: jax.Array, *, axis: int = -1, eps: float = 1e-8) -> jax.Array:
    """``x / max(||x||, eps)`` along ``axis``: zero vectors give zeros (and finite gradients).

    Computed in float32 (or float64) and returned in the dtype of ``x``.

    Args:
        x: array of any shape, e.g. ``[batch, dim]``.
        axis: the axis to normalise over.
        eps: the smallest norm divided by.

    Examples:
        >>> import jax.numpy as jnp
        >>> from siglip_loss.jax import l2_normalize
        >>> l2_normalize(jnp.array([[3.0, 4.0], [0.0, 0.0]]))
        Array([[0.6, 0.8],
               [0. , 0. ]], dtype=float32)
    """
    if not hasattr(x, "dtype"):
        raise TypeError(f"x: expected an array, got {type(x).__name__}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x: expected a floating dtype, got {np.dtype(x.dtype).name}")
    work = jnp.asarray(x, dtype=compute_dtype(x))
    squared_norm = jnp.sum(work * work, axis=axis, keepdims=True)
    normalized = work * jax.lax.rsqrt(jnp.maximum(squared_norm, eps * eps))
    return normalized.astype(jax.dtypes.canonicalize_dtype(x.dtype))


def sigmoid_loss_reference(
    image_emb: jax.Array,
    text_emb: jax.Array,
    *,
    scale: Scalar,
    bias: Scalar,
    groups: BlockGroups | None = None,
) -> jax.Array:
    """Dense sigmoid loss: builds the whole ``[batch, text_batch]`` logits matrix. See ``sigmoid_loss``.

    Inputs are assumed validated (``sigmoid_loss`` checks them once for every implementation).
    """
    scale_array, bias_array = scale_and_bias_in_compute_dtype(
        image_emb, text_emb, scale=scale, bias=bias
    )
    dtype = scale_array.dtype
    image = jnp.asarray(image_emb, dtype=dtype)
    text = jnp.asarray(text_emb, dtype=dtype)
    batch = image.shape[0]
    cosine = image @ text.T  # [batch, text_batch]
    logits = scale_array * cosine + bias_array
    if groups is None:
        labels = 2.0 * jnp.eye(batch, dtype=dtype) - 1.0
        return -jnp.sum(jax.nn.log_sigmoid(labels * logits)) / batch
    positive = groups.image_groups[:, None] == groups.text_groups[None, :]
    terms = -jax.nn.log_sigmoid(jnp.where(positive, logits, -logits))
    if groups.image_weights is not None and groups.text_weights is not None:
        pair_weight = groups.image_weights[:, None] + groups.text_weights[None, :]
        terms = terms * jnp.where(positive, pair_weight, 1.0)
    return jnp.sum(terms) / batch


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

    Examples:
        >>> import jax.numpy as jnp
        >>> from siglip_loss.jax import softmax_loss
        >>> round(float(softmax_loss(jnp.zeros((4, 3)), jnp.zeros((4, 3)), scale=10.0)), 4)
        1.3863
    """
    check_inputs(image_emb, text_emb, scale=scale, bias=None)
    dtype = compute_dtype(image_emb, text_emb)
    image = jnp.asarray(image_emb, dtype=dtype)
    text = jnp.asarray(text_emb, dtype=dtype)
    logits = scalar_in_dtype(scale, dtype) * (image @ text.T)  # [batch, batch]

    def cross_entropy_on_diagonal(rows: jax.Array) -> jax.Array:
        return jnp.mean(jax.nn.logsumexp(rows, axis=1) - jnp.diagonal(rows))

    return 0.5 * (cross_entropy_on_diagonal(logits) + cross_entropy_on_diagonal(logits.T))
