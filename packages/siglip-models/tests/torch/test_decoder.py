"""SiglipTextDecoder: causal positions see only earlier tokens, parallel prediction ignores the
tokens, a mixed batch equals its examples run alone, greedy generation is the argmax of a
teacher-forced forward, and bad input raises errors naming the argument."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from siglip_models import TextDecoderConfig
from siglip_models import get_config
from siglip_models.torch import SiglipTextDecoder

LENGTH = 7


def make_decoder(image_width: int = 32, seed: int = 0) -> SiglipTextDecoder:
    """The tiny decoder with every parameter random (the zero head would hide bugs)."""
    config = TextDecoderConfig.from_siglip(
        get_config("tiny-test"), max_length=LENGTH + 1, image_width=image_width
    )
    torch.manual_seed(seed)
    decoder = SiglipTextDecoder(config).eval()
    with torch.no_grad():
        for parameter in decoder.parameters():
            parameter.normal_(0.0, 0.3)
    return decoder


@pytest.fixture(scope="module")
def decoder() -> SiglipTextDecoder:
    return make_decoder(image_width=24)  # != width 32: the image projection is used


def inputs(seed: int, batch: int = 3, length: int = LENGTH) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 100, (batch, length), generator=generator)
    image = torch.randn(batch, 4, 24, generator=generator)
    return tokens, image


@given(seed=st.integers(0, 2**31 - 1), position=st.integers(0, LENGTH - 1))
def test_causal_logits_at_a_position_depend_only_on_earlier_tokens(
    decoder: SiglipTextDecoder, seed: int, position: int
) -> None:
    tokens, image = inputs(seed)
    changed = tokens.clone()
    changed[:, position] = (changed[:, position] + 1) % 100
    with torch.no_grad():
        before, after = decoder(tokens, image), decoder(changed, image)
    torch.testing.assert_close(after[:, : position + 1], before[:, : position + 1])
    if position + 1 < LENGTH:  # the next position reads the changed token
        assert not torch.allclose(after[:, position + 1], before[:, position + 1])


@given(seed=st.integers(0, 2**31 - 1))
def test_parallel_logits_do_not_depend_on_the_tokens_but_on_the_image(
    decoder: SiglipTextDecoder, seed: int
) -> None:
    tokens, image = inputs(seed)
    other_tokens, other_image = inputs(seed + 1)
    with torch.no_grad():
        logits = decoder(tokens, image, parallel=True)
        torch.testing.assert_close(decoder(other_tokens, image, parallel=True), logits)
        assert not torch.allclose(decoder(tokens, other_image, parallel=True), logits)
        # Without a causal mask the first position sees the later (mask-token) positions: the
        # logits differ from a causal pass even at position 0.
        assert not torch.allclose(decoder(tokens, image)[:, 0], logits[:, 0])


def test_a_mixed_batch_equals_each_example_run_alone(decoder: SiglipTextDecoder) -> None:
    tokens, image = inputs(3, batch=4)
    parallel = torch.tensor([True, False, False, True])
    with torch.no_grad():
        mixed = decoder(tokens, image, parallel=parallel)
        for row in range(4):
            alone = decoder(
                tokens[row : row + 1], image[row : row + 1], parallel=bool(parallel[row])
            )
            torch.testing.assert_close(mixed[row : row + 1], alone, rtol=1e-5, atol=1e-5)


def test_hidden_states_through_the_head_are_the_logits(decoder: SiglipTextDecoder) -> None:
    tokens, image = inputs(4)
    with torch.no_grad():
        hidden = decoder.hidden_states(tokens, image, parallel=torch.tensor([True, False, True]))
        logits = decoder(tokens, image, parallel=torch.tensor([True, False, True]))
    assert hidden.shape == (3, LENGTH, decoder.config.width)
    torch.testing.assert_close(decoder.head(hidden), logits)


def test_image_mask_hides_image_tokens(decoder: SiglipTextDecoder) -> None:
    tokens, image = inputs(5)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[:, 2:] = False
    noisy = image.clone()
    noisy[:, 2:] = 100.0
    with torch.no_grad():
        torch.testing.assert_close(
            decoder(tokens, noisy, image_mask=mask), decoder(tokens, image, image_mask=mask)
        )
        torch.testing.assert_close(
            decoder(tokens, image, image_mask=mask), decoder(tokens, image[:, :2])
        )


@pytest.mark.parametrize("prefix_length", [0, 2])
@pytest.mark.parametrize("seed", [0, 1])
def test_generate_is_the_argmax_of_a_teacher_forced_forward(
    decoder: SiglipTextDecoder, prefix_length: int, seed: int
) -> None:
    tokens, image = inputs(seed)
    new = LENGTH - prefix_length
    generated = decoder.generate(image, tokens[:, :prefix_length], max_new_tokens=new)
    assert generated.shape == (3, LENGTH)
    assert torch.equal(generated[:, :prefix_length], tokens[:, :prefix_length])
    with torch.no_grad():
        teacher_forced = decoder(generated, image).argmax(dim=-1)
    assert torch.equal(generated[:, prefix_length:], teacher_forced[:, prefix_length:])


def test_generate_fills_after_eos_and_stops(decoder: SiglipTextDecoder) -> None:
    tokens, image = inputs(0)
    free = decoder.generate(image, tokens[:, :1], max_new_tokens=LENGTH - 1)
    eos = int(free[0, 2])  # example 0 emits it as its second new token
    stopped = decoder.generate(image, tokens[:, :1], max_new_tokens=LENGTH - 1, eos_id=eos)
    assert torch.equal(stopped[0, :3], free[0, :3])
    assert bool((stopped[0, 2:] == eos).all())
    for row in range(3):  # up to its first eos, every example is the free-running one
        hits = (free[row, 1:] == eos).nonzero()
        end = LENGTH if len(hits) == 0 else int(hits[0]) + 2
        assert torch.equal(stopped[row, :end], free[row, :end])


def test_a_mixed_batch_trains_every_parameter(decoder: SiglipTextDecoder) -> None:
    tokens, image = inputs(6)
    decoder.zero_grad()
    decoder(tokens, image, parallel=torch.tensor([True, False, True])).square().mean().backward()
    assert all(p.grad is not None for p in decoder.parameters())
    # The begin row is read by the causal examples, the mask row by the parallel ones.
    rows = decoder.token_embedding.weight.grad
    assert rows is not None
    assert rows[decoder.config.mask_id].any()
    assert rows[decoder.config.begin_id].any()
    decoder.zero_grad()


def test_bfloat16_decoder_takes_float32_image_tokens() -> None:
    decoder = make_decoder(image_width=32).to(torch.bfloat16)
    tokens, _ = inputs(0)
    logits = decoder(tokens, torch.randn(3, 4, 32))
    assert logits.dtype == torch.bfloat16
    assert logits.shape == (3, LENGTH, 100)


def test_a_fresh_decoder_predicts_uniformly_and_sample_parallel_uses_the_probability() -> None:
    config = TextDecoderConfig.from_siglip(get_config("tiny-test"))
    decoder = SiglipTextDecoder(config)
    tokens, _ = inputs(0)
    assert not decoder(tokens, torch.randn(3, 4, 32)).any()  # zero head (CapPa)
    generator = torch.Generator().manual_seed(0)
    flags = decoder.sample_parallel(4000, generator=generator)
    assert flags.dtype == torch.bool
    assert 0.45 < flags.float().mean().item() < 0.55
    never = SiglipTextDecoder(dataclasses.replace(config, parallel_probability=0.0))
    assert not never.sample_parallel(50).any()


def bad_calls(decoder: SiglipTextDecoder) -> dict[str, tuple[Any, type[Exception], str]]:
    tokens, image = inputs(0)
    return {
        "float tokens": (
            lambda: decoder(tokens.float(), image),
            TypeError,
            "tokens: expected an integer",
        ),
        "tokens of rank 1": (
            lambda: decoder(tokens[0], image),
            ValueError,
            "tokens: expected rank 2",
        ),
        "tokens longer than max_length": (
            lambda: decoder(torch.cat([tokens, tokens], 1), image),
            ValueError,
            "max_length=8",
        ),
        "the mask id as a token": (
            lambda: decoder(torch.full((3, 2), 100), image),
            ValueError,
            "tokens: expected ids in [0, vocab_size=100)",
        ),
        "image tokens of another width": (
            lambda: decoder(tokens, image[..., :20]),
            ValueError,
            "image_tokens: expected [batch, patches, 24]",
        ),
        "pooled image embeddings": (
            lambda: decoder(tokens, image[:, 0]),
            ValueError,
            "image_tokens: expected [batch, patches, 24]",
        ),
        "image batch of another size": (
            lambda: decoder(tokens, image[:2]),
            ValueError,
            "image_tokens: expected batch 3",
        ),
        "integer image tokens": (
            lambda: decoder(tokens, image.long()),
            TypeError,
            "image_tokens: expected a floating tensor",
        ),
        "float parallel flags": (
            lambda: decoder(tokens, image, parallel=torch.ones(3)),
            TypeError,
            "parallel: expected None, a bool or a bool tensor",
        ),
        "parallel flags of another size": (
            lambda: decoder(tokens, image, parallel=torch.ones(2, dtype=torch.bool)),
            ValueError,
            "parallel: expected shape (3,)",
        ),
        "image mask of another shape": (
            lambda: decoder(tokens, image, image_mask=torch.ones(3, 5, dtype=torch.bool)),
            ValueError,
            "image_mask: expected shape (3, 4)",
        ),
        "a task prefix longer than the sequence": (
            lambda: decoder.generate(image, tokens, max_new_tokens=2),
            ValueError,
            "the task prefix must leave room for the answer",
        ),
        "float prefix": (
            lambda: decoder.generate(image, tokens.float(), max_new_tokens=1),
            TypeError,
            "prefix: expected an integer tensor",
        ),
        "zero new tokens": (
            lambda: decoder.generate(image, tokens[:, :2], max_new_tokens=0),
            ValueError,
            "max_new_tokens: expected a positive int",
        ),
        "eos outside the vocabulary": (
            lambda: decoder.generate(image, tokens[:, :2], max_new_tokens=1, eos_id=100),
            ValueError,
            "eos_id: expected an id in [0, vocab_size=100)",
        ),
    }


@pytest.mark.parametrize("case", list(bad_calls(make_decoder(24))))
def test_bad_input_raises_an_error_naming_the_argument(
    decoder: SiglipTextDecoder, case: str
) -> None:
    call, error, phrase = bad_calls(decoder)[case]
    with pytest.raises(error) as raised:
        call()
    assert phrase in str(raised.value)
