"""Compare any sigmoid-loss implementation with the float64 numpy oracle, value and gradients.

Tolerances are not fixed numbers: they are a first-order bound on the rounding error of a loss
computed at the precision of its inputs. Each logit ``u_ij = t <x_i, y_j> + b`` may be off by
``delta_ij = eps (2 + sqrt(D)) (t sum_k |x_ik y_jk| + |b|)`` (``eps`` the unit roundoff of the
input dtype); that error is propagated through the loss and its gradients with the oracle's
float64 values. Sums are assumed accumulated in float32 (float64 for float64 inputs), in any
order: their rounding grows like N over the N^2 pairs (8 N allowed). The equally valid form
``softplus(-u_ii) = softplus(u_ii) - u_ii`` on the diagonal (open_clip) costs about ``eps |u_ii|``
per positive pair and is allowed. A correct float32 implementation sits inside the bound; a wrong
normalisation, a lost gradient, a misplaced positive, a naive ``log(sigmoid(x))`` or a bfloat16
accumulator sits far outside it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import numpy as np

from siglip_loss._validation import check_positive_weighting
from siglip_loss.numpy import positive_pairs_and_weights
from siglip_loss.numpy import sigmoid_loss_and_grads

# Unit roundoff (half the machine epsilon) of each floating dtype.
UNIT_ROUNDOFF = {
    "float64": 2.0**-53,
    "float32": 2.0**-24,
    "bfloat16": 2.0**-8,
    "float16": 2.0**-11,
}
# The smallest normal number: sigmoids of very negative logits underflow to about this.
SMALLEST_NORMAL = {
    "float64": 2.2250738585072014e-308,
    "float32": 1.1754943508222875e-38,
    "bfloat16": 1.1754943508222875e-38,
    "float16": 6.103515625e-05,
}


class _Computed(NamedTuple):
    loss: float
    grads: dict[str, np.ndarray] | None  # image_emb, text_emb, scale, bias as float64


def _dtype_name(array: Any) -> str:
    return str(array.dtype).removeprefix("torch.")


def _backend_of(array: Any) -> str:
    module = type(array).__module__
    if module.startswith("torch") and "torch" in sys.modules:
        import torch

        if isinstance(array, torch.Tensor):
            return "torch"
    if "jax" in sys.modules:
        import jax

        if isinstance(array, jax.Array):
            return "jax"
    if isinstance(array, np.ndarray):
        return "numpy"
    raise TypeError(
        f"image_emb: expected a numpy.ndarray, torch.Tensor or jax.Array, got {type(array).__name__}"
    )


def _to_float64(array: Any) -> np.ndarray:
    if type(array).__module__.startswith("torch"):
        import torch

        return np.asarray(array.detach().to(device="cpu", dtype=torch.float64).numpy())
    return np.asarray(array).astype(np.float64)


def _as_float(name: str, value: Any) -> float:
    if hasattr(value, "shape") and tuple(value.shape) != ():
        raise ValueError(f"{name}: expected a scalar, got shape {tuple(value.shape)}")
    if hasattr(value, "detach"):
        value = value.detach()
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name}: expected a finite value, got {number}")
    return number


def _run_torch(
    loss_fn: Callable[..., Any],
    image_emb: Any,
    text_emb: Any,
    scale: float,
    bias: float,
    check_grads: bool,
    options: dict[str, Any],
) -> tuple[_Computed, float, float]:
    import torch

    float64_inputs = torch.float64 in (image_emb.dtype, text_emb.dtype)
    param_dtype = torch.float64 if float64_inputs else torch.float32
    image = image_emb.detach().clone().requires_grad_(check_grads)
    text = text_emb.detach().clone().requires_grad_(check_grads)
    scale_t = torch.tensor(scale, dtype=param_dtype, device=image.device, requires_grad=check_grads)
    bias_t = torch.tensor(bias, dtype=param_dtype, device=image.device, requires_grad=check_grads)
    loss = loss_fn(image, text, scale=scale_t, bias=bias_t, **options)
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise AssertionError(f"loss_fn: expected a 0-d torch.Tensor, got {_describe(loss)}")
    grads = None
    if check_grads:
        if not loss.requires_grad:
            raise AssertionError(
                "loss_fn: the loss does not require grad, so it is not differentiable in its "
                "inputs; pass check_grads=False to compare values only"
            )
        names = ("image_emb", "text_emb", "scale", "bias")
        raw = torch.autograd.grad(loss, [image, text, scale_t, bias_t], allow_unused=True)
        grads = {}
        for name, grad in zip(names, raw, strict=True):
            if grad is None:
                raise AssertionError(
                    f"gradient of {name}: loss_fn does not differentiate through {name} "
                    "(autograd returned None)"
                )
            grads[name] = _to_float64(grad)
    return (
        _Computed(float(loss.detach().to(torch.float64)), grads),
        float(scale_t.detach().to(torch.float64)),
        float(bias_t.detach().to(torch.float64)),
    )


def _run_jax(
    loss_fn: Callable[..., Any],
    image_emb: Any,
    text_emb: Any,
    scale: float,
    bias: float,
    check_grads: bool,
    jit: bool,
    options: dict[str, Any],
) -> tuple[_Computed, float, float]:
    import jax
    import jax.numpy as jnp

    float64_inputs = np.float64 in (np.dtype(image_emb.dtype), np.dtype(text_emb.dtype))
    param_dtype = jnp.float64 if float64_inputs else jnp.float32
    scale_a = jnp.asarray(scale, dtype=param_dtype)
    bias_a = jnp.asarray(bias, dtype=param_dtype)

    def call(image: Any, text: Any, scale_value: Any, bias_value: Any) -> Any:
        loss = loss_fn(image, text, scale=scale_value, bias=bias_value, **options)
        if not isinstance(loss, jax.Array) or loss.ndim != 0:
            raise AssertionError(f"loss_fn: expected a 0-d jax.Array, got {_describe(loss)}")
        return loss

    compute = jax.value_and_grad(call, argnums=(0, 1, 2, 3)) if check_grads else call
    if jit:
        compute = jax.jit(compute)
    result = compute(image_emb, text_emb, scale_a, bias_a)
    grads = None
    if check_grads:
        loss, raw = result
        names = ("image_emb", "text_emb", "scale", "bias")
        grads = {name: _to_float64(grad) for name, grad in zip(names, raw, strict=True)}
    else:
        loss = result
    return (
        _Computed(float(_to_float64(loss)), grads),
        float(_to_float64(scale_a)),
        float(_to_float64(bias_a)),
    )


def _group_ids(
    image_groups: Any, text_groups: Any, image_emb: Any, text_emb: Any
) -> tuple[np.ndarray, np.ndarray]:
    """The group ids as int64 numpy arrays for the oracle, checked like the losses check them."""
    from siglip_loss._validation import check_groups

    converted = []
    for groups in (image_groups, text_groups):
        if groups is not None and type(groups).__module__.startswith("torch"):
            groups = groups.detach().cpu().numpy()
        if isinstance(groups, list | tuple):
            groups = np.asarray(groups)
        if groups is not None and not isinstance(groups, np.ndarray) and hasattr(groups, "shape"):
            groups = np.asarray(groups)  # a JAX array
        converted.append(groups)
    check_groups(
        converted[0],
        converted[1],
        image_batch=int(image_emb.shape[0]),
        text_batch=int(text_emb.shape[0]),
    )
    return converted[0].astype(np.int64), converted[1].astype(np.int64)


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__} with shape {tuple(shape)}" if shape is not None else repr(value)


def _tolerances(
    image: np.ndarray,
    text: np.ndarray,
    scale: float,
    bias: float,
    *,
    epsilon: float,
    accumulation_epsilon: float,
    smallest_normal: float,
    factor: float,
    groups: dict[str, Any],
) -> dict[str, Any]:
    """First-order rounding-error bounds for the loss and its four gradients (see module doc)."""
    batch, dim = image.shape
    reference = sigmoid_loss_and_grads(image, text, scale=scale, bias=bias, **groups)
    magnitude = scale * (np.abs(image) @ np.abs(text).T) + abs(bias)  # [batch, text_batch]
    logit_error = epsilon * (2.0 + math.sqrt(dim)) * magnitude
    logits = scale * (image @ text.T) + bias
    sigmoid = np.exp(-np.logaddexp(0.0, -logits))
    if groups:
        positive_pairs, weight = positive_pairs_and_weights(
            groups["image_groups"],
            groups["text_groups"],
            positive_weighting=groups["positive_weighting"],
        )
        positive = positive_pairs.astype(np.float64)
    else:
        positive, weight = np.eye(batch), np.ones((batch, batch))
    grad_logits = weight * np.abs(sigmoid - positive) / batch  # |dL/du_ij| = |G_ij|
    grad_logits_error = (
        weight
        * (
            sigmoid * (1.0 - sigmoid) * logit_error
            + 2.0 * epsilon * (sigmoid + positive)
            + smallest_normal
        )
        / batch
    )
    # Sums over the N M pairs in any order: a random walk of N M roundings grows like sqrt(N M);
    # tile by tile sequential accumulation (small terms into a large sum) rounds with a bias,
    # hence 8 sqrt(N M) (8 N for a square batch). Sums over one axis (the gradient matmuls) grow
    # like the square root of its length.
    pairs = batch * text.shape[0]
    pair_sum_rounding = accumulation_epsilon * (4.0 + 8.0 * math.sqrt(pairs))
    row_sum_rounding = accumulation_epsilon * (2.0 + 2.0 * math.sqrt(max(batch, text.shape[0])))
    gathered = grad_logits_error + row_sum_rounding * grad_logits
    # softplus(-u) = softplus(u) - u on the positives (open_clip's form) loses eps |u| there.
    diagonal_cancellation = float(np.sum(weight * positive * np.abs(logits))) / batch
    cosine_magnitude = np.abs(image) @ np.abs(text).T
    return {
        "reference": reference,
        "loss": factor
        * (
            np.sum(grad_logits * logit_error)
            + (epsilon + pair_sum_rounding) * (abs(reference.loss) + diagonal_cancellation)
            + smallest_normal
        ),
        "image_emb": factor
        * (scale * gathered @ np.abs(text) + epsilon * np.abs(reference.grad_image_emb)),
        "text_emb": factor
        * (scale * gathered.T @ np.abs(image) + epsilon * np.abs(reference.grad_text_emb)),
        "scale": factor
        * (
            np.sum(grad_logits_error * np.abs(image @ text.T))
            + (epsilon * (2.0 + math.sqrt(dim)) + pair_sum_rounding)
            * np.sum(grad_logits * cosine_magnitude)
            + smallest_normal
        ),
        "bias": factor
        * (
            np.sum(grad_logits_error)
            + (epsilon + pair_sum_rounding) * (np.sum(grad_logits) + 1.0)
            + smallest_normal
        ),
    }


def _check_close(what: str, got: Any, want: Any, tolerance: Any, context: str) -> None:
    got_array = np.asarray(got, dtype=np.float64)
    want_array = np.asarray(want, dtype=np.float64)
    if got_array.shape != want_array.shape:
        raise AssertionError(
            f"{what}: expected shape {want_array.shape}, got {got_array.shape} ({context})"
        )
    if not np.all(np.isfinite(got_array)):
        raise AssertionError(f"{what}: expected finite values, got {got_array} ({context})")
    difference = np.abs(got_array - want_array)
    excess = difference - np.asarray(tolerance)
    if np.any(excess > 0):
        index = np.unravel_index(int(np.argmax(excess)), excess.shape) if excess.ndim else ()
        where = f" at index {tuple(int(i) for i in index)}" if index else ""
        raise AssertionError(
            f"{what}{where}: got {float(got_array[index])!r}, "
            f"float64 oracle {float(want_array[index])!r}, "
            f"|difference| {difference[index]:.3e} > tolerance "
            f"{np.broadcast_to(tolerance, excess.shape)[index]:.3e} ({context})"
        )


def assert_matches_reference(
    loss_fn: Callable[..., Any],
    image_emb: Any,
    text_emb: Any,
    *,
    scale: Any,
    bias: Any,
    image_groups: Any = None,
    text_groups: Any = None,
    positive_weighting: str = "uniform",
    check_grads: bool | None = None,
    jit: bool = True,
    epsilon: float | None = None,
    tolerance_factor: float = 4.0,
) -> None:
    r"""Assert that ``loss_fn`` computes the SigLIP sigmoid loss, checked against the float64 oracle.

    Calls ``loss_fn(image_emb, text_emb, scale=scale, bias=bias)`` and compares the value with
    :func:`siglip_loss.numpy.sigmoid_loss_and_grads` evaluated in float64 on exactly the same
    (possibly low-precision) inputs:

    .. math::
        L = \frac{1}{N} \sum_{i,j} w_{ij} \operatorname{softplus}(-z_{ij} (t \langle x_i, y_j \rangle + b))

    With ``image_groups`` and ``text_groups`` (the multi-positive loss: pair ``(i, j)`` is a
    positive iff the ids are equal; ``text_emb`` may have another number of rows) it calls
    ``loss_fn(image_emb, text_emb, scale=..., bias=..., image_groups=..., text_groups=...,
    positive_weighting=...)`` with the ids exactly as given, and the oracle uses the same ids.

    For torch tensors and JAX arrays it also compares all four gradients (``image_emb``,
    ``text_emb``, ``scale``, ``bias``), obtained with ``torch.autograd`` or ``jax.grad``;
    ``scale`` and ``bias`` are passed as 0-d float32 (float64 for float64 inputs) tensors/arrays
    so that they can be differentiated. Numpy inputs compare the value only.

    Tolerances follow the dtype: a first-order bound on the rounding error of a loss computed at
    the precision of its inputs (unit roundoff ``epsilon``), propagated through the loss with the
    oracle's values, times ``tolerance_factor``. A float32 implementation is held to about 1e-6
    relative; bfloat16 to the few percent that bfloat16 logits really cost.

    Args:
        loss_fn: the implementation under test, called as
            ``loss_fn(image_emb, text_emb, *, scale=..., bias=...)``; it must return a 0-d array.
        image_emb: ``[batch, dim]`` numpy array, torch tensor or JAX array (any float dtype).
        text_emb: ``[batch, dim]``, same backend.
        scale: the positive multiplier ``t`` (Python float or 0-d array).
        bias: the logit bias ``b`` (Python float or 0-d array).
        image_groups: ``[batch]`` integer group ids (any array type), or None: the diagonal.
        text_groups: ``[text_batch]`` integer group ids, or None.
        positive_weighting: ``"uniform"`` or ``"inverse_count"``, passed on with the groups.
        check_grads: compare the four gradients; default True for torch/JAX, False for numpy.
        jit: JAX only: run ``loss_fn`` (and its gradients) under ``jax.jit``, one compilation per
            shape instead of one per operation; pass False for a loss that cannot be traced.
        epsilon: unit roundoff to assume; default from the least precise input dtype
            (float32: 2**-24, bfloat16: 2**-8, float16: 2**-11, float64: 2**-53). Pass ``2**-11``
            when torch runs float32 matmuls in TF32 on a GPU.
        tolerance_factor: multiplies every bound.

    Raises:
        AssertionError: the value or a gradient differs from the oracle by more than its
            tolerance, is not finite, has the wrong shape, or is missing (not differentiable).
        TypeError: an unknown array type, arrays of two backends, a non-floating dtype, or
            non-integer group ids.
        ValueError: a non-2-d embedding, a non-scalar or non-finite ``scale``/``bias``,
            ``tolerance_factor <= 0``, ``check_grads=True`` with numpy arrays, only one group
            array, group arrays that do not have one id per row, or an unknown
            ``positive_weighting``.

    Examples:
        >>> import numpy as np
        >>> from siglip_loss.testing import assert_matches_reference
        >>> def my_loss(image_emb, text_emb, *, scale, bias):
        ...     logits = scale * image_emb @ text_emb.T + bias
        ...     labels = 2 * np.eye(len(logits)) - 1
        ...     return np.logaddexp(0, -labels * logits).sum() / len(logits)
        >>> image = np.eye(3, dtype=np.float32)
        >>> assert_matches_reference(my_loss, image, image, scale=10.0, bias=-10.0)
    """
    backend = _backend_of(image_emb)
    if _backend_of(text_emb) != backend:
        raise TypeError(
            f"text_emb: expected the same array type as image_emb ({type(image_emb).__name__}), "
            f"got {type(text_emb).__name__}"
        )
    for name, array in (("image_emb", image_emb), ("text_emb", text_emb)):
        if _dtype_name(array) not in UNIT_ROUNDOFF:
            raise TypeError(
                f"{name}: expected a floating dtype ({', '.join(UNIT_ROUNDOFF)}), got {_dtype_name(array)}"
            )
        if len(array.shape) != 2:
            raise ValueError(f"{name}: expected shape [batch, dim], got {tuple(array.shape)}")
    options: dict[str, Any] = {}
    oracle_groups: dict[str, Any] = {}
    if image_groups is not None or text_groups is not None:
        weighting = check_positive_weighting(positive_weighting)
        image_ids, text_ids = _group_ids(image_groups, text_groups, image_emb, text_emb)
        options = {
            "image_groups": image_groups,
            "text_groups": text_groups,
            "positive_weighting": weighting,
        }
        oracle_groups = {
            "image_groups": image_ids,
            "text_groups": text_ids,
            "positive_weighting": weighting,
        }
    elif image_emb.shape[0] != text_emb.shape[0]:
        raise ValueError(
            f"text_emb: expected batch {image_emb.shape[0]} to match image_emb without group ids, "
            f"got shape {tuple(text_emb.shape)}"
        )
    if not tolerance_factor > 0:
        raise ValueError(f"tolerance_factor: expected > 0, got {tolerance_factor}")
    if check_grads is None:
        check_grads = backend != "numpy"
    if check_grads and backend == "numpy":
        raise ValueError("check_grads: numpy arrays have no autodiff; pass check_grads=False")
    scale_value, bias_value = _as_float("scale", scale), _as_float("bias", bias)

    if backend == "torch":
        computed, scale_value, bias_value = _run_torch(
            loss_fn, image_emb, text_emb, scale_value, bias_value, check_grads, options
        )
    elif backend == "jax":
        computed, scale_value, bias_value = _run_jax(
            loss_fn, image_emb, text_emb, scale_value, bias_value, check_grads, jit, options
        )
    else:
        value = loss_fn(image_emb, text_emb, scale=scale_value, bias=bias_value, **options)
        if np.ndim(value) != 0:
            raise AssertionError(f"loss_fn: expected a scalar, got {_describe(value)}")
        computed = _Computed(float(value), None)

    dtypes = (_dtype_name(image_emb), _dtype_name(text_emb))
    least_precise = max(dtypes, key=lambda name: UNIT_ROUNDOFF[name])
    unit_roundoff = UNIT_ROUNDOFF[least_precise] if epsilon is None else float(epsilon)
    image, text = _to_float64(image_emb), _to_float64(text_emb)
    bounds = _tolerances(
        image,
        text,
        scale_value,
        bias_value,
        epsilon=unit_roundoff,
        # Sums are accumulated in float32 (float64 for float64 inputs) whatever the input dtype.
        accumulation_epsilon=UNIT_ROUNDOFF["float64" if least_precise == "float64" else "float32"],
        smallest_normal=SMALLEST_NORMAL[least_precise],
        factor=tolerance_factor,
        groups=oracle_groups,
    )
    reference = bounds["reference"]
    context = (
        f"{backend} {least_precise}, batch {image.shape[0]}, dim {image.shape[1]}, "
        f"scale {scale_value!r}, bias {bias_value!r}"
    )
    if oracle_groups:
        context += (
            f", {text.shape[0]} texts, image_groups {oracle_groups['image_groups'].tolist()}, "
            f"text_groups {oracle_groups['text_groups'].tolist()}, "
            f"positive_weighting {oracle_groups['positive_weighting']!r}"
        )
    _check_close("loss", computed.loss, reference.loss, bounds["loss"], context)
    if computed.grads is None:
        return
    expected = {
        "image_emb": reference.grad_image_emb,
        "text_emb": reference.grad_text_emb,
        "scale": reference.grad_scale,
        "bias": reference.grad_bias,
    }
    for name, want in expected.items():
        _check_close(f"gradient of {name}", computed.grads[name], want, bounds[name], context)
