"""Several captions per image: ImageTextDataset(captions_per_image=...) yields one row per
(image, caption) with the image's key as group_key, draws exactly and resumably."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import siglip_data
from siglip_data import ImageTextDataset

CAPTIONS = {
    "cat": ["a cat", "a small cat", "a cat on a mat", "grey cat", "the cat sleeps"],
    "dog": ["a dog", "a dog running"],
    "car": ["a red car"],
}


def coco_like_shards(directory: Path) -> list[str]:
    """Three images whose metadata lists their captions (5, 2 and 1), as COCO-style shards do."""
    rng = np.random.default_rng(0)
    samples = [
        {
            "image": rng.integers(0, 256, (6, 6, 3), dtype=np.uint8),
            "caption": captions[0],
            "key": key,
            "metadata": {"captions": captions},
        }
        for key, captions in CAPTIONS.items()
    ]
    return siglip_data.write_shards(samples, directory, samples_per_shard=3)


def dataset(shards: list[str], tokenizer: Any, **options: Any) -> ImageTextDataset:
    defaults: dict[str, Any] = {"image_size": 4, "batch_size": 3, "shuffle": False}
    return ImageTextDataset(shards, tokenizer=tokenizer, **(defaults | options))


def test_all_captions_give_one_row_per_caption_with_the_image_key(
    tmp_path: Path, tokenizer: Any
) -> None:
    shards = coco_like_shards(tmp_path)
    (batch,) = list(dataset(shards, tokenizer, captions_per_image="all"))
    assert batch["group_key"] == ["cat"] * 5 + ["dog"] * 2 + ["car"]
    assert batch["keys"] == batch["group_key"]
    assert batch["captions"] == [text for texts in CAPTIONS.values() for text in texts]
    assert batch["pixels"].shape[0] == batch["token_ids"].shape[0] == 8
    np.testing.assert_array_equal(batch["token_ids"], tokenizer(batch["captions"]))
    # Every row of an image has its pixels.
    (plain,) = list(dataset(shards, tokenizer))
    for row, key in enumerate(batch["group_key"]):
        np.testing.assert_array_equal(
            batch["pixels"][row], plain["pixels"][plain["keys"].index(key)]
        )


def test_k_captions_per_image_gives_a_fixed_batch_drawn_without_repeats_when_possible(
    tmp_path: Path, tokenizer: Any
) -> None:
    shards = coco_like_shards(tmp_path)
    (batch,) = list(dataset(shards, tokenizer, captions_per_image=3))
    assert batch["group_key"] == ["cat"] * 3 + ["dog"] * 3 + ["car"] * 3
    by_key: dict[str, list[str]] = {}
    for key, caption in zip(batch["group_key"], batch["captions"], strict=True):
        by_key.setdefault(key, []).append(caption)
    assert len(set(by_key["cat"])) == 3
    assert set(by_key["cat"]) <= set(CAPTIONS["cat"])
    assert set(by_key["dog"]) == set(CAPTIONS["dog"])  # both, then one repeat
    assert by_key["car"] == ["a red car"] * 3


def test_draws_are_seeded_differ_between_epochs_and_resume_exactly(
    tmp_path: Path, tokenizer: Any
) -> None:
    shards = coco_like_shards(tmp_path)
    options = {"captions_per_image": 2, "batch_size": 1, "seed": 5}
    first = dataset(shards, tokenizer, **options)
    epochs = [[b["captions"] for b in first] for _ in range(4)]
    again = dataset(shards, tokenizer, **options)
    assert [b["captions"] for b in again] == epochs[0]
    assert len({str(epoch) for epoch in epochs}) > 1  # other epochs draw other captions
    resumed = dataset(shards, tokenizer, **options)
    iterator = iter(resumed)
    next(iterator)
    state = resumed.state_dict()
    fresh = dataset(shards, tokenizer, **options)
    fresh.load_state_dict(state)
    assert [b["captions"] for b in fresh] == epochs[0][1:]
    plain = dataset(shards, tokenizer, batch_size=1, seed=5)
    with pytest.raises(ValueError, match="captions_per_image"):
        plain.load_state_dict(state)


def test_samples_without_a_captions_list_use_their_caption_and_bad_lists_are_skipped(
    tmp_path: Path, tokenizer: Any
) -> None:
    image = np.zeros((6, 6, 3), np.uint8)
    samples = [
        {"image": image, "caption": "plain", "key": "a"},
        {"image": image, "caption": "x", "key": "b", "metadata": {"captions": "not a list"}},
        {"image": image, "caption": "y", "key": "c", "metadata": {"captions": ["", " "]}},
    ]
    shards = siglip_data.write_shards(samples, tmp_path, samples_per_shard=3)
    lenient = siglip_data.QualityPolicy(max_bad_fraction=1.0)
    data = dataset(shards, tokenizer, captions_per_image=2, quality=lenient)
    (batch,) = list(data)
    assert batch["captions"] == ["plain", "plain"]
    assert batch["group_key"] == ["a", "a"]
    assert data.skipped["bad_caption"] == 2


@pytest.mark.parametrize("value", [0, -1, 2.5, "some", True])
def test_bad_captions_per_image_raises_a_clear_error(
    tmp_path: Path, tokenizer: Any, value: Any
) -> None:
    shards = coco_like_shards(tmp_path)
    with pytest.raises(ValueError, match=r"captions_per_image must be None, 'all' or an int >= 1"):
        dataset(shards, tokenizer, captions_per_image=value)
