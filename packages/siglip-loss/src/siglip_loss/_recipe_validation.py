"""Input checks of the SigLIP 2 recipe losses (token cross-entropy, self-distillation, centring).

Like ``_validation.py`` they read only ``.shape``/``.ndim``/``.dtype`` (static under ``jax.jit``)
and never import a framework, so numpy, torch and JAX raise the same messages.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from siglip_loss._validation import FLOATING_DTYPE_NAMES
from siglip_loss._validation import INTEGER_DTYPE_NAMES
from siglip_loss._validation import dtype_name

WEIGHT_DTYPE_NAMES = ("bool", *INTEGER_DTYPE_NAMES, *FLOATING_DTYPE_NAMES)


def _check_array(
    name: str, array: Any, *, axes: str, array_types: tuple[type, ...], array_kind: str
) -> tuple[int, ...]:
    wrong_class = bool(array_types) and not isinstance(array, array_types)
    if wrong_class or not hasattr(array, "shape") or not hasattr(array, "dtype"):
        raise TypeError(
            f"{name}: expected {array_kind} of shape [{axes}], got {type(array).__name__}"
        )
    rank = len(axes.split(", "))
    shape = tuple(int(size) for size in array.shape)
    if len(shape) != rank:
        raise ValueError(
            f"{name}: expected rank {rank} [{axes}], got rank {len(shape)} with shape {shape}"
        )
    return shape


def _check_dtype(name: str, array: Any, allowed: tuple[str, ...], kind: str) -> None:
    if dtype_name(array) not in allowed:
        raise TypeError(f"{name}: expected {kind} ({', '.join(allowed)}), got {dtype_name(array)}")


def check_token_targets_and_weights(
    targets: Any,
    weights: Any,
    *,
    batch: int,
    length: int,
    array_types: tuple[type, ...] = (),
    array_kind: str = "an array",
) -> None:
    """Check ``targets: [batch, length]`` integer ids and ``weights: [batch, length]``.

    Raises:
        TypeError: not arrays, ``targets`` not integer, ``weights`` not bool/integer/floating.
        ValueError: a shape that is not ``[batch, length]``.
    """
    expected = (batch, length)
    for name, array, allowed, kind in (
        ("targets", targets, INTEGER_DTYPE_NAMES, "an integer dtype (token ids)"),
        ("weights", weights, WEIGHT_DTYPE_NAMES, "a bool, integer or floating dtype"),
    ):
        shape = _check_array(
            name, array, axes="batch, length", array_types=array_types, array_kind=array_kind
        )
        _check_dtype(name, array, allowed, kind)
        if shape != expected:
            raise ValueError(
                f"{name}: expected shape {list(expected)} ([batch, length] of the logits), "
                f"got {list(shape)}"
            )


def check_token_cross_entropy(
    logits: Any,
    targets: Any,
    weights: Any,
    *,
    array_types: tuple[type, ...] = (),
    array_kind: str = "an array",
) -> tuple[int, int, int]:
    """Check the arguments of ``token_cross_entropy`` and return ``(batch, length, vocab)``.

    Raises:
        TypeError: ``logits`` not floating, ``targets`` not integer, ``weights`` not
            bool/integer/floating, or an argument not an array (of ``array_types``).
        ValueError: ``logits`` not rank 3, a vocabulary of 0, or ``targets``/``weights`` not
            ``[batch, length]`` of the logits.
    """
    shape = _check_array(
        "logits",
        logits,
        axes="batch, length, vocab",
        array_types=array_types,
        array_kind=array_kind,
    )
    _check_dtype("logits", logits, FLOATING_DTYPE_NAMES, "a floating dtype")
    batch, length, vocab = shape
    if vocab == 0:
        raise ValueError(f"logits: expected a vocabulary of at least 1, got shape {list(shape)}")
    check_token_targets_and_weights(
        targets, weights, batch=batch, length=length, array_types=array_types, array_kind=array_kind
    )
    return batch, length, vocab


def check_chunk_size(chunk_size: Any) -> int:
    """Return ``chunk_size`` once checked to be a positive int.

    Raises:
        TypeError: not an int.
        ValueError: below 1.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise TypeError(f"chunk_size: expected a positive int, got {type(chunk_size).__name__}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive int, got {chunk_size}")
    return chunk_size


