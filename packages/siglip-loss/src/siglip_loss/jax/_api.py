"""The public JAX sigmoid loss."""

from __future__ import annotations

import jax

from siglip_loss.jax._reference import Scalar
from siglip_loss.jax._reference import sigmoid_loss_reference


def sigmoid_loss(
    image_emb: jax.Array, text_emb: jax.Array, *, scale: Scalar, bias: Scalar
) -> jax.Array:
    r"""The SigLIP sigmoid loss.

    .. math::
        L = -\frac{1}{N} \sum_{i,j} \log \sigma\big(z_{ij} (t \langle x_i, y_j \rangle + b)\big),
        \quad z_{ii} = 1,\ z_{ij} = -1 \ (i \ne j)

    Divided by the batch size N (the number of positive pairs), not N². Differentiable in all four
    inputs; works under ``jax.jit`` and ``jax.vmap``. float16/bfloat16/float32 inputs accumulate in
    float32.

    Args:
        image_emb: ``[batch, dim]`` image embeddings, used as given (normalise them first).
        text_emb: ``[batch, dim]`` text embeddings; row ``i`` is the caption of image ``i``.
        scale: the positive multiplier ``t = exp(log_scale)``, not its log; float or 0-d array.
        bias: the logit bias ``b``; float or 0-d array.

    Returns:
        0-d float32 array (float64 for float64 inputs).

    Raises:
        ValueError: a shape is not ``[batch, dim]``, the shapes differ, batch is 0, or a concrete
            ``scale`` is not finite and positive.
        TypeError: an input is not a floating array.

    Reference: Zhai et al., arXiv:2303.15343, eq. 1.

    Example:
        >>> image = l2_normalize(jax.random.normal(jax.random.key(0), (8, 16)))
        >>> text = l2_normalize(jax.random.normal(jax.random.key(1), (8, 16)))
        >>> sigmoid_loss(image, text, scale=10.0, bias=-10.0).shape
        ()
    """
    return sigmoid_loss_reference(image_emb, text_emb, scale=scale, bias=bias)
