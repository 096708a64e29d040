"""The public JAX sigmoid loss: one function, four implementations behind ``implementation=``."""

from __future__ import annotations

import jax

from siglip_loss._validation import AUTO_DENSE_MAX_BATCH
from siglip_loss._validation import Implementation
from siglip_loss._validation import check_implementation
from siglip_loss.jax._chunked import sigmoid_loss_chunked
from siglip_loss.jax._common import Scalar
from siglip_loss.jax._common import check_inputs
from siglip_loss.jax._fused import check_block_size
from siglip_loss.jax._fused import sigmoid_loss_fused
from siglip_loss.jax._reference import sigmoid_loss_reference


def sigmoid_loss(
    image_emb: jax.Array,
    text_emb: jax.Array,
    *,
    scale: Scalar,
    bias: Scalar,
    implementation: Implementation = "auto",
    block_size: int | None = None,
) -> jax.Array:
    r"""The SigLIP sigmoid loss.

    .. math::
        L = -\frac{1}{N} \sum_{i,j} \log \sigma\big(z_{ij} (t \langle x_i, y_j \rangle + b)\big),
        \quad z_{ii} = 1,\ z_{ij} = -1 \ (i \ne j)

    Divided by the batch size N (the number of positive pairs), not N². Differentiable in all four
    inputs; works under ``jax.jit`` and ``jax.vmap``. float16/bfloat16/float32 inputs accumulate in
    float32 and get gradients in their own dtype.

    Implementations (all give the same value and gradients up to float32 rounding):

    - ``"fused"``: a ``jax.custom_vjp``. Undifferentiated, the loss is computed tile by tile
      (``lax.fori_loop``); under ``jax.grad`` the vjp forward computes the loss and the gradients
      of the differentiated inputs in the same tile loop, and the backward only scales them.
      Memory linear in N. Reverse mode only (no ``jax.jvp``/``jax.hessian``).
    - ``"chunked"``: the same tiles with ordinary autodiff, each row block rematerialised in the
      backward pass (``jax.checkpoint``): memory O(block_size x N), all derivatives work.
    - ``"reference"``: the dense ``[N, N]`` logits and autodiff (memory O(N²)).
    - ``"auto"`` (default): the fused gradient path whenever the loss is differentiated; the
      undifferentiated value is dense up to ``N = 4096`` and tiled above.

    Args:
        image_emb: ``[batch, dim]`` image embeddings, used as given (normalise them first).
        text_emb: ``[batch, dim]`` text embeddings; row ``i`` is the caption of image ``i``.
        scale: the positive multiplier ``t = exp(log_scale)``, not its log; float or 0-d array.
        bias: the logit bias ``b``; float or 0-d array.
        implementation: ``"auto"``, ``"fused"``, ``"chunked"`` or ``"reference"`` (static).
        block_size: tile edge for the tiled paths (static; default 1024). Any value works for any N.

    Returns:
        0-d float32 array (float64 for float64 inputs).

    Raises:
        ValueError: a shape is not ``[batch, dim]``, the shapes differ, batch is 0, a concrete
            ``scale`` is not finite and positive, ``block_size < 1``, or ``implementation`` is
            unknown.
        TypeError: an input is not a floating array, or ``block_size`` is not an int.

    Reference: Zhai et al., arXiv:2303.15343, eq. 1.

    Examples:
        >>> import jax
        >>> from siglip_loss.jax import l2_normalize, sigmoid_loss
        >>> image = l2_normalize(jax.random.normal(jax.random.key(0), (8, 16)))
        >>> text = l2_normalize(jax.random.normal(jax.random.key(1), (8, 16)))
        >>> sigmoid_loss(image, text, scale=10.0, bias=-10.0).shape
        ()
        >>> grads = jax.grad(sigmoid_loss, argnums=(0, 1))(image, text, scale=10.0, bias=-10.0)
        >>> grads[0].shape
        (8, 16)
    """
    check_inputs(image_emb, text_emb, scale=scale, bias=bias)
    implementation = check_implementation(implementation)
    check_block_size(block_size)
    if implementation in ("auto", "fused"):
        dense_primal = implementation == "auto" and image_emb.shape[0] <= AUTO_DENSE_MAX_BATCH
        return sigmoid_loss_fused(
            image_emb,
            text_emb,
            scale=scale,
            bias=bias,
            block_size=block_size,
            dense_primal=dense_primal,
        )
    if implementation == "chunked":
        return sigmoid_loss_chunked(
            image_emb, text_emb, scale=scale, bias=bias, block_size=block_size
        )
    return sigmoid_loss_reference(image_emb, text_emb, scale=scale, bias=bias)