def check_chunked_token_cross_entropy(
    hidden: Any,
    vocab_weight: Any,
    targets: Any,
    weights: Any,
    vocab_bias: Any,
    chunk_size: Any,
    *,
    array_types: tuple[type, ...] = (),
    array_kind: str = "an array",
) -> tuple[int, int, int, int]:
    """Check the arguments of ``chunked_token_cross_entropy``; return ``(batch, length, dim, vocab)``.

    Raises:
        TypeError: as :func:`check_token_cross_entropy`, for ``hidden``/``vocab_weight``/
            ``vocab_bias`` too, and a ``chunk_size`` that is not an int.
        ValueError: ``hidden`` not ``[batch, length, dim]``, ``vocab_weight`` not ``[vocab, dim]``
            with the hidden ``dim``, ``vocab_bias`` not ``[vocab]``, an empty vocabulary,
            ``targets``/``weights`` not ``[batch, length]``, or ``chunk_size < 1``.
    """
    batch, length, dim = _check_array(
        "hidden", hidden, axes="batch, length, dim", array_types=array_types, array_kind=array_kind
    )
    _check_dtype("hidden", hidden, FLOATING_DTYPE_NAMES, "a floating dtype")
    vocab, weight_dim = _check_array(
        "vocab_weight",
        vocab_weight,
        axes="vocab, dim",
        array_types=array_types,
        array_kind=array_kind,
    )
    _check_dtype("vocab_weight", vocab_weight, FLOATING_DTYPE_NAMES, "a floating dtype")
    if weight_dim != dim:
        raise ValueError(
            f"vocab_weight: expected [vocab, {dim}] (dim of hidden {[batch, length, dim]}), "
            f"got {[vocab, weight_dim]}"
        )
    if vocab == 0:
        raise ValueError("vocab_weight: expected a vocabulary of at least 1, got 0 rows")
    if vocab_bias is not None:
        (bias_size,) = _check_array(
            "vocab_bias", vocab_bias, axes="vocab", array_types=array_types, array_kind=array_kind
        )
        _check_dtype("vocab_bias", vocab_bias, FLOATING_DTYPE_NAMES, "a floating dtype")
        if bias_size != vocab:
            raise ValueError(
                f"vocab_bias: expected shape [{vocab}] (rows of vocab_weight), got [{bias_size}]"
            )
    check_token_targets_and_weights(
        targets, weights, batch=batch, length=length, array_types=array_types, array_kind=array_kind
    )
    check_chunk_size(chunk_size)
    return batch, length, dim, vocab


def check_temperature(name: str, value: Any) -> float:
    """Return a temperature once checked to be a finite positive Python number.

    Raises:
        TypeError: not a real number (arrays are refused: temperatures are host-side
            hyperparameters; a schedule passes a new float each step).
        ValueError: not finite or not > 0.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a positive float, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name}: expected a finite positive float, got {number}")
    return number


def check_momentum(value: Any) -> float:
    """Return the EMA momentum once checked to be a Python number in ``[0, 1]``.

    Raises:
        TypeError: not a real number.
        ValueError: outside ``[0, 1]``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"momentum: expected a float in [0, 1], got {type(value).__name__}")
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"momentum: expected a float in [0, 1], got {number}")
    return number


def _check_center(
    center: Any, classes: int, *, array_types: tuple[type, ...], array_kind: str
) -> None:
    (size,) = _check_array(
        "center", center, axes="classes", array_types=array_types, array_kind=array_kind
    )
    _check_dtype("center", center, FLOATING_DTYPE_NAMES, "a floating dtype")
    if size != classes:
        raise ValueError(
            f"center: expected shape [{classes}] (classes of the teacher logits), got [{size}]"
        )


