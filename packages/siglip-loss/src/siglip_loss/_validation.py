"""Input checks shared by every backend.

They read only ``.shape``/``.ndim``/``.dtype`` (static under ``jax.jit`` and ``torch.compile``) and
never import a framework, so the numpy, torch and JAX adapters raise the same messages.
"""

from __future__ import annotations

import math
import numbers
from typing import Any
from typing import Literal

FLOATING_DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64")
INTEGER_DTYPE_NAMES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")

PositiveWeighting = Literal["uniform", "inverse_count"]
POSITIVE_WEIGHTINGS: tuple[PositiveWeighting, ...] = ("uniform", "inverse_count")
"""The values of ``sigmoid_loss(..., positive_weighting=)``, the same in every backend."""

Implementation = Literal["auto", "reference", "chunked", "fused"]
IMPLEMENTATIONS: tuple[Implementation, ...] = ("auto", "reference", "chunked", "fused")
"""The values of ``sigmoid_loss(..., implementation=)``, the same in torch and JAX."""

AUTO_DENSE_MAX_BATCH = 4096
"""Without gradients, ``implementation="auto"`` builds the dense ``[batch, batch]`` logits up to
this batch (64 MiB in float32) and tiles above it, in torch and JAX alike."""


def dtype_name(array: Any) -> str:
    """``'float32'`` for numpy, torch (``torch.float32``) and JAX dtypes alike."""
    return str(array.dtype).removeprefix("torch.")


def check_pair(
    image_emb: Any,
    text_emb: Any,
    *,
    array_types: tuple[type, ...] = (),
    array_kind: str = "an array",
    rectangular: bool = False,
) -> tuple[int, int]:
    """Check a pair of embedding matrices and return ``(batch, dim)`` (``batch`` of the images).

    Args:
        image_emb: ``[batch, dim]`` image embeddings.
        text_emb: ``[batch, dim]`` text embeddings (``[text_batch, dim]`` when ``rectangular``).
        array_types: when given, the accepted array classes (e.g. ``(torch.Tensor,)``).
        array_kind: how error messages call the expected array (e.g. ``"a torch.Tensor"``).
        rectangular: allow a text batch that differs from the image batch (the loss was given
            group ids, which say where the positives are).

    Raises:
        TypeError: an argument is not an array (of ``array_types``) or not floating point.
        ValueError: an argument is not ``[batch, dim]``, the two batches differ (unless
            ``rectangular``), the dims differ, or a batch is 0.
    """
    for name, array in (("image_emb", image_emb), ("text_emb", text_emb)):
        wrong_class = bool(array_types) and not isinstance(array, array_types)
        if wrong_class or not hasattr(array, "shape") or not hasattr(array, "dtype"):
            raise TypeError(
                f"{name}: expected {array_kind} of shape [batch, dim], got {type(array).__name__}"
            )
        if len(array.shape) != 2:
            raise ValueError(
                f"{name}: expected rank 2 [batch, dim], got rank {len(array.shape)} with shape {tuple(array.shape)}"
            )
        if dtype_name(array) not in FLOATING_DTYPE_NAMES:
            raise TypeError(
                f"{name}: expected a floating dtype ({', '.join(FLOATING_DTYPE_NAMES)}), got {dtype_name(array)}"
            )
    image_shape, text_shape = tuple(image_emb.shape), tuple(text_emb.shape)
    if image_shape[0] != text_shape[0] and not rectangular:
        raise ValueError(
            f"text_emb: expected batch {image_shape[0]} to match image_emb {image_shape}, got shape {text_shape} "
            "(a text batch of another size needs image_groups and text_groups to place the positives)"
        )
    if image_shape[1] != text_shape[1]:
        raise ValueError(
            f"text_emb: expected dim {image_shape[1]} to match image_emb {image_shape}, got shape {text_shape}"
        )
    if image_shape[0] == 0:
        raise ValueError(f"image_emb: expected batch >= 1, got shape {image_shape}")
    if text_shape[0] == 0:
        raise ValueError(f"text_emb: expected batch >= 1, got shape {text_shape}")
    return int(image_shape[0]), int(image_shape[1])


