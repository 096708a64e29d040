"""The public PyTorch sigmoid loss: one function, four implementations behind ``implementation=``."""

from __future__ import annotations

import torch

from siglip_loss._validation import AUTO_DENSE_MAX_BATCH
from siglip_loss._validation import Implementation
from siglip_loss._validation import check_implementation
from siglip_loss.torch._chunked import sigmoid_loss_chunked
from siglip_loss.torch._common import Scalar
from siglip_loss.torch._common import check_inputs
from siglip_loss.torch._fused import check_block_size
from siglip_loss.torch._fused import sigmoid_loss_fused
from siglip_loss.torch._reference import sigmoid_loss_reference


def sigmoid_loss(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    *,
    scale: Scalar,
    bias: Scalar,
    implementation: Implementation = "auto",
    block_size: int | None = None,
) -> torch.Tensor:
    r"""The SigLIP sigmoid loss.

    .. math::
        L = -\frac{1}{N} \sum_{i,j} \log \sigma\big(z_{ij} (t \langle x_i, y_j \rangle + b)\big),
        \quad z_{ii} = 1,\ z_{ij} = -1 \ (i \ne j)

    Divided by the batch size N (the number of positive pairs), not N². Differentiable in all four
    inputs. Inputs may be float16/bfloat16/float32 (accumulated in float32, gradients returned in
    the input dtype) or float64 (computed in float64).

    Implementations (all give the same value and gradients up to float32 rounding):

    - ``"fused"``: tiles of ``block_size x block_size``; the loss and the gradients of the inputs
      that require them are computed in one pass (three matmuls per tile), backward only scales
      them. Memory linear in N. No double backward; one backward per forward.
    - ``"chunked"``: the same tiles with ordinary autograd; each row block is recomputed in
      backward (activation checkpointing), so memory is O(block_size x N). Supports double
      backward.
    - ``"reference"``: the dense ``[N, N]`` logits matrix and autograd (memory O(N²)).
    - ``"auto"`` (default): ``"fused"`` when autograd will need a gradient (grad mode on and an
      input requires grad) or when ``N > 4096``; ``"reference"`` otherwise.

    Args:
        image_emb: ``[batch, dim]`` image embeddings, used as given (normalise them first, e.g.
            with :func:`l2_normalize`).
        text_emb: ``[batch, dim]`` text embeddings; row ``i`` is the caption of image ``i``.
        scale: the positive multiplier ``t = exp(log_scale)``, not its log; Python float or 0-d tensor.
        bias: the logit bias ``b``; Python float or 0-d tensor.
        implementation: ``"auto"``, ``"fused"``, ``"chunked"`` or ``"reference"``.
        block_size: tile edge for ``"fused"``/``"chunked"`` (default 2048; larger tiles run the
            matmuls closer to peak, smaller ones use less memory). Any value works for any N.

    Returns:
        0-d float32 tensor (float64 for float64 inputs).

    Raises:
        ValueError: a shape is not ``[batch, dim]``, the shapes differ, batch is 0, ``scale``
            is not finite and positive, ``block_size < 1``, or ``implementation`` is unknown.
        TypeError: an input is not a floating tensor, or ``block_size`` is not an int.

    Reference: Zhai et al., arXiv:2303.15343, eq. 1.

    Examples:
        >>> import torch
        >>> from siglip_loss.torch import l2_normalize, sigmoid_loss
        >>> _ = torch.manual_seed(0)
        >>> image = l2_normalize(torch.randn(8, 16))
        >>> text = l2_normalize(torch.randn(8, 16))
        >>> loss = sigmoid_loss(image, text, scale=10.0, bias=-10.0)
        >>> loss.shape
        torch.Size([])
        >>> fused = sigmoid_loss(image, text, scale=10.0, bias=-10.0, implementation="fused")
        >>> torch.allclose(loss, fused)
        True
    """
    check_inputs(image_emb, text_emb, scale=scale, bias=bias)
    implementation = check_implementation(implementation)
    check_block_size(block_size)
    if implementation == "auto":
        implementation = _choose(image_emb, text_emb, scale, bias)
    if implementation == "fused":
        fused: torch.Tensor = sigmoid_loss_fused(
            image_emb, text_emb, scale=scale, bias=bias, block_size=block_size
        )
        return fused
    if implementation == "chunked":
        return sigmoid_loss_chunked(
            image_emb, text_emb, scale=scale, bias=bias, block_size=block_size
        )
    return sigmoid_loss_reference(image_emb, text_emb, scale=scale, bias=bias)


def _choose(
    image_emb: torch.Tensor, text_emb: torch.Tensor, scale: Scalar, bias: Scalar
) -> Implementation:
    needs_grad = torch.is_grad_enabled() and any(
        isinstance(value, torch.Tensor) and value.requires_grad
        for value in (image_emb, text_emb, scale, bias)
    )
    if needs_grad or image_emb.shape[0] > AUTO_DENSE_MAX_BATCH:
        return "fused"
    return "reference"
