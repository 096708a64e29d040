"""ImageTextDataset with NaflexOptions: per-batch sequence lengths, never ragged, exact resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import siglip_data
from siglip_data import DecodeOptions
from siglip_data import ImageTextDataset
from siglip_data import Topology
from siglip_data.naflex import NaflexOptions
from siglip_data.naflex import naflex_preprocess

LENGTHS = (4, 6, 9)


def write_wide_and_tall_shards(directory: Path, count: int = 17) -> list[str]:
    """Images of many aspect ratios (6 x 40 strips to 40 x 6 columns), keys i000..."""
    rng = np.random.default_rng(0)
    samples = []
    for index in range(count):
        height, width = (6, 40) if index % 3 == 0 else (40, 6) if index % 3 == 1 else (20, 24)
        image = rng.integers(0, 256, (height + index % 4, width, 3), dtype=np.uint8)
        samples.append((image, f"image {index}", {"index": index}))
    return siglip_data.write_shards(samples, directory, samples_per_shard=5)


def make_dataset(shards: list[str], tokenizer: Any, **options: Any) -> ImageTextDataset:
    defaults: dict[str, Any] = {
        "naflex": NaflexOptions(sequence_lengths=LENGTHS, patch_size=4),
        "batch_size": 3,
        "shuffle_buffer": 6,
        "seed": 2,
    }
    return ImageTextDataset(shards, tokenizer=tokenizer, **(defaults | options))


def test_naflex_batches_draw_their_length_from_the_set_and_are_never_ragged(
    tmp_path: Path, tokenizer: Any
) -> None:
    shards = write_wide_and_tall_shards(tmp_path)
    dataset = make_dataset(shards, tokenizer)
    batches = [batch for _ in range(3) for batch in dataset]
    lengths = {batch["patches"].shape[1] for batch in batches}
    assert lengths == set(LENGTHS)
    for batch in batches:
        size, length = batch["patches"].shape[:2]
        assert "pixels" not in batch
        assert batch["patches"].shape == (size, length, 48)
        assert batch["patches"].dtype == np.float32
        assert batch["patch_mask"].shape == (size, length)
        assert batch["patch_mask"].dtype == np.bool_
        assert batch["spatial_shapes"].dtype == np.int32
        counts = batch["spatial_shapes"].prod(axis=1)
        assert (counts <= length).all()
        np.testing.assert_array_equal(batch["patch_mask"].sum(axis=1), counts)
        assert batch["token_ids"].shape[0] == size


def test_naflex_batches_equal_naflex_preprocess_of_each_image(
    tmp_path: Path, tokenizer: Any
) -> None:
    shards = write_wide_and_tall_shards(tmp_path, count=6)
    images = {
        sample.key: sample.image for shard in shards for sample in siglip_data.read_shard(shard)
    }
    for batch in make_dataset(shards, tokenizer, shuffle=False):
        length = batch["patches"].shape[1]
        for row, key in enumerate(batch["keys"]):
            record = naflex_preprocess(images[key], patch_size=4, max_num_patches=length)
            np.testing.assert_array_equal(batch["patches"][row], record.patches)
            assert tuple(batch["spatial_shapes"][row]) == record.spatial_shape


@settings(max_examples=6)
@given(stop_after=st.integers(1, 14), threads=st.sampled_from([0, 2]), world_size=st.integers(1, 2))
def test_resuming_a_naflex_stream_from_any_batch_is_exact(
    tmp_path_factory: pytest.TempPathFactory,
    tokenizer: Any,
    stop_after: int,
    threads: int,
    world_size: int,
) -> None:
    shards = write_wide_and_tall_shards(tmp_path_factory.mktemp("naflex-resume"))
    options: dict[str, Any] = {
        "topology": Topology(world_size=world_size),
        "decode": DecodeOptions(num_threads=threads),
    }
    uninterrupted = make_dataset(shards, tokenizer, **options)
    reference = [batch for _ in range(3) for batch in uninterrupted]
    interrupted = make_dataset(shards, tokenizer, **options)
    got: list[dict[str, Any]] = []
    iterator = iter(interrupted)
    while len(got) < min(stop_after, len(reference)):
        batch = next(iterator, None)
        if batch is None:
            iterator = iter(interrupted)
            continue
        got.append(batch)
    resumed = make_dataset(shards, tokenizer, **options)
    resumed.load_state_dict(json.loads(json.dumps(interrupted.state_dict())))
    while len(got) < len(reference):
        got.extend(list(resumed))
    assert [batch["keys"] for batch in got] == [batch["keys"] for batch in reference]
    for ours, theirs in zip(got, reference):
        for name in ("patches", "patch_mask", "spatial_shapes", "token_ids"):
            np.testing.assert_array_equal(ours[name], theirs[name])


def test_naflex_options_are_checked_and_recorded_in_the_state(
    tmp_path: Path, tokenizer: Any
) -> None:
    shards = write_wide_and_tall_shards(tmp_path, count=4)
    with pytest.raises(ValueError, match="exactly one of image_size"):
        make_dataset(shards, tokenizer, image_size=8)
    with pytest.raises(ValueError, match="exactly one of image_size"):
        make_dataset(shards, tokenizer, naflex=None)
    with pytest.raises(ValueError, match="float32 patches without augmentation"):
        make_dataset(shards, tokenizer, decode=DecodeOptions(pixel_dtype="uint8"))
    state = make_dataset(shards, tokenizer).state_dict()
    other = make_dataset(
        shards, tokenizer, naflex=NaflexOptions(sequence_lengths=(8,), patch_size=4)
    )
    with pytest.raises(ValueError, match="naflex_sequence_lengths"):
        other.load_state_dict(state)