def check_groups(
    image_groups: Any,
    text_groups: Any,
    *,
    image_batch: int,
    text_batch: int,
    array_types: tuple[type, ...] = (),
    array_kind: str = "an array",
) -> bool:
    """Check the group ids of a multi-positive loss; True when they are given.

    Both ``None``: the standard loss (positives on the diagonal). Otherwise both must be integer
    arrays, ``image_groups: [image_batch]`` and ``text_groups: [text_batch]``.

    Args:
        image_groups: ``[image_batch]`` group id of each image row, or None.
        text_groups: ``[text_batch]`` group id of each text row, or None.
        image_batch: rows of ``image_emb``.
        text_batch: rows of ``text_emb``.
        array_types: when given, the accepted array classes (e.g. ``(torch.Tensor,)``).
        array_kind: how error messages call the expected array.

    Raises:
        ValueError: only one of the two is given, or a group array is not rank 1 with one id per
            embedding row.
        TypeError: a group array is not an array (of ``array_types``) or not of an integer dtype.
    """
    if image_groups is None and text_groups is None:
        return False
    for name, groups, other_name in (
        ("image_groups", image_groups, "text_groups"),
        ("text_groups", text_groups, "image_groups"),
    ):
        if groups is None:
            raise ValueError(
                f"{name}: expected an integer array together with {other_name} (give both or "
                f"neither), got None while {other_name} is given"
            )
    for name, groups, rows, embedding in (
        ("image_groups", image_groups, image_batch, "image_emb"),
        ("text_groups", text_groups, text_batch, "text_emb"),
    ):
        wrong_class = bool(array_types) and not isinstance(groups, array_types)
        if wrong_class or not hasattr(groups, "shape") or not hasattr(groups, "dtype"):
            raise TypeError(
                f"{name}: expected {array_kind} of integer group ids of shape [{rows}], "
                f"got {type(groups).__name__}"
            )
        if len(groups.shape) != 1:
            raise ValueError(
                f"{name}: expected rank 1 [{rows}] (one group id per {embedding} row), got rank "
                f"{len(groups.shape)} with shape {tuple(groups.shape)}"
            )
        if dtype_name(groups) not in INTEGER_DTYPE_NAMES:
            raise TypeError(
                f"{name}: expected an integer dtype ({', '.join(INTEGER_DTYPE_NAMES)}), got "
                f"{dtype_name(groups)}"
            )
        if int(groups.shape[0]) != rows:
            raise ValueError(
                f"{name}: expected shape [{rows}] (one group id per {embedding} row), got shape "
                f"{tuple(groups.shape)}"
            )
    return True


def check_positive_weighting(positive_weighting: Any) -> PositiveWeighting:
    """Return ``positive_weighting`` once checked to be one of :data:`POSITIVE_WEIGHTINGS`.

    Raises:
        ValueError: any other value.
    """
    if positive_weighting not in POSITIVE_WEIGHTINGS:
        raise ValueError(
            f"positive_weighting: expected one of {', '.join(map(repr, POSITIVE_WEIGHTINGS))}, "
            f"got {positive_weighting!r}"
        )
    checked: PositiveWeighting = positive_weighting
    return checked


def check_scalar(name: str, value: Any, *, positive: bool = False) -> None:
    """Check a hyperparameter that is a Python number or a 0-d array.

    The finiteness (and sign) check applies to Python numbers and to concrete numpy values; array
    values inside a trace (``jax.jit``) cannot be inspected and are only checked for shape.

    Raises:
        TypeError: not a real number or an array.
        ValueError: not 0-d, not finite, or (``positive``) not > 0.
    """
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected a real number or a 0-d array, got bool")
    number: float | None
    if isinstance(value, numbers.Real):
        number = float(value)
    elif hasattr(value, "shape"):
        if tuple(value.shape) != ():
            raise ValueError(
                f"{name}: expected a scalar (0-d) value, got shape {tuple(value.shape)}"
            )
        if dtype_name(value) not in FLOATING_DTYPE_NAMES:
            raise TypeError(
                f"{name}: expected a floating dtype ({', '.join(FLOATING_DTYPE_NAMES)}), got {dtype_name(value)}"
            )
        number = _concrete_value(value)
        if number is None:
            return
    else:
        raise TypeError(
            f"{name}: expected a real number or a 0-d array, got {type(value).__name__}"
        )
    if not math.isfinite(number):
        raise ValueError(f"{name}: expected a finite value, got {number}")
    if positive and number <= 0:
        raise ValueError(
            f"{name}: expected a positive value (the multiplier exp(log_scale), not its log), got {number}"
        )


def _concrete_value(value: Any) -> float | None:
    """The value of a 0-d numpy/torch/JAX array, or None when it is traced or on an accelerator."""
    module = type(value).__module__
    if module.startswith("numpy"):
        return float(value)
    if module.startswith("torch"):
        # Reading a CUDA value would synchronise the device every step; check only CPU values.
        if getattr(value.device, "type", "cpu") != "cpu" or _torch_compiling():
            return None
        try:
            return float(value.detach())
        except RuntimeError:  # a functorch-wrapped value (torch.func.vmap): not concrete
            return None
    if module.startswith(("jax", "jaxlib")):
        try:
            return float(value)
        except Exception:  # a tracer: its value is not known until run time
            return None
    return None


def _torch_compiling() -> bool:
    import torch  # only reached for torch values, so torch is already imported

    return bool(torch.compiler.is_compiling())


def check_implementation(implementation: Any) -> Implementation:
    """Return ``implementation`` once checked to be one of :data:`IMPLEMENTATIONS`.

    Raises:
        ValueError: any other value.
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"implementation: expected one of {', '.join(map(repr, IMPLEMENTATIONS))}, "
            f"got {implementation!r}"
        )
    checked: Implementation = implementation
    return checked


def check_block_size(block_size: Any, *, default: int) -> int:
    """Return ``block_size`` (None gives ``default``) after checking it is a positive int.

    Raises:
        TypeError: not an int (or None).
        ValueError: an int below 1.
    """
    if block_size is None:
        return default
    if isinstance(block_size, bool) or not isinstance(block_size, int):
        raise TypeError(
            f"block_size: expected a positive int or None, got {type(block_size).__name__}"
        )
    if block_size < 1:
        raise ValueError(f"block_size: expected a positive int or None, got {block_size}")
    return block_size
