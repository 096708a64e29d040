"""assert_matches_reference on torch losses: accepts correct ones (in any dtype, including a
loss computed wholly in bfloat16), rejects the classic mistakes with a message saying what."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given

from siglip_loss.testing import EmbeddingPair
from siglip_loss.testing import assert_matches_reference
from siglip_loss.testing import biases
from siglip_loss.testing import embedding_pairs
from siglip_loss.testing import scales
from siglip_loss.torch import sigmoid_loss


def loss_in_input_dtype(
    image_emb: torch.Tensor, text_emb: torch.Tensor, *, scale: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    # What autocast code does: logits and log-sigmoid in the input dtype.
    dtype = image_emb.dtype
    logits = scale.to(dtype) * image_emb @ text_emb.T + bias.to(dtype)
    labels = 2 * torch.eye(len(logits), dtype=dtype) - 1
    return -F.logsigmoid(labels * logits).float().sum() / len(logits)


@given(
    pair=embedding_pairs(dtypes=("float16", "bfloat16", "float32"), backend="torch"),
    scale=scales(),
    bias=biases(),
)
def test_a_correct_loss_computed_in_the_input_dtype_passes(
    pair: EmbeddingPair, scale: float, bias: float
) -> None:
    assert_matches_reference(loss_in_input_dtype, *pair, scale=scale, bias=bias)


def pair_of(batch: int, dim: int, dtype: torch.dtype = torch.float32) -> EmbeddingPair:
    generator = torch.Generator().manual_seed(batch * 100 + dim)
    image = F.normalize(torch.randn(batch, dim, generator=generator), dim=-1).to(dtype)
    text = F.normalize(image.float() + 0.3 * torch.randn(batch, dim, generator=generator), dim=-1)
    return EmbeddingPair(image, text.to(dtype))


def divided_by_batch_squared(image_emb, text_emb, *, scale, bias):  # type: ignore[no-untyped-def]
    logits = scale * image_emb.float() @ text_emb.float().T + bias
    return F.binary_cross_entropy_with_logits(logits, torch.eye(len(logits)))  # mean: 1/N^2


def detached_bias(image_emb, text_emb, *, scale, bias):  # type: ignore[no-untyped-def]
    return sigmoid_loss(image_emb, text_emb, scale=scale, bias=bias.detach())


def naive_log_sigmoid(image_emb, text_emb, *, scale, bias):  # type: ignore[no-untyped-def]
    logits = scale * image_emb @ text_emb.T + bias
    labels = 2 * torch.eye(len(logits), dtype=logits.dtype) - 1
    return -torch.log(torch.sigmoid(labels * logits)).sum() / len(logits)


def scale_treated_as_log_scale(image_emb, text_emb, *, scale, bias):  # type: ignore[no-untyped-def]
    return sigmoid_loss(image_emb, text_emb, scale=scale.exp(), bias=bias)


def gradient_of_text_dropped(image_emb, text_emb, *, scale, bias):  # type: ignore[no-untyped-def]
    # A "distributed" loss whose gathered text features lost their gradient, then re-attached.
    text = text_emb.detach() + 0 * text_emb
    return sigmoid_loss(image_emb, text, scale=scale, bias=bias)


@pytest.mark.parametrize(
    ("loss_fn", "dtype", "message"),
    [
        (divided_by_batch_squared, torch.float32, r"^loss: got .* float64 oracle"),
        (divided_by_batch_squared, torch.bfloat16, r"^loss: got .* float64 oracle"),
        (detached_bias, torch.float32, r"gradient of bias: loss_fn does not differentiate"),
        (naive_log_sigmoid, torch.float16, r"loss: expected finite values"),
        (scale_treated_as_log_scale, torch.float32, r"^loss: got"),
        (gradient_of_text_dropped, torch.float32, r"^gradient of text_emb at index"),
    ],
)
def test_known_mistakes_are_rejected_with_a_message_saying_what(
    loss_fn: object, dtype: torch.dtype, message: str
) -> None:
    with pytest.raises(AssertionError, match=message):
        assert_matches_reference(loss_fn, *pair_of(6, 4, dtype), scale=30.0, bias=-5.0)  # type: ignore[arg-type]


def test_a_loss_without_gradients_asks_for_check_grads_false() -> None:
    def no_grad_loss(image_emb, text_emb, *, scale, bias):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            return sigmoid_loss(image_emb, text_emb, scale=scale, bias=bias)

    with pytest.raises(AssertionError, match="pass check_grads=False"):
        assert_matches_reference(no_grad_loss, *pair_of(3, 2), scale=1.0, bias=0.0)
    assert_matches_reference(no_grad_loss, *pair_of(3, 2), scale=1.0, bias=0.0, check_grads=False)


def test_mixed_array_types_are_rejected() -> None:
    image, text = pair_of(3, 2)
    with pytest.raises(TypeError, match="text_emb: expected the same array type as image_emb"):
        assert_matches_reference(sigmoid_loss, image, text.numpy(), scale=1.0, bias=0.0)
