"""The backend's public API: every name is documented, and bad input raises a clear message naming
the argument, from every implementation of sigmoid_loss, from softmax_loss and from the module."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from siglip_loss._validation import IMPLEMENTATIONS

GOOD = np.zeros((4, 3), dtype=np.float32)
# (image_emb, text_emb) as numpy arrays or lists, converted to the backend's arrays (lists stay).
BAD_EMBEDDINGS = [
    (np.zeros(3), GOOD, ValueError, r"image_emb: expected rank 2 \[batch, dim\], got rank 1"),
    (GOOD, np.zeros((4, 3, 2)), ValueError, r"text_emb: expected rank 2 .* got rank 3"),
    (GOOD, np.zeros((5, 3)), ValueError, r"text_emb: expected batch 4 .* got shape \(5, 3\)"),
    (GOOD, np.zeros((4, 2)), ValueError, r"text_emb: expected dim 3 .* got shape \(4, 2\)"),
    (np.zeros((0, 3)), np.zeros((0, 3)), ValueError, r"image_emb: expected batch >= 1"),
    (
        GOOD.astype(np.int64),
        GOOD,
        TypeError,
        r"image_emb: expected a floating dtype .* got int(32|64)",  # int32 in JAX without x64
    ),
    (GOOD, GOOD.astype(bool), TypeError, r"text_emb: expected a floating dtype .* got bool"),
    (
        [[1.0]],
        [[1.0]],
        TypeError,
        r"image_emb: expected (a torch.Tensor|an array) of shape \[batch, dim\], got list",
    ),
]
# (scale, bias): numbers, or a function of the backend that builds the array.
BAD_SCALARS = [
    (float("nan"), 0.0, ValueError, r"scale: expected a finite value, got nan"),
    (
        lambda backend: backend.array(np.float32(np.inf)),
        0.0,
        ValueError,
        r"scale: expected a finite value, got inf",
    ),
    (-2.0, 0.0, ValueError, r"scale: expected a positive value .* got -2.0"),
    (np.float64(-2.0), 0.0, ValueError, r"scale: expected a positive value .* got -2.0"),
    (10.0, float("-inf"), ValueError, r"bias: expected a finite value, got -inf"),
    (
        lambda backend: backend.array(np.ones(1, np.float32)),
        0.0,
        ValueError,
        r"scale: expected a scalar \(0-d\) value, got shape \(1,\)",
    ),
    (
        10.0,
        lambda backend: backend.array(np.int32(1)),
        TypeError,
        r"bias: expected a floating dtype .* got int32",
    ),
    ("10", 0.0, TypeError, r"scale: expected a real number or a 0-d array, got str"),
]


def on_backend(backend: Any, value: Any) -> Any:
    if callable(value):
        return value(backend)
    return backend.array(value) if isinstance(value, np.ndarray) else value


def sigmoid_with(backend: Any, implementation: str) -> Callable[..., Any]:
    return functools.partial(backend.module.sigmoid_loss, implementation=implementation)


def test_every_public_name_is_documented(backend: Any) -> None:
    for name in backend.module.__all__:
        assert getattr(backend.module, name).__doc__, name
    assert backend.sigmoid_loss_module.__doc__
    assert {"l2_normalize", "sigmoid_loss", "softmax_loss"} <= set(backend.module.__all__)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize(("image_emb", "text_emb", "error", "message"), BAD_EMBEDDINGS)
def test_bad_embeddings_raise_a_message_naming_the_argument(
    backend: Any,
    implementation: str,
    image_emb: Any,
    text_emb: Any,
    error: type[Exception],
    message: str,
) -> None:
    image_emb, text_emb = on_backend(backend, image_emb), on_backend(backend, text_emb)
    with pytest.raises(error, match=message):
        sigmoid_with(backend, implementation)(image_emb, text_emb, scale=10.0, bias=-10.0)


@pytest.mark.parametrize(("image_emb", "text_emb", "error", "message"), BAD_EMBEDDINGS)
def test_bad_embeddings_raise_the_same_message_from_softmax_loss_and_the_module(
    backend: Any, image_emb: Any, text_emb: Any, error: type[Exception], message: str
) -> None:
    image_emb, text_emb = on_backend(backend, image_emb), on_backend(backend, text_emb)
    with pytest.raises(error, match=message):
        backend.module.softmax_loss(image_emb, text_emb, scale=10.0)
    with pytest.raises(error, match=message):
        backend.sigmoid_loss_module()(image_emb, text_emb)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize(("scale", "bias", "error", "message"), BAD_SCALARS)
def test_bad_scale_or_bias_raises_a_message_naming_the_argument(
    backend: Any, implementation: str, scale: Any, bias: Any, error: type[Exception], message: str
) -> None:
    good = backend.array(GOOD)
    scale, bias = on_backend(backend, scale), on_backend(backend, bias)
    with pytest.raises(error, match=message):
        sigmoid_with(backend, implementation)(good, good, scale=scale, bias=bias)


def test_unknown_implementation_raises_naming_the_argument(backend: Any) -> None:
    good = backend.array(GOOD)
    with pytest.raises(ValueError, match=r"implementation: expected one of 'auto', .* got 'dense'"):
        backend.module.sigmoid_loss(good, good, scale=10.0, bias=-10.0, implementation="dense")


@pytest.mark.parametrize(
    ("values", "message"),
    [(np.array([[3, 4]]), r"x: expected a floating dtype, got int(32|64)"), ([[3.0, 4.0]], r"x:")],
)
def test_l2_normalize_rejects_integer_input_and_non_arrays_naming_the_argument(
    backend: Any, values: Any, message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        backend.module.l2_normalize(on_backend(backend, values))


def test_module_rejects_non_finite_init_values(backend: Any) -> None:
    with pytest.raises(ValueError, match=r"log_scale_init: expected a finite value, got inf"):
        backend.sigmoid_loss_module(log_scale_init=float("inf"))
    with pytest.raises(ValueError, match=r"bias_init: expected a finite value, got nan"):
        backend.sigmoid_loss_module(bias_init=float("nan"))


IDS = np.arange(4)
# (text_emb, image_groups, text_groups): numpy arrays converted to the backend's arrays.
BAD_GROUPS = [
    (np.zeros((6, 3), np.float32), None, None, ValueError, r"text_emb: expected batch 4 .* got shape \(6, 3\) \(a text batch of another size needs image_groups and text_groups"),
    (GOOD, IDS, None, ValueError, r"text_groups: expected an integer array together with image_groups \(give both or neither\), got None"),
    (GOOD, None, IDS, ValueError, r"image_groups: expected an integer array together with text_groups"),
    (GOOD, np.arange(5), IDS, ValueError, r"image_groups: expected shape \[4\] \(one group id per image_emb row\), got shape \(5,\)"),
    (np.zeros((6, 3), np.float32), IDS, IDS, ValueError, r"text_groups: expected shape \[6\] \(one group id per text_emb row\), got shape \(4,\)"),
    (GOOD, IDS.reshape(2, 2), IDS, ValueError, r"image_groups: expected rank 1 \[4\] .* got rank 2 with shape \(2, 2\)"),
    (GOOD, IDS, IDS.astype(np.float32), TypeError, r"text_groups: expected an integer dtype .* got float32"),
    (GOOD, IDS.astype(bool), IDS, TypeError, r"image_groups: expected an integer dtype .* got bool"),
    (GOOD, IDS, [0, 1, 2, 3], TypeError, r"text_groups: expected (a torch.Tensor|an array) of integer group ids of shape \[4\], got list"),
]  # fmt: skip


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    ("text_emb", "image_groups", "text_groups", "error", "message"), BAD_GROUPS
)
def test_bad_group_ids_raise_a_message_naming_the_argument(
    backend: Any,
    implementation: str,
    text_emb: Any,
    image_groups: Any,
    text_groups: Any,
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        sigmoid_with(backend, implementation)(
            backend.array(GOOD),
            on_backend(backend, text_emb),
            scale=10.0,
            bias=-10.0,
            image_groups=on_backend(backend, image_groups),
            text_groups=on_backend(backend, text_groups),
        )


def test_unknown_positive_weighting_raises_naming_the_argument(backend: Any) -> None:
    good, ids = backend.array(GOOD), backend.array(IDS.astype(np.int32))
    with pytest.raises(
        ValueError,
        match=r"positive_weighting: expected one of 'uniform', 'inverse_count', got 'mean'",
    ):
        backend.module.sigmoid_loss(
            good, good, scale=10.0, bias=-10.0, image_groups=ids, text_groups=ids, positive_weighting="mean"
        )  # fmt: skip


def test_module_passes_group_ids_to_the_loss(backend: Any) -> None:
    rng = np.random.default_rng(0)
    image = backend.array(rng.normal(size=(3, 4)), "float32")
    text = backend.array(rng.normal(size=(5, 4)), "float32")
    image_ids = backend.array(np.array([0, 1, 2], np.int32))
    text_ids = backend.array(np.array([0, 0, 1, 2, 2], np.int32))
    module = backend.sigmoid_loss_module(positive_weighting="inverse_count")
    expected = backend.module.sigmoid_loss(
        image,
        text,
        scale=10.0,
        bias=-10.0,
        image_groups=image_ids,
        text_groups=text_ids,
        positive_weighting="inverse_count",
    )
    got = backend.stop_gradient(module(image, text, image_groups=image_ids, text_groups=text_ids))
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
