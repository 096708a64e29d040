"""NaFlex preprocessing: the target size search, transformers parity, the two orders, collate."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import pytest
import transformers
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from PIL import Image

from siglip_data.naflex import NaflexOptions
from siglip_data.naflex import NaflexPatches
from siglip_data.naflex import collate_naflex
from siglip_data.naflex import naflex_preprocess
from siglip_data.naflex import naflex_target_size
from siglip_data.naflex import patchify
from siglip_data.naflex import unpatchify

# One uint8 level in [-1, 1] (2 / 255), plus float32 rounding of the two scalings.
ONE_LEVEL = 2 / 255 + 1e-6


# Computed with transformers' get_image_size_for_max_num_patches (shared/reference naflex.md).
@pytest.mark.parametrize(
    ("height", "width", "budget", "expected"),
    [
        (2200, 1700, 256, (288, 224)),
        (2200, 1700, 1024, (576, 448)),
        (480, 640, 256, (224, 288)),
        (480, 640, 1024, (432, 576)),
        (224, 224, 256, (256, 256)),
        (224, 224, 1024, (512, 512)),
        (300, 301, 256, (256, 256)),
        (300, 301, 1024, (512, 512)),
        (1000, 100, 256, (800, 80)),
        (1000, 100, 1024, (1600, 160)),
        (17, 5000, 256, (16, 4096)),
        (17, 5000, 1024, (32, 8192)),
    ],
)
def test_target_size_equals_the_reference_test_vectors(
    height: int, width: int, budget: int, expected: tuple[int, int]
) -> None:
    assert naflex_target_size(height, width, patch_size=16, max_num_patches=budget) == expected


sides = st.integers(1, 5000)
patch_sizes = st.sampled_from([4, 14, 16])
budgets = st.integers(1, 1200)


@given(height=sides, width=sides, patch=patch_sizes, budget=budgets)
def test_target_size_never_exceeds_the_budget_and_keeps_the_aspect_within_one_patch(
    height: int, width: int, patch: int, budget: int
) -> None:
    new_height, new_width = naflex_target_size(
        height, width, patch_size=patch, max_num_patches=budget
    )
    assert new_height % patch == 0
    assert new_width % patch == 0
    assert new_height >= patch
    assert new_width >= patch
    assert (new_height // patch) * (new_width // patch) <= budget

    # Some one scale s gives both sides by rounding up to a patch: side * s in (side' - p,
    # side'] (or anywhere up to p for a side clamped to one patch).
    def interval(side: int, new_side: int) -> tuple[float, float]:
        low = 0.0 if new_side == patch else (new_side - patch) / side
        return low, new_side / side

    low = max(interval(height, new_height)[0], interval(width, new_width)[0])
    high = min(interval(height, new_height)[1], interval(width, new_width)[1])
    assert low < high


@given(height=sides, width=sides, patch=patch_sizes, budgets=st.tuples(budgets, budgets))
def test_target_size_is_monotone_in_the_budget(
    height: int, width: int, patch: int, budgets: tuple[int, int]
) -> None:
    small, large = sorted(budgets)
    small_size = naflex_target_size(height, width, patch_size=patch, max_num_patches=small)
    large_size = naflex_target_size(height, width, patch_size=patch, max_num_patches=large)
    assert small_size[0] <= large_size[0]
    assert small_size[1] <= large_size[1]


@functools.cache
def hf_processor() -> Any:
    return transformers.Siglip2ImageProcessorPil()


def make_image(seed: int, height: int, width: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    # Smooth content plus noise: resize differences show up on edges and on flat areas.
    ramp = np.linspace(0, 255, width)[None, :, None] * np.ones((height, 1, 3))
    noise = rng.integers(0, 64, (height, width, 3))
    return Image.fromarray(np.clip(ramp * 0.7 + noise, 0, 255).astype(np.uint8))


@settings(max_examples=8)
@given(
    seed=st.integers(0, 1000),
    height=st.integers(1, 300),
    width=st.integers(1, 300),
    patch=st.sampled_from([8, 16]),
    budget=st.sampled_from([4, 16, 64, 100]),
)
def test_hf_order_equals_transformers_siglip2_pil_processor_for_any_image(
    seed: int, height: int, width: int, patch: int, budget: int
) -> None:
    image = make_image(seed, height, width)
    expected = hf_processor()(image, patch_size=patch, max_num_patches=budget, return_tensors="np")
    ours = naflex_preprocess(image, patch_size=patch, max_num_patches=budget, order="hf")
    assert ours.patches.shape == expected["pixel_values"][0].shape == (budget, 3 * patch * patch)
    assert ours.patches.dtype == np.float32
    np.testing.assert_array_equal(ours.patch_mask, expected["pixel_attention_mask"][0] == 1)
    assert ours.spatial_shape == tuple(expected["spatial_shapes"][0].tolist())
    np.testing.assert_allclose(ours.patches, expected["pixel_values"][0], rtol=0, atol=ONE_LEVEL)


def test_big_vision_order_scales_first_and_stays_within_two_levels_of_hf_order() -> None:
    image = make_image(3, 300, 170)
    hf = naflex_preprocess(image, max_num_patches=64, order="hf")
    big_vision = naflex_preprocess(image, max_num_patches=64, order="big_vision")
    assert hf.spatial_shape == big_vision.spatial_shape
    np.testing.assert_array_equal(hf.patch_mask, big_vision.patch_mask)
    difference = np.abs(hf.patches - big_vision.patches)[hf.patch_mask]
    # Not rounded to uint8 in between, and not Pillow's fixed-point taps: a fraction of a level
    # on average, never more than about two levels (docs/naflex.md states the measured values).
    assert 0 < difference.mean() < 0.5 * 2 / 255
    assert difference.max() < 2.5 * 2 / 255


def test_big_vision_order_equals_a_float64_triangle_filter() -> None:
    pixels = np.random.default_rng(0).uniform(-1, 1, (37, 23, 3))
    image = Image.fromarray(np.round((pixels + 1) * 127.5).astype(np.uint8))
    record = naflex_preprocess(image, patch_size=4, max_num_patches=12, order="big_vision")
    rows, cols = record.spatial_shape

    def weights(source: int, target: int) -> np.ndarray:
        matrix = np.zeros((target, source))
        scale = source / target
        for out in range(target):
            centre = (out + 0.5) * scale - 0.5
            for index in range(source):
                matrix[out, index] = max(0, 1 - abs(index - centre) / max(scale, 1))
            matrix[out] /= matrix[out].sum()
        return matrix

    values = np.asarray(image, np.float64) * 2 / 255 - 1
    expected = np.einsum("hy,yxc,wx->hwc", weights(37, rows * 4), values, weights(23, cols * 4))
    np.testing.assert_allclose(record.image(), expected, atol=1e-5)


def test_record_is_padded_masked_and_unpatchifies_to_the_resized_image() -> None:
    image = np.random.default_rng(1).integers(0, 256, (20, 50, 3), dtype=np.uint8)
    record = naflex_preprocess(image, patch_size=10, max_num_patches=12)
    assert record.spatial_shape == (2, 5)
    assert record.patches.shape == (12, 300)
    assert record.patch_mask.tolist() == [True] * 10 + [False] * 2
    assert not record.patches[10:].any()
    # The image is already 2 x 5 patches of 10: no resize, only scaling.
    np.testing.assert_allclose(record.image(), image * (2 / 255) - 1, atol=1e-6)
    # Inside a patch: (patch_row, patch_col, channel); patches row-major over the grid.
    second = record.patches[1].reshape(10, 10, 3)
    np.testing.assert_allclose(second, image[:10, 10:20] * (2 / 255) - 1, atol=1e-6)


@given(rows=st.integers(1, 6), cols=st.integers(1, 6), patch=st.integers(1, 5))
def test_unpatchify_inverts_patchify_for_any_grid(rows: int, cols: int, patch: int) -> None:
    image = np.arange(rows * patch * cols * patch * 3).reshape(rows * patch, cols * patch, 3)
    patches = patchify(image, patch)
    assert patches.shape == (rows * cols, patch * patch * 3)
    padded = np.concatenate([patches, np.zeros((2, patches.shape[1]), patches.dtype)])
    np.testing.assert_array_equal(unpatchify(padded, (rows, cols), patch), image)


def test_collate_stacks_one_length_and_refuses_ragged_batches() -> None:
    images = [np.zeros((16, 48, 3), np.uint8), np.zeros((40, 8, 3), np.uint8)]
    records = [naflex_preprocess(image, patch_size=8, max_num_patches=6) for image in images]
    batch = collate_naflex(records)
    assert batch.patches.shape == (2, 6, 192)
    assert len(batch) == 2
    assert batch.spatial_shapes.dtype == np.int32
    assert batch.spatial_shapes.tolist() == [[1, 3], [5, 1]]  # 2 x 4 would exceed 6
    assert batch.patch_mask.sum(axis=1).tolist() == [3, 5]
    other = naflex_preprocess(images[0], patch_size=8, max_num_patches=7)
    with pytest.raises(ValueError, match="same \\[max_num_patches"):
        collate_naflex([*records, other])
    with pytest.raises(ValueError, match="at least one record"):
        collate_naflex([])


def test_bad_arguments_raise_clear_errors() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="order must be one of"):
        naflex_preprocess(image, order="tf")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_num_patches must be a positive int"):
        naflex_preprocess(image, max_num_patches=0)
    with pytest.raises(ValueError, match="patch_size must be a positive int"):
        naflex_target_size(8, 8, patch_size=0, max_num_patches=4)
    with pytest.raises(ValueError, match="multiples of patch_size=3"):
        patchify(np.zeros((4, 6, 3)), 3)
    with pytest.raises(ValueError, match="sequence_lengths must not be empty"):
        NaflexOptions(sequence_lengths=())
    with pytest.raises(ValueError, match="order must be one of"):
        NaflexOptions(order="bv")  # type: ignore[arg-type]


def test_sequence_length_is_drawn_per_batch_position_and_reproducible() -> None:
    options = NaflexOptions(sequence_lengths=(128, 256, 576, 784, 1024))
    lengths = [options.sequence_length(0, 0, 0, position) for position in range(0, 400, 8)]
    assert set(lengths) == {128, 256, 576, 784, 1024}
    assert lengths == [options.sequence_length(0, 0, 0, position) for position in range(0, 400, 8)]
    assert lengths != [options.sequence_length(1, 0, 0, position) for position in range(0, 400, 8)]
    assert math.isclose(np.mean([length == 1024 for length in lengths]), 0.2, abs_tol=0.15)
    assert NaflexPatches.__dataclass_fields__.keys() == {"patches", "patch_mask", "spatial_shape"}
