"""siglip-data shard readers: labels and captions from metadata, errors named by shard and key."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import siglip_data
from siglip_eval import evaluate_retrieval
from siglip_eval import evaluate_zeroshot
from siglip_eval._templates import ONE_TEMPLATE
from siglip_eval.datasets import built_dataset
from siglip_eval.datasets import classification_shards
from siglip_eval.datasets import retrieval_shards

NAMES = ["red", "green", "blue"]


def solid(toys, color: str) -> Image.Image:
    return Image.new("RGB", (12, 12), tuple(int((v + 1) * 127.5) for v in toys.colors[color]))


def write(tmp_path, toys, colors, metadata=None, captions=None):
    samples = []
    for index, color in enumerate(colors):
        meta = {"label": NAMES.index(color)} if metadata is None else metadata[index]
        caption = f"a {color} square" if captions is None else captions[index]
        samples.append(
            {
                "image": solid(toys, color),
                "caption": caption,
                "key": f"s{index:03d}",
                "metadata": meta,
            }
        )
    return siglip_data.write_shards(samples, tmp_path, samples_per_shard=3)


def test_classification_shards_read_labels_in_order(tmp_path, toys) -> None:
    colors = ["red", "green", "blue", "blue", "red", "green", "green"]
    paths = write(tmp_path, toys, colors)
    assert len(paths) == 3
    dataset = classification_shards(tmp_path, class_names=NAMES, image_size=6, name="squares")
    result = evaluate_zeroshot(
        toys.color_encoder(), dataset, templates=ONE_TEMPLATE, batch_size=2, progress=False
    )
    assert result.labels.tolist() == [NAMES.index(c) for c in colors]
    assert result.keys == [f"s{i:03d}" for i in range(7)]
    assert result.metrics["top1"] == 1.0


def test_sample_without_label_is_named(tmp_path, toys) -> None:
    write(tmp_path, toys, ["red", "green"], metadata=[{"label": 0}, {"other": 1}])
    dataset = classification_shards(tmp_path, class_names=NAMES, image_size=6, name="squares")
    with pytest.raises(ValueError, match=r"squares.*sample 's001'.*metadata\['label'\]"):
        evaluate_zeroshot(toys.color_encoder(), dataset, templates=ONE_TEMPLATE, progress=False)


def test_label_out_of_range_is_named(tmp_path, toys) -> None:
    write(tmp_path, toys, ["red"], metadata=[{"label": 7}])
    dataset = classification_shards(tmp_path, class_names=NAMES, image_size=6)
    with pytest.raises(ValueError, match=r"sample 's000'.*label 7 is outside \[0, 3\)"):
        evaluate_zeroshot(toys.color_encoder(), dataset, templates=ONE_TEMPLATE, progress=False)


def test_retrieval_shards_use_metadata_captions_or_the_txt(tmp_path, toys) -> None:
    write(
        tmp_path,
        toys,
        ["red", "blue"],
        metadata=[{"captions": ["red", "very red"]}, {}],
        captions=["ignored", "blue"],
    )
    result = evaluate_retrieval(
        toys.color_encoder(), retrieval_shards(tmp_path, image_size=6), ks=(1,), progress=False
    )
    assert result.text_to_image.tolist() == [0, 0, 1]
    assert result.metrics == {"image_to_text_R@1": 1.0, "text_to_image_R@1": 1.0}


def test_empty_shard_folder_is_an_error(tmp_path, toys) -> None:
    with pytest.raises(ValueError, match=r"no \.tar"):
        evaluate_zeroshot(
            toys.color_encoder(),
            classification_shards(tmp_path, class_names=NAMES, image_size=6),
            progress=False,
        )


def test_built_dataset_reads_dataset_json(tmp_path, toys) -> None:
    paths = write(tmp_path / "test", toys, ["red", "green", "blue"])
    info = siglip_data.builders.DatasetInfo(
        name="squares",
        splits={
            "test": siglip_data.builders.SplitInfo(
                str(tmp_path / "test" / "shard-*.tar"), tuple(paths), 3
            )
        },
        class_names=tuple(NAMES),
        caption_names=tuple(NAMES),
        caption_templates=("a {} square.",),
        image_size=12,
        label_key="label",
    )
    (tmp_path / "dataset.json").write_text(info.to_json())
    dataset, templates = built_dataset(tmp_path, split="test", image_size=6)
    assert templates == ("a {} square.",)
    result = evaluate_zeroshot(toys.color_encoder(), dataset, templates=templates, progress=False)
    assert result.metrics["top1"] == 1.0
    assert result.dataset == "squares:test"
    with pytest.raises(ValueError, match="split"):
        built_dataset(tmp_path, split="train", image_size=6)


def test_pixels_match_siglip_data_preprocessing(tmp_path, toys) -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (9, 13, 3), dtype=np.uint8))
    siglip_data.write_shards(
        [{"image": image, "caption": "x", "key": "a", "metadata": {"label": 0}}], tmp_path
    )
    dataset = classification_shards(tmp_path, class_names=["x"], image_size=7, resample="bilinear")
    batch = next(dataset.batches(4))
    expected = siglip_data.preprocess_image(image, size=7, resample="bilinear")
    np.testing.assert_array_equal(batch.pixels[0], expected)
