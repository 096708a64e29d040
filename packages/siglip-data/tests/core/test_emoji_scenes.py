"""Emoji scenes (grounded data for LocCa and the dense probe) and the box <-> text helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import siglip_data
from siglip_data._builders import emoji_split
from siglip_data._cli import main
from siglip_data.grounding import box_iou
from siglip_data.grounding import box_to_text
from siglip_data.grounding import check_box
from siglip_data.grounding import locca_prompts
from siglip_data.grounding import text_to_box

needs_scene_data = pytest.mark.debian_data("emoji", "fashion-mnist")


@given(
    image_size=st.integers(16, 512),
    bins=st.integers(2, 1000),
    corners=st.lists(st.floats(0, 1), min_size=4, max_size=4),
)
def test_box_text_round_trip_is_within_one_bin(image_size: int, bins: int, corners: list) -> None:
    x0, x1 = sorted(corners[:2])
    y0, y1 = sorted(corners[2:])
    if x1 - x0 < 1e-3 or y1 - y0 < 1e-3:
        return
    box = [x0 * image_size, y0 * image_size, x1 * image_size, y1 * image_size]
    text = box_to_text(box, image_size=image_size, bins=bins)
    assert all(0 <= int(value) < bins for value in text.split())
    decoded = text_to_box(text, image_size=image_size, bins=bins)
    bin_width = image_size / bins
    assert np.allclose(decoded, box, atol=bin_width + 1e-6)


@pytest.mark.parametrize(
    "box", [[-1, 0, 10, 10], [0, 0, 65, 10], [10, 10, 5, 20], [0, 0, 10], [0, 0, float("nan"), 4]]
)
def test_boxes_outside_the_canvas_or_empty_are_rejected_clearly(box: list) -> None:
    with pytest.raises(ValueError, match=r"canvas|empty|four|non-finite|numbers"):
        check_box(box, image_size=64)
    with pytest.raises(ValueError):
        locca_prompts("a cat", "cat", box, image_size=64)


def test_text_to_box_rejects_malformed_text() -> None:
    with pytest.raises(ValueError, match="four integers"):
        text_to_box("12 13 fish", image_size=64)
    with pytest.raises(ValueError, match="outside"):
        text_to_box("1 2 3 100", image_size=64, bins=100)
    assert box_iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0


@needs_scene_data
def test_build_emoji_scenes_writes_consistent_boxes_maps_and_unseen_layouts(
    tmp_path: Path,
) -> None:
    info = siglip_data.builders.build_emoji_scenes(
        tmp_path, image_size=48, train_scenes=60, test_scenes=12, heldout_scenes=12,
        emoji_names=30, samples_per_shard=25,
    )  # fmt: skip
    assert {name: split.num_samples for name, split in info.splits.items()} == {
        "train": 60, "test": 12, "heldout": 12,
    }  # fmt: skip
    assert siglip_data.builders.load_dataset_info(tmp_path).name == "emoji-scenes"
    categories = siglip_data.builders.scene_categories()
    names: dict[str, set[str]] = {}
    layouts: dict[str, set[tuple]] = {}
    for split in info.splits:
        names[split] = set()
        layouts[split] = set()
        for shard in info.splits[split].shards:
            for sample in siglip_data.read_shard(shard):
                metadata = sample.metadata
                assert metadata is not None
                objects = metadata["objects"]
                assert 1 <= len(objects) <= 4
                assert len({item["name"] for item in objects}) == len(objects)
                object_map = siglip_data.builders.decode_object_map(metadata)
                assert object_map.shape == (48, 48)
                assert set(np.unique(object_map)) <= set(range(len(objects) + 1))
                labels = siglip_data.builders.category_map(metadata)
                for index, item in enumerate(objects, start=1):
                    check_box(item["box"], image_size=48)
                    assert categories[item["category_label"]] == item["category"]
                    assert item["name"] in sample.caption
                    rows, columns = np.nonzero(object_map == index)
                    assert rows.size > 0  # every object stays visible
                    x0, y0, x1, y1 = item["box"]
                    assert x0 <= columns.min()
                    assert columns.max() < x1
                    assert y0 <= rows.min()
                    assert rows.max() < y1
                    assert np.all(labels[object_map == index] == item["category_label"])
                    if item["source"] == "emoji":
                        names[split].add(item["name"])
                layouts[split].add(tuple(sorted(tuple(item["box"]) for item in objects)))
    # The demo's name-level split: held-out scenes only hold held-out emoji names.
    assert {emoji_split(name) for name in names["train"] | names["test"]} == {"train"}
    assert {emoji_split(name) for name in names["heldout"]} == {"heldout"}
    assert not layouts["test"] & layouts["train"]


@needs_scene_data
def test_emoji_scenes_cli_builds_the_three_splits(tmp_path: Path, capsys) -> None:
    status = main(
        ["build", "emoji-scenes", str(tmp_path), "--scenes", "5,2,2", "--emoji-names", "10",
         "--image-size", "32"]
    )  # fmt: skip
    assert status == 0
    output = capsys.readouterr().out
    assert "train: 5 samples" in output
    assert "heldout: 2 samples" in output
