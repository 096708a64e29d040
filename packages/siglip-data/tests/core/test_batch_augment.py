"""``augment_batch``: a pure function of (seed, step), neutral when off, flips only where allowed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from siglip_data.augment import BatchAugmentation
from siglip_data.augment import augment_batch


def _rgba(count: int = 6, side: int = 12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, side, side, 4), dtype=np.uint8)


@given(seed=st.integers(0, 2**31), step=st.integers(0, 10**6))
def test_the_same_seed_and_step_give_the_same_batch(seed: int, step: int) -> None:
    pixels = _rgba()
    first = augment_batch(pixels, config=BatchAugmentation(), seed=seed, step=step)
    again = augment_batch(pixels.copy(), config=BatchAugmentation(), seed=seed, step=step)
    np.testing.assert_array_equal(first, again)
    other = augment_batch(pixels, config=BatchAugmentation(), seed=seed + 1, step=step)
    assert not np.array_equal(first, other)


def test_resuming_at_a_step_reproduces_the_uninterrupted_sequence() -> None:
    pixels = _rgba()
    config = BatchAugmentation()
    uninterrupted = [augment_batch(pixels, config=config, seed=7, step=s) for s in range(5)]
    resumed = [augment_batch(pixels, config=config, seed=7, step=s) for s in range(3, 5)]
    for expected, got in zip(uninterrupted[3:], resumed, strict=True):
        np.testing.assert_array_equal(expected, got)


@given(seed=st.integers(0, 1000))
def test_off_only_composites_onto_white(seed: int) -> None:
    pixels = _rgba(seed=seed)
    out = augment_batch(pixels, config=BatchAugmentation.off(), seed=seed, step=0)
    rgb = pixels[..., :3].astype(np.float64)
    alpha = pixels[..., 3:].astype(np.float64) / 255
    oracle = rgb * alpha + 255 * (1 - alpha)
    np.testing.assert_allclose(out, oracle, atol=1.0)


def test_unflippable_images_are_never_mirrored() -> None:
    # Left half dark, right half transparent: a mirror moves the dark half to the right.
    pixels = np.zeros((64, 8, 8, 4), dtype=np.uint8)
    pixels[:, :, :4, 3] = 255
    flip_only = BatchAugmentation(
        crop_scale=(1.0, 1.0),
        crop_ratio=(1.0, 1.0),
        flip=True,
        brightness=0.0,
        contrast=0.0,
        saturation=0.0,
        grayscale=0.0,
        background=0.0,
    )
    allowed = np.arange(64) % 2 == 0
    out = augment_batch(pixels, config=flip_only, seed=0, step=0, flippable=allowed)
    mirrored = out[:, 0, 0, 0] == 255
    assert not mirrored[~allowed].any()
    assert 10 < mirrored[allowed].sum() < 32  # about half of the allowed ones


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="uint8"):
        augment_batch(np.zeros((1, 4, 4, 3)), config=BatchAugmentation(), seed=0, step=0)
    with pytest.raises(ValueError, match="crop_scale"):
        BatchAugmentation(crop_scale=(0.0, 1.0))
