"""Bad input raises a clear error naming the argument, what was expected and what came."""

from __future__ import annotations

import numpy as np
import pytest

from siglip_loss.numpy import sigmoid_loss
from siglip_loss.numpy import sigmoid_loss_and_grads
from siglip_loss.numpy import softmax_loss

GOOD = np.zeros((4, 3))


@pytest.mark.parametrize(
    ("image_emb", "text_emb", "error", "message"),
    [
        (np.zeros(3), GOOD, ValueError, r"image_emb: expected rank 2 \[batch, dim\], got rank 1"),
        (GOOD, np.zeros((4, 3, 1)), ValueError, r"text_emb: expected rank 2 .* got rank 3"),
        (GOOD, np.zeros((5, 3)), ValueError, r"text_emb: expected batch 4 .* got shape \(5, 3\)"),
        (GOOD, np.zeros((4, 2)), ValueError, r"text_emb: expected dim 3 .* got shape \(4, 2\)"),
        (np.zeros((0, 3)), np.zeros((0, 3)), ValueError, r"image_emb: expected batch >= 1"),
        (GOOD.astype(np.int64), GOOD, TypeError, r"image_emb: expected a floating dtype .* int64"),
        (GOOD, GOOD.astype(bool), TypeError, r"text_emb: expected a floating dtype .* bool"),
    ],
)
def test_bad_embeddings_raise_a_message_naming_the_argument(
    image_emb: np.ndarray, text_emb: np.ndarray, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        sigmoid_loss(image_emb, text_emb, scale=10.0, bias=-10.0)
    with pytest.raises(error, match=message):
        softmax_loss(image_emb, text_emb, scale=10.0)


@pytest.mark.parametrize(
    ("scale", "bias", "error", "message"),
    [
        (float("nan"), 0.0, ValueError, r"scale: expected a finite value, got nan"),
        (float("inf"), 0.0, ValueError, r"scale: expected a finite value, got inf"),
        (np.float64("-inf"), 0.0, ValueError, r"scale: expected a finite value, got -inf"),
        (np.array(np.nan), 0.0, ValueError, r"scale: expected a finite value, got nan"),
        (-1.0, 0.0, ValueError, r"scale: expected a positive value .* got -1.0"),
        (0.0, 0.0, ValueError, r"scale: expected a positive value"),
        (10.0, float("nan"), ValueError, r"bias: expected a finite value, got nan"),
        (np.ones(2), 0.0, ValueError, r"scale: expected a scalar \(0-d\) value, got shape \(2,\)"),
        ("10", 0.0, TypeError, r"scale: expected a real number or a 0-d array, got str"),
        (True, 0.0, TypeError, r"scale: expected a real number or a 0-d array, got bool"),
        (10.0, np.array(1, dtype=np.int32), TypeError, r"bias: expected a floating dtype .* int32"),
    ],
)
def test_bad_scale_or_bias_raises_a_message_naming_the_argument(
    scale: object, bias: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        sigmoid_loss_and_grads(GOOD, GOOD, scale=scale, bias=bias)  # type: ignore[arg-type]


def test_python_lists_are_accepted_as_arrays() -> None:
    rows = [[1.0, 0.0], [0.0, 1.0]]
    assert sigmoid_loss(rows, rows, scale=10.0, bias=-10.0) == pytest.approx(
        sigmoid_loss(np.eye(2), np.eye(2), scale=10.0, bias=-10.0)
    )


IDS = np.arange(4)


@pytest.mark.parametrize(
    ("image_emb", "text_emb", "image_groups", "text_groups", "error", "message"),
    [
        (GOOD, np.zeros((6, 3)), None, None, ValueError, r"text_emb: expected batch 4 .* got shape \(6, 3\) \(a text batch of another size needs image_groups and text_groups"),
        (GOOD, GOOD, IDS, None, ValueError, r"text_groups: expected an integer array together with image_groups \(give both or neither\), got None"),
        (GOOD, GOOD, None, IDS, ValueError, r"image_groups: expected an integer array together with text_groups"),
        (GOOD, GOOD, np.arange(5), IDS, ValueError, r"image_groups: expected shape \[4\] \(one group id per image_emb row\), got shape \(5,\)"),
        (GOOD, np.zeros((6, 3)), IDS, IDS, ValueError, r"text_groups: expected shape \[6\] \(one group id per text_emb row\), got shape \(4,\)"),
        (GOOD, GOOD, IDS.reshape(4, 1), IDS, ValueError, r"image_groups: expected rank 1 \[4\] .* got rank 2 with shape \(4, 1\)"),
        (GOOD, GOOD, IDS, IDS.astype(np.float32), TypeError, r"text_groups: expected an integer dtype .* got float32"),
        (GOOD, GOOD, IDS.astype(bool), IDS, TypeError, r"image_groups: expected an integer dtype .* got bool"),
        (GOOD, GOOD, IDS, "0123", TypeError, r"text_groups: expected an array of integer group ids of shape \[4\], got str"),
        (GOOD, np.zeros((0, 3)), IDS, np.zeros(0, np.int64), ValueError, r"text_emb: expected batch >= 1"),
    ],
)  # fmt: skip
def test_bad_group_ids_raise_a_message_naming_the_argument(
    image_emb: np.ndarray,
    text_emb: np.ndarray,
    image_groups: object,
    text_groups: object,
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        sigmoid_loss(
            image_emb,
            text_emb,
            scale=10.0,
            bias=-10.0,
            image_groups=image_groups,
            text_groups=text_groups,
        )


def test_unknown_positive_weighting_raises_naming_the_argument() -> None:
    with pytest.raises(
        ValueError,
        match=r"positive_weighting: expected one of 'uniform', 'inverse_count', got 'mean'",
    ):
        sigmoid_loss(
            GOOD,
            GOOD,
            scale=10.0,
            bias=-10.0,
            image_groups=IDS,
            text_groups=IDS,
            positive_weighting="mean",
        )  # type: ignore[arg-type]


def test_group_ids_may_be_lists_and_any_integer_dtype() -> None:
    expected = sigmoid_loss(GOOD, GOOD, scale=10.0, bias=-10.0)
    for image_groups, text_groups in (
        ([0, 1, 2, 3], [0, 1, 2, 3]),
        (IDS.astype(np.uint8), IDS.astype(np.int16)),
    ):
        got = sigmoid_loss(
            GOOD, GOOD, scale=10.0, bias=-10.0, image_groups=image_groups, text_groups=text_groups
        )
        assert got == pytest.approx(expected, rel=1e-15)
