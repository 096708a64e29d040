"""Retrieval protocol: readers (Karpathy JSON, JSON lines, arrays), known answers, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from siglip_eval import EmbeddingCache
from siglip_eval import Encoder
from siglip_eval import evaluate_retrieval
from siglip_eval import retrieval_from_embeddings
from siglip_eval.datasets import karpathy_json
from siglip_eval.datasets import retrieval_arrays
from siglip_eval.datasets import retrieval_jsonl


def save_solid(path, rgb) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (10, 6), tuple(int((v + 1) * 127.5) for v in rgb)).save(path)


def test_toy_retrieval_with_several_captions_per_image(toys) -> None:
    colors = ["red", "green", "blue"]
    captions = [["a red thing", "something red"], ["green!"], ["blue", "a blue one", "blue again"]]
    dataset = retrieval_arrays(toys.solid_images(colors), captions, name="toy")
    result = evaluate_retrieval(
        toys.color_encoder(), dataset, ks=(1, 2), batch_size=2, progress=False
    )
    assert result.metrics == {
        "image_to_text_R@1": 1.0,
        "image_to_text_R@2": 1.0,
        "text_to_image_R@1": 1.0,
        "text_to_image_R@2": 1.0,
    }
    assert result.text_to_image.tolist() == [0, 0, 1, 2, 2, 2]
    assert result.to_dict()["num_texts"] == 6


def test_toy_retrieval_known_misses(toys) -> None:
    # Image 1 (green) is described as "blue": its caption retrieves image 2 first.
    dataset = retrieval_arrays(
        toys.solid_images(["red", "green", "blue"]), [["red"], ["blue"], ["blue"]]
    )
    result = evaluate_retrieval(toys.color_encoder(), dataset, ks=(1, 3), progress=False)
    assert result.metrics["text_to_image_R@1"] == pytest.approx(2 / 3)
    assert result.metrics["text_to_image_R@3"] == 1.0
    # Image->text under the "index" tie rule: the two "blue" captions embed identically, so the
    # blue image's own caption (index 2) ties with caption 1 and ranks second; the green image
    # is equidistant from all captions and its caption 1 ranks after caption 0.
    assert result.metrics["image_to_text_R@1"] == pytest.approx(1 / 3)
    assert result.image_ranks.tolist() == [0, 1, 1]
    assert result.tied_queries == 2


def test_karpathy_json_reads_the_split_and_all_sentences(tmp_path, toys) -> None:
    images = []
    for index, color in enumerate(["red", "green", "blue", "red"]):
        save_solid(tmp_path / "val2014" / f"{index}.jpg", toys.colors[color])
        images.append(
            {
                "filepath": "val2014",
                "filename": f"{index}.jpg",
                "split": "test" if index < 3 else "train",
                "sentences": [
                    {"raw": f"a {color} photo ", "tokens": []},
                    {"raw": f"{color}", "tokens": []},
                ],
            }
        )
    annotation = tmp_path / "dataset_coco.json"
    annotation.write_text(json.dumps({"images": images, "dataset": "coco"}))
    dataset = karpathy_json(annotation, tmp_path, image_size=4)
    assert dataset.size == 3
    result = evaluate_retrieval(toys.color_encoder(), dataset, progress=False)
    assert result.to_dict()["num_texts"] == 6
    assert set(result.metrics.values()) == {1.0}
    first_only = karpathy_json(annotation, tmp_path, image_size=4, captions_per_image=1)
    assert (
        evaluate_retrieval(toys.color_encoder(), first_only, progress=False).to_dict()["num_texts"]
        == 3
    )
    with pytest.raises(ValueError, match=r"split 'val'.*splits present"):
        karpathy_json(annotation, tmp_path, image_size=4, split="val")


def test_karpathy_image_without_sentences_is_named(tmp_path) -> None:
    annotation = tmp_path / "dataset_flickr30k.json"
    annotation.write_text(
        json.dumps({"images": [{"filename": "x.jpg", "split": "test", "sentences": []}]})
    )
    with pytest.raises(ValueError, match=r"at least one caption.*x\.jpg"):
        karpathy_json(annotation, tmp_path, image_size=4)


def test_missing_image_file_is_named(tmp_path, toys) -> None:
    annotation = tmp_path / "a.json"
    annotation.write_text(
        json.dumps(
            {"images": [{"filename": "gone.jpg", "split": "test", "sentences": [{"raw": "red"}]}]}
        )
    )
    dataset = karpathy_json(annotation, tmp_path, image_size=4)
    with pytest.raises(FileNotFoundError, match=r"gone\.jpg"):
        evaluate_retrieval(toys.color_encoder(), dataset, progress=False)


def test_jsonl_merges_lines_of_the_same_image(tmp_path, toys) -> None:
    save_solid(tmp_path / "r.png", toys.colors["red"])
    save_solid(tmp_path / "b.png", toys.colors["blue"])
    lines = [
        {"image": "r.png", "caption": "red"},
        {"image": "b.png", "captions": ["blue", "so blue"]},
        {"image": "r.png", "captions": ["very red"]},
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    result = evaluate_retrieval(
        toys.color_encoder(), retrieval_jsonl(path, image_size=4), ks=(1,), progress=False
    )
    assert result.text_to_image.tolist() == [0, 0, 1, 1]
    assert result.keys == ["r.png", "b.png"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"image": "r.png"}) + "\n")
    with pytest.raises(ValueError, match=r"line 1 .*'r\.png'.*captions"):
        retrieval_jsonl(bad, image_size=4)


def test_caption_list_count_mismatch_is_an_error(toys) -> None:
    with pytest.raises(ValueError, match=r"one caption list per image \(3\), got 2"):
        retrieval_arrays(toys.solid_images(["red", "green", "blue"]), [["a"], ["b"]])
    with pytest.raises(ValueError, match=r"at least one caption.*item '1'"):
        retrieval_arrays(toys.solid_images(["red", "green"]), [["red"], []])


def test_nan_text_embedding_names_the_caption(toys) -> None:
    def encode_texts(texts: list[str]) -> np.ndarray:
        out = toys.color_encoder().encode_texts(texts)
        return np.where(np.array(["oops" in t for t in texts])[:, None], np.nan, out)

    broken = Encoder(encode_images=toys.color_encoder().encode_images, encode_texts=encode_texts)
    dataset = retrieval_arrays(
        toys.solid_images(["red", "blue"]), [["red"], ["blue", "oops blue"]], name="toy"
    )
    with pytest.raises(ValueError, match=r"dataset 'toy'.*NaN.*item '1#1'"):
        evaluate_retrieval(broken, dataset, progress=False)


def test_cache_round_trip(tmp_path, toys) -> None:
    dataset = retrieval_arrays(
        toys.solid_images(["red", "blue"]), [["red"], ["blue", "blue!"]], name="toy"
    )
    cache = EmbeddingCache(tmp_path)
    first = evaluate_retrieval(toys.color_encoder(), dataset, cache=cache, progress=False)
    failing = Encoder(encode_images=None, encode_texts=None, name="color-toy")  # type: ignore[arg-type]
    second = evaluate_retrieval(failing, dataset, cache=cache, progress=False)
    assert first.metrics == second.metrics
    assert second.text_to_image.tolist() == [0, 1, 1]


def test_tied_queries_are_reported() -> None:
    same = np.ones((3, 2))
    result = retrieval_from_embeddings(same, same, [0, 1, 2], ks=(1,))
    assert result.tied_queries > 0
    curve = result.recall_curve(3)
    assert curve["text_to_image"][-1] == 1.0
