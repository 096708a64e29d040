"""The public JAX sigmoid loss: one function, four implementations behind ``implementation=``."""

from __future__ import annotations

import jax

from siglip_loss._validation import AUTO_DENSE_MAX_BATCH
from siglip_loss._validation import Implementation
from siglip_loss._validation import PositiveWeighting
from siglip_loss._validation import check_implementation
from siglip_loss.jax._chunked import sigmoid_loss_chunked
from siglip_loss.jax._common import Scalar
from siglip_loss.jax._common import check_inputs
from siglip_loss.jax._common import compute_dtype
from siglip_loss.jax._fused import check_block_size
from siglip_loss.jax._fused import sigmoid_loss_fused
from siglip_loss.jax._positives import as_group_ids
from siglip_loss.jax._positives import block_groups
from siglip_loss.jax._reference import sigmoid_loss_reference


def sigmoid_loss(
    image_emb: jax.Array,
    text_emb: jax.Array,
    *,
    scale: Scalar,
    bias: Scalar,
    image_groups: jax.Array | None = None,
    text_groups: jax.Array | None = None,
    positive_weighting: PositiveWeighting = "uniform",
    implementation: Implementation = "auto",
    block_size: int | None = None,
) -> jax.Array:
    r"""The SigLIP sigmoid loss, with one positive per row or several (group ids).

    .. math::
        L = \frac{1}{N} \sum_{i,j} w_{ij} \operatorname{softplus}\big(-z_{ij}
        (t \langle x_i, y_j \rangle + b)\big),
        \quad z_{ii} = 1,\ z_{ij} = -1 \ (i \ne j),\ w_{ij} = 1

    Divided by the number of images N (the number of positive pairs without groups), not N².
    With ``image_groups`` and ``text_groups``, pair ``(i, j)`` is a positive iff
    ``image_groups[i] == text_groups[j]``; the text batch M may then differ from N, and a row or
    column may have no positive. ``positive_weighting="inverse_count"`` weighs a positive
    :math:`w_{ij} = \tfrac{1}{2}(1/k_i + 1/k'_j)` (``k_i`` positives in row ``i``, ``k'_j`` in
    column ``j``; negatives weigh 1); unique ids give the standard loss with either weighting.
    Group ids are compared as JAX's default integer (int32 unless ``jax_enable_x64``).
    Differentiable in all four float inputs; works under ``jax.jit`` and ``jax.vmap``.
    float16/bfloat16/float32 inputs accumulate in float32 and get gradients in their own dtype.

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
        text_emb: ``[batch, dim]`` text embeddings; row ``i`` is the caption of image ``i``
            (``[text_batch, dim]`` with groups).
        scale: the positive multiplier ``t = exp(log_scale)``, not its log; float or 0-d array.
        bias: the logit bias ``b``; float or 0-d array.
        image_groups: ``[batch]`` integer array, the group id of each image; None (with
            ``text_groups`` None) for the diagonal positives.
        text_groups: ``[text_batch]`` integer array, the group id of each text.
        positive_weighting: ``"uniform"`` (every pair weighs 1) or ``"inverse_count"`` (static).
        implementation: ``"auto"``, ``"fused"``, ``"chunked"`` or ``"reference"`` (static).
        block_size: tile edge for the tiled paths (static; default 1024). Any value works for any N.

    Returns:
        0-d float32 array (float64 for float64 inputs).

    Raises:
        ValueError: a shape is not ``[batch, dim]``, the batches differ without groups, the dims
            differ, a batch is 0, only one group array is given, a group array is not one id per
            row, a concrete ``scale`` is not finite and positive, ``block_size < 1``, or
            ``implementation`` / ``positive_weighting`` is unknown.
        TypeError: an embedding is not a floating array, a group array is not an integer array,
            or ``block_size`` is not an int.

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
        >>> # Five captions per image: 8 images, 40 captions, no false negatives among them.
        >>> captions = l2_normalize(jax.random.normal(jax.random.key(2), (40, 16)))
        >>> image_ids = jax.numpy.arange(8)
        >>> grouped = sigmoid_loss(
        ...     image,
        ...     captions,
        ...     scale=10.0,
        ...     bias=-10.0,
        ...     image_groups=image_ids,
        ...     text_groups=jax.numpy.repeat(image_ids, 5),
        ... )
        >>> grouped.shape
        ()
    """
    check_inputs(
        image_emb,
        text_emb,
        scale=scale,
        bias=bias,
        image_groups=image_groups,
        text_groups=text_groups,
        positive_weighting=positive_weighting,
    )
    implementation = check_implementation(implementation)
    check_block_size(block_size)
    groups = None
    if image_groups is not None and text_groups is not None:
        groups = block_groups(
            as_group_ids(image_groups),
            as_group_ids(text_groups),
            positive_weighting=positive_weighting,
            dtype=compute_dtype(image_emb, text_emb),
        )
    if implementation in ("auto", "fused"):
        pairs = image_emb.shape[0] * text_emb.shape[0]
        dense_primal = implementation == "auto" and pairs <= AUTO_DENSE_MAX_BATCH**2
        return sigmoid_loss_fused(
            image_emb,
            text_emb,
            scale=scale,
            bias=bias,
            block_size=block_size,
            dense_primal=dense_primal,
            groups=groups,
        )
    if implementation == "chunked":
        return sigmoid_loss_chunked(
            image_emb, text_emb, scale=scale, bias=bias, block_size=block_size, groups=groups
        )
    return sigmoid_loss_reference(image_emb, text_emb, scale=scale, bias=bias, groups=groups)
