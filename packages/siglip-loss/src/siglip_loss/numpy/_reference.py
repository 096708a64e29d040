"""The float64 numpy oracle: losses and their analytic gradients, written for clarity, not speed."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from siglip_loss._validation import PositiveWeighting
from siglip_loss._validation import check_groups
from siglip_loss._validation import check_pair
from siglip_loss._validation import check_positive_weighting
from siglip_loss._validation import check_scalar

Float64Array = npt.NDArray[np.float64]


class SigmoidLossAndGrads(NamedTuple):
    """The sigmoid loss and its gradients with respect to all four inputs (float64)."""

    loss: float
    grad_image_emb: Float64Array  # [batch, dim]
    grad_text_emb: Float64Array  # [text_batch, dim] (= [batch, dim] without groups)
    grad_scale: float
    grad_bias: float


class SoftmaxLossAndGrads(NamedTuple):
    """The softmax loss and its gradients with respect to its three inputs (float64)."""

    loss: float
    grad_image_emb: Float64Array  # [batch, dim]
    grad_text_emb: Float64Array  # [batch, dim]
    grad_scale: float


def _as_float64(array: Any) -> Float64Array:
    return np.asarray(array, dtype=np.float64)


def _softplus(x: Float64Array) -> Float64Array:
    # log(1 + exp(x)) without overflow for any x.
    return np.logaddexp(0.0, x)


def _sigmoid(x: Float64Array) -> Float64Array:
    # exp(-softplus(-x)): relative accuracy for every x and no overflow. The tanh form
    # 0.5 * (1 + tanh(x / 2)) cancels catastrophically for x << 0 (it gives 0 below x = -38).
    sigmoid: Float64Array = np.exp(-_softplus(-x))
    return sigmoid


def l2_normalize(x: Any, *, axis: int = -1, eps: float = 1e-8) -> npt.NDArray[Any]:
    """Divide ``x`` by its L2 norm along ``axis``; a norm below ``eps`` divides by ``eps``.

    ``x / max(||x||, eps)``: zero vectors stay zero instead of becoming NaN. Computed in float64
    (this is the oracle) and returned in the dtype of ``x``, like the torch and JAX versions.

    Args:
        x: floating array of any shape, e.g. ``[batch, dim]`` (or nested lists of floats).
        axis: the axis to normalise over.
        eps: the smallest norm divided by.

    Returns:
        Array of the shape and dtype of ``x``.

    Raises:
        TypeError: ``x`` is not floating point (an integer or bool array).

    Examples:
        >>> import numpy as np
        >>> from siglip_loss.numpy import l2_normalize
        >>> l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
        array([[0.6, 0.8],
               [0. , 0. ]])
    """
    array = np.asarray(x)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"x: expected a floating dtype, got {array.dtype}")
    work = array.astype(np.float64)
    norm = np.sqrt(np.sum(work * work, axis=axis, keepdims=True))
    normalized: npt.NDArray[Any] = (work / np.maximum(norm, eps)).astype(array.dtype)
    return normalized


def _check_and_cast(
    image_emb: Any, text_emb: Any, *, rectangular: bool = False
) -> tuple[Float64Array, Float64Array]:
    image = image_emb if hasattr(image_emb, "dtype") else np.asarray(image_emb)
    text = text_emb if hasattr(text_emb, "dtype") else np.asarray(text_emb)
    check_pair(image, text, rectangular=rectangular)
    return _as_float64(image), _as_float64(text)


def _as_groups(groups: Any) -> Any:
    # Lists become arrays (as the embeddings do); anything else is checked as given.
    return np.asarray(groups) if isinstance(groups, list | tuple) else groups


def positive_pairs_and_weights(
    image_groups: Any,
    text_groups: Any,
    *,
    positive_weighting: PositiveWeighting = "uniform",
) -> tuple[npt.NDArray[np.bool_], Float64Array]:
    r"""Which pairs are positives, and the weight of every pair, from group ids (dense, float64).

    Pair ``(i, j)`` is a positive iff ``image_groups[i] == text_groups[j]``. Every negative
    weighs 1; a positive weighs 1 (``"uniform"``) or
    :math:`\tfrac{1}{2}(1/k_i + 1/k'_j)` (``"inverse_count"``), with :math:`k_i` the positives
    of row ``i`` and :math:`k'_j` those of column ``j``.

    Args:
        image_groups: ``[batch]`` integer group id of each image row.
        text_groups: ``[text_batch]`` integer group id of each text row.
        positive_weighting: ``"uniform"`` or ``"inverse_count"``.

    Returns:
        ``(positive, weight)``: ``[batch, text_batch]`` bool and float64 matrices.

    Examples:
        >>> import numpy as np
        >>> from siglip_loss.numpy import positive_pairs_and_weights
        >>> positive, weight = positive_pairs_and_weights(
        ...     np.array([0, 1]), np.array([0, 0, 1]), positive_weighting="inverse_count"
        ... )
        >>> positive.astype(int)
        array([[1, 1, 0],
               [0, 0, 1]])
        >>> weight  # row 0 has 2 positives, each column 1: (1/2 + 1) / 2
        array([[0.75, 0.75, 1.  ],
               [1.  , 1.  , 1.  ]])
    """
    weighting = check_positive_weighting(positive_weighting)
    image_ids = np.asarray(image_groups)
    text_ids = np.asarray(text_groups)
    positive = image_ids[:, None] == text_ids[None, :]
    weight = np.ones(positive.shape, dtype=np.float64)
    if weighting == "inverse_count":
        row_count = positive.sum(axis=1, keepdims=True)  # k_i
        column_count = positive.sum(axis=0, keepdims=True)  # k'_j
        with np.errstate(divide="ignore"):  # a count of 0 only occurs off the positives
            pair_weight = 0.5 * (1.0 / row_count + 1.0 / column_count)
        weight = np.where(positive, pair_weight, 1.0)
    return positive, weight


def sigmoid_loss_and_grads(
    image_emb: Any,
    text_emb: Any,
    *,
    scale: float,
    bias: float,
    image_groups: Any = None,
    text_groups: Any = None,
    positive_weighting: PositiveWeighting = "uniform",
) -> SigmoidLossAndGrads:
    r"""The SigLIP sigmoid loss and its analytic gradients, in float64.

    .. math::
        u_{ij} = t \langle x_i, y_j \rangle + b, \quad
        L = \frac{1}{N} \sum_{i,j} w_{ij} \operatorname{softplus}(-z_{ij} u_{ij}),
        \quad z_{ij} = +1 \text{ for a positive pair, else } -1

    Without groups the positives are the diagonal (``z_ii = 1``) and every ``w_ij = 1``. With
    ``image_groups`` and ``text_groups``, pair ``(i, j)`` is a positive iff their group ids are
    equal, the text batch M may differ from the image batch N, and a row or column may have no
    positive; ``w_ij = 1`` except for ``positive_weighting="inverse_count"``, where a positive
    weighs :math:`\tfrac{1}{2}(1/k_i + 1/k'_j)` (``k_i`` positives in row ``i``, ``k'_j`` in
    column ``j``). The sum is divided by N, the number of images, in every case.

    With :math:`G = w \odot (\sigma(u) - [z = 1]) / N`: :math:`\partial L/\partial X = t\,G Y`,
    :math:`\partial L/\partial Y = t\,G^\top X`, :math:`\partial L/\partial t = \sum G \odot X Y^\top`,
    :math:`\partial L/\partial b = \sum G`.

    Args:
        image_emb: ``[batch, dim]`` image embeddings, used as given (normalise them first).
        text_emb: ``[batch, dim]`` text embeddings; row ``i`` is the caption of image ``i``
            (``[text_batch, dim]`` with groups).
        scale: the positive multiplier ``t = exp(log_scale)``.
        bias: the additive logit bias ``b``.
        image_groups: ``[batch]`` integer group id of each image, or None (the diagonal).
        text_groups: ``[text_batch]`` integer group id of each text, or None.
        positive_weighting: ``"uniform"`` or ``"inverse_count"``.

    Returns:
        :class:`SigmoidLossAndGrads` with the loss and gradients for all four inputs.

    Raises:
        ValueError: a shape is not ``[batch, dim]``, the batches differ without groups, a batch
            is 0, only one group array is given, a group array is not ``[batch]`` /
            ``[text_batch]``, ``scale`` is not finite and positive, ``bias`` is not finite, or
            ``positive_weighting`` is unknown.
        TypeError: an input is not floating point, or a group array is not integer.

    Reference: Zhai et al., "Sigmoid Loss for Language Image Pre-Training", arXiv:2303.15343.

    Examples:
        >>> import numpy as np
        >>> from siglip_loss.numpy import sigmoid_loss_and_grads
        >>> result = sigmoid_loss_and_grads(np.eye(2), np.eye(2), scale=10.0, bias=-10.0)
        >>> round(result.loss, 6)  # softplus(0) + softplus(-10), per row
        0.693193
        >>> # Two images with two captions each: 2 x 4 logits, 2 positives per row.
        >>> grouped = sigmoid_loss_and_grads(
        ...     np.eye(2),
        ...     np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]),
        ...     scale=10.0,
        ...     bias=-10.0,
        ...     image_groups=np.array([0, 1]),
        ...     text_groups=np.array([0, 0, 1, 1]),
        ... )
        >>> round(grouped.loss, 6), grouped.grad_text_emb.shape
        (1.386385, (4, 2))
    """
    image_groups, text_groups = _as_groups(image_groups), _as_groups(text_groups)
    grouped = image_groups is not None or text_groups is not None
    image, text = _check_and_cast(image_emb, text_emb, rectangular=grouped)
    check_groups(
        image_groups,
        text_groups,
        image_batch=image.shape[0],
        text_batch=text.shape[0],
    )
    weighting = check_positive_weighting(positive_weighting)
    check_scalar("scale", scale, positive=True)
    check_scalar("bias", bias)
    batch = image.shape[0]
    t, b = float(scale), float(bias)
    if grouped:
        positive, weight = positive_pairs_and_weights(
            image_groups, text_groups, positive_weighting=weighting
        )
        is_positive: Float64Array = positive.astype(np.float64)
    else:
        is_positive = np.eye(batch)
        weight = np.ones((batch, batch))
    cosine = image @ text.T  # [batch, text_batch]
    logits = t * cosine + b
    labels = 2.0 * is_positive - 1.0
    loss = float(np.sum(weight * _softplus(-labels * logits)) / batch)
    grad_logits = weight * (_sigmoid(logits) - is_positive) / batch
    return SigmoidLossAndGrads(
        loss=loss,
        grad_image_emb=t * grad_logits @ text,
        grad_text_emb=t * grad_logits.T @ image,
        grad_scale=float(np.sum(grad_logits * cosine)),
        grad_bias=float(np.sum(grad_logits)),
    )


def sigmoid_loss(
    image_emb: Any,
    text_emb: Any,
    *,
    scale: float,
    bias: float,
    image_groups: Any = None,
    text_groups: Any = None,
    positive_weighting: PositiveWeighting = "uniform",
) -> float:
    r"""The SigLIP sigmoid loss in float64: :math:`\frac{1}{N}\sum_{i,j} w_{ij}\operatorname{softplus}(-z_{ij}(t\langle x_i,y_j\rangle+b))`.

    Divided by the number of images N (the number of positives without groups), not by N².
    Without groups the positives are the diagonal; with ``image_groups``/``text_groups`` pair
    ``(i, j)`` is a positive iff their ids are equal (see :func:`sigmoid_loss_and_grads`).

    Args:
        image_emb: ``[batch, dim]`` image embeddings, used as given.
        text_emb: ``[batch, dim]`` text embeddings; row ``i`` pairs with image row ``i``
            (``[text_batch, dim]`` with groups).
        scale: the positive multiplier ``t = exp(log_scale)``.
        bias: the additive logit bias ``b``.
        image_groups: ``[batch]`` integer group id of each image, or None.
        text_groups: ``[text_batch]`` integer group id of each text, or None.
        positive_weighting: ``"uniform"`` or ``"inverse_count"``.

    Returns:
        The loss as a Python float.

    Examples:
        >>> import numpy as np
        >>> from siglip_loss.numpy import sigmoid_loss
        >>> # zero similarity: softplus(10) + 3 * softplus(-10), per row
        >>> round(sigmoid_loss(np.zeros((4, 3)), np.zeros((4, 3)), scale=10.0, bias=-10.0), 4)
        10.0002
    """
    return sigmoid_loss_and_grads(
        image_emb,
        text_emb,
        scale=scale,
        bias=bias,
        image_groups=image_groups,
        text_groups=text_groups,
        positive_weighting=positive_weighting,
    ).loss


def softmax_loss_and_grads(image_emb: Any, text_emb: Any, *, scale: float) -> SoftmaxLossAndGrads:
    r"""CLIP's symmetric InfoNCE loss and its analytic gradients, in float64.

    .. math::
        u = t X Y^\top, \quad
        L = \tfrac{1}{2}\big(\operatorname{CE}(u, I) + \operatorname{CE}(u^\top, I)\big)

    each cross-entropy averaged over the N rows. With :math:`P` the softmax of :math:`u` over each
    row, :math:`Q` over each column, and :math:`G = (P + Q - 2I) / (2N)`:
    :math:`\partial L/\partial X = t\,G Y`, :math:`\partial L/\partial Y = t\,G^\top X`,
    :math:`\partial L/\partial t = \sum G \odot X Y^\top`.

    Args:
        image_emb: ``[batch, dim]`` image embeddings.
        text_emb: ``[batch, dim]`` text embeddings; row ``i`` is the caption of image ``i``.
        scale: the positive multiplier ``t = exp(log_scale)`` (CLIP initialises it to 1/0.07).

    Returns:
        :class:`SoftmaxLossAndGrads` with the loss and gradients for all three inputs.

    Raises:
        ValueError: a shape is not ``[batch, dim]``, the shapes differ, batch is 0, or ``scale``
            is not finite and positive.
        TypeError: an input is not floating point.

    Reference: Radford et al., "Learning Transferable Visual Models From Natural Language
    Supervision", arXiv:2103.00020.

    Examples:
        >>> import numpy as np
        >>> from siglip_loss.numpy import softmax_loss_and_grads
        >>> result = softmax_loss_and_grads(np.zeros((4, 3)), np.zeros((4, 3)), scale=10.0)
        >>> round(result.loss, 6)  # log(4): every caption equally likely
        1.386294
        >>> float(abs(result.grad_image_emb).max())  # zero embeddings: no direction to move
        0.0
    """
    image, text = _check_and_cast(image_emb, text_emb)
    check_scalar("scale", scale, positive=True)
    batch = image.shape[0]
    t = float(scale)
    cosine = image @ text.T  # [batch, batch]
    logits = t * cosine
    row_normalizer = np.logaddexp.reduce(logits, axis=1, keepdims=True)
    column_normalizer = np.logaddexp.reduce(logits, axis=0, keepdims=True)
    loss = 0.5 * (
        float(np.mean(row_normalizer[:, 0] - np.diag(logits)))
        + float(np.mean(column_normalizer[0, :] - np.diag(logits)))
    )
    row_softmax = np.exp(logits - row_normalizer)
    column_softmax = np.exp(logits - column_normalizer)
    grad_logits = (row_softmax + column_softmax - 2.0 * np.eye(batch)) / (2.0 * batch)
    return SoftmaxLossAndGrads(
        loss=loss,
        grad_image_emb=t * grad_logits @ text,
        grad_text_emb=t * grad_logits.T @ image,
        grad_scale=float(np.sum(grad_logits * cosine)),
    )


def softmax_loss(image_emb: Any, text_emb: Any, *, scale: float) -> float:
    r"""CLIP's symmetric InfoNCE loss in float64, the baseline.

    .. math::
        L = \tfrac{1}{2}\big(\operatorname{CE}(tXY^\top, I) + \operatorname{CE}(tYX^\top, I)\big)

    each cross-entropy averaged over the N rows. The value of :func:`softmax_loss_and_grads`.

    Args:
        image_emb: ``[batch, dim]`` image embeddings.
        text_emb: ``[batch, dim]`` text embeddings.
        scale: the positive multiplier ``t = exp(log_scale)`` (CLIP initialises it to 1/0.07).

    Returns:
        The loss as a Python float.

    Raises:
        ValueError: a shape is not ``[batch, dim]``, the shapes differ, batch is 0, or ``scale``
            is not finite and positive.
        TypeError: an input is not floating point.

    Examples:
        >>> import numpy as np
        >>> from siglip_loss.numpy import softmax_loss
        >>> round(softmax_loss(np.zeros((4, 3)), np.zeros((4, 3)), scale=10.0), 6)  # log(4)
        1.386294
    """
    return softmax_loss_and_grads(image_emb, text_emb, scale=scale).loss
