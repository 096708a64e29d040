"""What every torch loss shares: input checks, the compute dtype and scalar coercion.

One dtype policy for the whole backend (``docs/loss.md``, "Precision"): float16, bfloat16 and
float32 inputs are computed and summed in float32, float64 inputs in float64, in the dense,
chunked, fused and distributed losses alike.

Scalars (``scale``, ``bias``) are coerced by one of two helpers, named after what they do to
autograd: :func:`scalar_keeping_graph` for code differentiated by autograd, :func:`detached_scalar`
for code that computes its gradients itself (the fused tile loop, the distributed ring).
"""

from __future__ import annotations

import torch

from siglip_loss._validation import check_groups
from siglip_loss._validation import check_pair
from siglip_loss._validation import check_positive_weighting
from siglip_loss._validation import check_scalar

Scalar = float | torch.Tensor


def compute_dtype(*arrays: torch.Tensor) -> torch.dtype:
    """float64 when an input is float64, float32 otherwise (16-bit inputs accumulate in float32)."""
    return torch.float64 if any(array.dtype == torch.float64 for array in arrays) else torch.float32


def softplus_threshold(dtype: torch.dtype) -> float:
    """Where ``softplus(u) = u`` to within the dtype's rounding: ``log1p(exp(-u)) < eps * u``."""
    return 50.0 if dtype == torch.float64 else 20.0


def _check_0d(name: str, value: torch.Tensor) -> None:
    if value.dim() != 0:
        raise ValueError(f"{name}: expected a 0-d tensor, got shape {tuple(value.shape)}")


def scalar_keeping_graph(
    name: str, value: Scalar, *, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """``value`` as a 0-d ``dtype`` tensor on ``device``, still attached to its autograd graph.

    A tensor is cast (the cast's backward returns its gradient in the tensor's own dtype); a
    Python number becomes a new tensor that requires no grad.

    Raises:
        ValueError: ``value`` is a tensor that is not 0-d.
    """
    if isinstance(value, torch.Tensor):
        _check_0d(name, value)
        return value.to(dtype=dtype, device=device)
    return torch.tensor(float(value), dtype=dtype, device=device)


def detached_scalar(
    name: str, value: Scalar, *, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """``value`` as a 0-d ``dtype`` tensor on ``device``, detached from autograd.

    For code that computes the gradient of ``value`` itself and must not record a graph.

    Raises:
        ValueError: ``value`` is a tensor that is not 0-d.
    """
    if isinstance(value, torch.Tensor):
        _check_0d(name, value)
        return value.detach().to(dtype=dtype, device=device)
    return torch.tensor(float(value), dtype=dtype, device=device)


def scale_and_bias_keeping_graph(
    image_emb: torch.Tensor, text_emb: torch.Tensor, *, scale: Scalar, bias: Scalar
) -> tuple[torch.Tensor, torch.Tensor]:
    """``scale`` and ``bias`` in the inputs' compute dtype, on ``image_emb``'s device, attached to
    their graphs: the preamble of every loss that autograd differentiates."""
    dtype, device = compute_dtype(image_emb, text_emb), image_emb.device
    return (
        scalar_keeping_graph("scale", scale, dtype=dtype, device=device),
        scalar_keeping_graph("bias", bias, dtype=dtype, device=device),
    )


def detached_scale_and_bias(
    image_emb: torch.Tensor, text_emb: torch.Tensor, *, scale: Scalar, bias: Scalar
) -> tuple[torch.Tensor, torch.Tensor]:
    """``scale`` and ``bias`` in the inputs' compute dtype, on ``image_emb``'s device, detached:
    the preamble of code that computes its gradients itself."""
    dtype, device = compute_dtype(image_emb, text_emb), image_emb.device
    return (
        detached_scalar("scale", scale, dtype=dtype, device=device),
        detached_scalar("bias", bias, dtype=dtype, device=device),
    )


def check_inputs(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    *,
    scale: Scalar,
    bias: Scalar | None,
    image_groups: torch.Tensor | None = None,
    text_groups: torch.Tensor | None = None,
    positive_weighting: str = "uniform",
) -> tuple[int, int]:
    """Validate the arguments of a torch loss and return ``(batch, dim)`` (the image batch).

    Every public torch loss calls this first (and only its public entry point does), so all raise
    the same messages. ``bias=None`` skips the bias check (for the softmax losses). With group
    ids, the text batch may differ from the image batch.

    Raises:
        TypeError: an embedding is not a floating ``torch.Tensor``, a group array is not an
            integer ``torch.Tensor``, or a scalar is not a number or a 0-d floating tensor.
        ValueError: a shape is not ``[batch, dim]``, the batches differ without groups, the dims
            differ, a batch is 0, only one group array is given, a group array is not one id per
            row, ``positive_weighting`` is unknown, ``scale`` is not finite and positive, or
            ``bias`` is not finite.
    """
    grouped = image_groups is not None or text_groups is not None
    shape = check_pair(
        image_emb,
        text_emb,
        array_types=(torch.Tensor,),
        array_kind="a torch.Tensor",
        rectangular=grouped,
    )
    check_groups(
        image_groups,
        text_groups,
        image_batch=int(image_emb.shape[0]),
        text_batch=int(text_emb.shape[0]),
        array_types=(torch.Tensor,),
        array_kind="a torch.Tensor",
    )
    check_positive_weighting(positive_weighting)
    check_scalar("scale", scale, positive=True)
    if bias is not None:
        check_scalar("bias", bias)
    return shape