def check_distillation(
    student_logits: Any,
    teacher_logits: Any,
    center: Any,
    *,
    student_temperature: Any,
    teacher_temperature: Any,
    patches: bool,
    mask: Any = None,
    array_types: tuple[type, ...] = (),
    array_kind: str = "an array",
) -> tuple[int, ...]:
    """Check a self-distillation loss's arguments and return the student's shape.

    ``patches=False``: logits ``[batch, classes]``; ``patches=True``: logits
    ``[batch, patches, classes]`` and ``mask: [batch, patches]`` bool.

    Raises:
        TypeError: an argument not an array (of ``array_types``), logits or center not floating,
            a mask that is not bool, or a temperature that is not a number.
        ValueError: wrong ranks, a teacher of another shape than the student, an empty class
            axis, a centre that is not ``[classes]``, a mask that is not ``[batch, patches]``, or
            a temperature that is not finite and positive.
    """
    axes = "batch, patches, classes" if patches else "batch, classes"
    student_shape = _check_array(
        "student_logits", student_logits, axes=axes, array_types=array_types, array_kind=array_kind
    )
    teacher_shape = _check_array(
        "teacher_logits", teacher_logits, axes=axes, array_types=array_types, array_kind=array_kind
    )
    for name, array in (("student_logits", student_logits), ("teacher_logits", teacher_logits)):
        _check_dtype(name, array, FLOATING_DTYPE_NAMES, "a floating dtype")
    if teacher_shape != student_shape:
        raise ValueError(
            f"teacher_logits: expected the student's shape {list(student_shape)} ([{axes}]: "
            f"one teacher row per student row, same head size), got {list(teacher_shape)}"
        )
    if student_shape[-1] == 0:
        raise ValueError(
            f"student_logits: expected at least 1 class, got shape {list(student_shape)}"
        )
    _check_center(center, student_shape[-1], array_types=array_types, array_kind=array_kind)
    check_temperature("student_temperature", student_temperature)
    check_temperature("teacher_temperature", teacher_temperature)
    if patches:
        mask_shape = _check_array(
            "mask", mask, axes="batch, patches", array_types=array_types, array_kind=array_kind
        )
        _check_dtype("mask", mask, ("bool",), "a bool dtype (True = masked in the student)")
        if mask_shape != student_shape[:2]:
            raise ValueError(
                f"mask: expected shape {list(student_shape[:2])} ([batch, patches] of the "
                f"logits), got {list(mask_shape)}"
            )
    return student_shape


def check_update_center(
    center: Any,
    teacher_logits: Any,
    momentum: Any,
    *,
    array_types: tuple[type, ...] = (),
    array_kind: str = "an array",
) -> int:
    """Check ``update_center``'s arguments and return the number of classes.

    Raises:
        TypeError: an argument not an array, not floating, or a momentum that is not a number.
        ValueError: ``teacher_logits`` of rank below 2 or with no rows, a centre that is not
            ``[classes]``, or a momentum outside ``[0, 1]``.
    """
    wrong_class = bool(array_types) and not isinstance(teacher_logits, array_types)
    if wrong_class or not hasattr(teacher_logits, "shape") or not hasattr(teacher_logits, "dtype"):
        raise TypeError(
            f"teacher_logits: expected {array_kind} of shape [..., classes], "
            f"got {type(teacher_logits).__name__}"
        )
    shape = tuple(int(size) for size in teacher_logits.shape)
    if len(shape) < 2 or math.prod(shape[:-1]) == 0:
        raise ValueError(
            "teacher_logits: expected rank >= 2 [batch, ..., classes] with at least one row, "
            f"got shape {list(shape)}"
        )
    _check_dtype("teacher_logits", teacher_logits, FLOATING_DTYPE_NAMES, "a floating dtype")
    _check_center(center, shape[-1], array_types=array_types, array_kind=array_kind)
    check_momentum(momentum)
    return shape[-1]
