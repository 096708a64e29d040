"""Jitted Flax towers: eager's numbers within 1e-5, one program per batch bucket (and, for a
NaFlex tower, per sequence length)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from siglip_models.flax import SiglipModel
from siglip_models.flax import jit_towers


@pytest.fixture(scope="module")
def tiny_model(hf_reference: Callable[[str], tuple[Path, Any]]) -> SiglipModel:
    return SiglipModel.from_pretrained(hf_reference("tiny-test")[0])


def test_jitted_towers_equal_eager_within_1e5_and_share_one_program_per_bucket(
    tiny_model: SiglipModel,
) -> None:
    towers = jit_towers(tiny_model)
    rng = np.random.default_rng(0)
    # Rows never interact, so eager runs once (op by op, the slow part) on the largest batch and
    # the smaller batches are its first rows.
    pixels = rng.uniform(-1, 1, (7, 32, 32, 3)).astype(np.float32)
    token_ids = rng.integers(0, 100, (7, 16)).astype(np.int32)
    eager_image = np.asarray(tiny_model.encode_image(pixels))
    eager_text = np.asarray(tiny_model.encode_text(token_ids))
    for batch in (5, 6, 7):  # all padded to 8
        image_emb = np.asarray(towers.encode_image(pixels[:batch]))
        text_emb = np.asarray(towers.encode_text(token_ids[:batch]))
        assert image_emb.shape == (batch, 32)
        np.testing.assert_allclose(image_emb, eager_image[:batch], atol=1e-5, rtol=0)
        np.testing.assert_allclose(text_emb, eager_text[:batch], atol=1e-5, rtol=0)
    assert towers.image_program._cache_size() == 1
    assert towers.text_program._cache_size() == 1
    towers.encode_text(np.ones((9, 16), np.int32))  # the next bucket, 16
    assert towers.text_program._cache_size() == 2


def test_jitted_naflex_tower_equals_eager_within_1e5_one_program_per_bucket_and_length(
    hf_reference: Callable[[str], tuple[Path, Any]],
    naflex_batch: Callable[..., tuple[Any, Any, Any]],
) -> None:
    model = SiglipModel.from_pretrained(hf_reference("tiny-test-naflex")[0])
    towers = jit_towers(model)
    # Seven images of other grids (shrinking and enlarging the 4x4 position grid), L = 24.
    grids = [(2, 7), (1, 24), (4, 4), (24, 1), (3, 5), (1, 1), (6, 4)]
    patches, mask, shapes = naflex_batch(grids, length=24, seed=0)
    eager = np.asarray(model.encode_image_naflex(patches, mask, shapes.astype(np.int32)))
    for batch in (5, 7):  # both padded to 8: one program
        got = np.asarray(towers.encode_image_naflex(patches[:batch], mask[:batch], shapes[:batch]))
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, eager[:batch], atol=1e-5, rtol=0)
    assert towers.naflex_program._cache_size() == 1
    with pytest.raises(ValueError, match="gives 14"):  # concrete values checked before padding
        towers.encode_image_naflex(patches[:1], mask[1:2], shapes[:1])
    with pytest.raises(ValueError, match="fixed-resolution model"):
        jit_towers(SiglipModel("tiny-test")).encode_image_naflex(patches, mask, shapes)


def test_without_buckets_every_batch_size_compiles(tiny_model: SiglipModel) -> None:
    towers = jit_towers(tiny_model, buckets=None)
    for batch in (1, 2):
        towers.encode_text(np.ones((batch, 16), np.int32))
    assert towers.text_program._cache_size() == 2


def test_jitted_towers_check_inputs(tiny_model: SiglipModel) -> None:
    towers = jit_towers(tiny_model)
    with pytest.raises(ValueError, match="32x32"):
        towers.encode_image(np.zeros((2, 48, 48, 3), np.float32))
    with pytest.raises(ValueError, match="padded"):
        towers.encode_text(np.ones((2, 8), np.int32))
    with pytest.raises(ValueError, match="buckets"):
        jit_towers(tiny_model, buckets="linear")
    with pytest.raises(TypeError, match="SiglipModel"):
        jit_towers(object())  # type: ignore[arg-type]
