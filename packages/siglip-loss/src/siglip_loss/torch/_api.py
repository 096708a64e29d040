"""The public PyTorch sigmoid loss."""

from __future__ import annotations

import torch

from siglip_loss.torch._reference import Scalar
from siglip_loss.torch._reference import sigmoid_loss_reference


def sigmoid_loss(
    image_emb: torch.Tensor, text_emb: torch.Tensor, *, scale: Scalar, bias: Scalar
) -> torch.Tensor:
    r"""The SigLIP sigmoid loss.

    .. math::
        L = -\frac{1}{N} \sum_{i,j} \log \sigma\big(z_{ij} (t \langle x_i, y_j \rangle + b)\big),
        \quad z_{ii} = 1,\ z_{ij} = -1 \ (i \ne j)

    Divided by the batch size N (the number of positive pairs), not N². Differentiable in all four
    inputs. Inputs may be float16/bfloat16/float32 (accumulated in float32) or float64.

    Args:
        image_emb: ``[batch, dim]`` image embeddings, used as given (normalise them first, e.g.
            with :func:`l2_normalize`).
        text_emb: ``[batch, dim]`` text embeddings; row ``i`` is the caption of image ``i``.
        scale: the positive multiplier ``t = exp(log_scale)``, not its log; Python float or 0-d tensor.
        bias: the logit bias ``b``; Python float or 0-d tensor.

    Returns:
        0-d float32 tensor (float64 for float64 inputs).

    Raises:
        ValueError: a shape is not ``[batch, dim]``, the shapes differ, batch is 0, or ``scale``
            is not finite and positive.
        TypeError: an input is not a floating tensor.

    Reference: Zhai et al., arXiv:2303.15343, eq. 1.

    Example:
        >>> image = l2_normalize(torch.randn(8, 16))
        >>> text = l2_normalize(torch.randn(8, 16))
        >>> loss = sigmoid_loss(image, text, scale=10.0, bias=-10.0)
        >>> loss.shape
        torch.Size([])
    """
    return sigmoid_loss_reference(image_emb, text_emb, scale=scale, bias=bias)
