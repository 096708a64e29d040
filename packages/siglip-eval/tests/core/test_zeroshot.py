"""Zero-shot protocol: prompt ensembling, toy problems with known answers, readers, cache, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from siglip_eval import IMAGENET_TEMPLATES
from siglip_eval import EmbeddingCache
from siglip_eval import Encoder
from siglip_eval import class_embeddings
from siglip_eval import evaluate_zeroshot
from siglip_eval import zeroshot_from_embeddings
from siglip_eval._templates import IMAGENET_TEMPLATES_7
from siglip_eval._templates import ONE_TEMPLATE
from siglip_eval._templates import fill_templates
from siglip_eval.datasets import classification_arrays
from siglip_eval.datasets import image_folder

CLASSES = ["red", "green", "blue"]


def test_template_sets_are_the_published_ones() -> None:
    assert len(IMAGENET_TEMPLATES) == 80
    assert len(set(IMAGENET_TEMPLATES)) == 80
    assert set(IMAGENET_TEMPLATES_7) <= set(IMAGENET_TEMPLATES)
    assert ONE_TEMPLATE == ("a photo of a {c}.",)
    assert all(t.count("{c}") == 1 for t in IMAGENET_TEMPLATES)
    assert "itap of a {c}." in IMAGENET_TEMPLATES


def test_fill_templates_accepts_both_placeholders_and_is_brace_safe() -> None:
    assert fill_templates(["a {c}.", "the {}!"], "x{0}") == ["a x{0}.", "the x{0}!"]
    with pytest.raises(ValueError, match="templates"):
        fill_templates(["no placeholder"], "x")


@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(1, 5))
def test_class_embedding_is_renormalized_mean_of_normalized_prompts(
    seed: int, templates: int, classes: int
) -> None:
    rng = np.random.default_rng(seed)
    names = [f"class{c}" for c in range(classes)]
    template_list = [f"t{t} {{c}}" for t in range(templates)]
    table = {
        f"t{t} {n}": rng.normal(size=5) * rng.uniform(0.1, 10)
        for t in range(templates)
        for n in names
    }
    result = class_embeddings(
        lambda texts: np.stack([table[t] for t in texts]),
        names,
        template_list,
        batch_size=3,
        progress=False,
    )
    for c, name in enumerate(names):
        prompts = np.stack([table[f"t{t} {name}"] for t in range(templates)])
        mean = (prompts / np.linalg.norm(prompts, axis=1, keepdims=True)).mean(axis=0)
        np.testing.assert_allclose(result[c], mean / np.linalg.norm(mean), rtol=1e-6, atol=1e-6)


def test_toy_zero_shot_is_exact_with_every_template_set(encoder: Encoder, toys) -> None:
    colors = ["red", "green", "blue", "blue", "red", "green", "green"]
    dataset = classification_arrays(
        toys.solid_images(colors, noise=0.2), [CLASSES.index(c) for c in colors], CLASSES
    )
    for templates in (IMAGENET_TEMPLATES, ONE_TEMPLATE):
        result = evaluate_zeroshot(
            encoder, dataset, templates=templates, batch_size=3, progress=False
        )
        assert result.metrics["top1"] == 1.0
        assert result.metrics["mean_per_class_recall"] == 1.0
        assert np.isnan(result.metrics["top5"])
        assert result.confusion.tolist() == [[2, 0, 0], [0, 3, 0], [0, 0, 2]]
        assert result.tied_images == 0


def test_toy_zero_shot_counts_known_mistakes(encoder: Encoder, toys) -> None:
    # Labels lie for two images: a "green" image labelled red, a "blue" image labelled green.
    colors = ["red", "green", "green", "blue", "blue", "blue"]
    labels = [0, 0, 1, 1, 2, 2]
    dataset = classification_arrays(toys.solid_images(colors), labels, CLASSES)
    result = evaluate_zeroshot(encoder, dataset, templates=ONE_TEMPLATE, progress=False)
    assert result.metrics["top1"] == pytest.approx(4 / 6)
    assert result.per_class_accuracy.tolist() == [0.5, 0.5, 1.0]
    assert result.metrics["mean_per_class_recall"] == pytest.approx(2 / 3)
    assert result.confusion.tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 2]]
    assert result.predictions.tolist() == [0, 1, 1, 2, 2, 2]
    summary = result.to_dict()
    assert summary["images_per_class"] == {"red": 2, "green": 2, "blue": 2}


def test_image_folder_reads_one_folder_per_class(tmp_path, encoder: Encoder, toys) -> None:
    for color in CLASSES:
        (tmp_path / color).mkdir()
        for index in range(2):
            rgb = tuple(int((v + 1) * 127.5) for v in toys.colors[color])
            Image.new("RGB", (20, 12), rgb).save(tmp_path / color / f"{index}.png")
    (tmp_path / "blue" / "notes.txt").write_text("not an image")
    dataset = image_folder(tmp_path, image_size=8)
    assert dataset.class_names == ["blue", "green", "red"]
    assert dataset.size == 6
    result = evaluate_zeroshot(encoder, dataset, templates=ONE_TEMPLATE, progress=False)
    assert result.metrics["top1"] == 1.0
    assert result.keys[0] == "blue/0.png"


def test_image_folder_with_an_empty_class_is_an_error(tmp_path) -> None:
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "cat" / "a.png")
    with pytest.raises(ValueError, match=r"class folder .*dog.* has no images"):
        image_folder(tmp_path, image_size=4, name="pets")


def test_empty_image_folder_is_an_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="one sub-folder per class"):
        image_folder(tmp_path, image_size=4)


def test_corrupt_image_is_named(tmp_path, encoder: Encoder) -> None:
    (tmp_path / "red").mkdir()
    (tmp_path / "red" / "broken.png").write_bytes(b"not a png")
    dataset = image_folder(tmp_path, image_size=4, name="broken-set")
    with pytest.raises(ValueError, match=r"broken-set.*broken\.png"):
        evaluate_zeroshot(encoder, dataset, templates=ONE_TEMPLATE, progress=False)


def test_class_without_images_is_an_error_not_dropped(toys) -> None:
    with pytest.raises(ValueError, match=r"dataset 'toy'.*'blue'"):
        classification_arrays(toys.solid_images(["red", "green"]), [0, 1], CLASSES, name="toy")
    with pytest.raises(ValueError, match=r"'blue'"):
        zeroshot_from_embeddings(np.eye(3)[:2], np.eye(3), [0, 1], CLASSES)


def test_empty_dataset_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one image"):
        classification_arrays(np.zeros((0, 4, 4, 3)), [], CLASSES, name="empty")


def test_nan_embedding_names_dataset_and_item(toys) -> None:
    def encode_images(pixels: np.ndarray) -> np.ndarray:
        out = pixels.reshape(len(pixels), -1, 3).mean(axis=1)
        out[pixels[:, 0, 0, 1] > 0] = np.nan  # every green image breaks
        return out

    broken = Encoder(encode_images=encode_images, encode_texts=toys.color_encoder().encode_texts)
    dataset = classification_arrays(
        toys.solid_images(["red", "green", "blue"]), [0, 1, 2], CLASSES, name="toy"
    )
    with pytest.raises(ValueError, match=r"dataset 'toy'.*NaN.*item '1'"):
        evaluate_zeroshot(broken, dataset, templates=ONE_TEMPLATE, progress=False)


def test_cache_reuses_embeddings_and_writes_atomically(tmp_path, toys) -> None:
    calls = {"images": 0, "texts": 0}
    base = toys.color_encoder()

    def encode_images(pixels: np.ndarray) -> np.ndarray:
        calls["images"] += len(pixels)
        return base.encode_images(pixels)

    def encode_texts(texts: list[str]) -> np.ndarray:
        calls["texts"] += len(texts)
        return base.encode_texts(texts)

    counted = Encoder(encode_images=encode_images, encode_texts=encode_texts, name="counted")
    dataset = classification_arrays(
        toys.solid_images(["red", "green", "blue"]), [0, 1, 2], CLASSES, name="toy"
    )
    cache = EmbeddingCache(tmp_path / "cache")
    first = evaluate_zeroshot(counted, dataset, templates=ONE_TEMPLATE, cache=cache, progress=False)
    second = evaluate_zeroshot(
        counted, dataset, templates=ONE_TEMPLATE, cache=cache, progress=False
    )
    assert calls == {"images": 3, "texts": 3}
    assert first.to_dict()["metrics"]["top1"] == second.to_dict()["metrics"]["top1"] == 1.0
    np.testing.assert_array_equal(first.confusion, second.confusion)
    names = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert not [n for n in names if n.endswith(".tmp")]
    assert len([n for n in names if n.endswith(".npy")]) == 2
    # New templates are a new cache entry; the image embeddings are reused.
    evaluate_zeroshot(counted, dataset, templates=IMAGENET_TEMPLATES_7, cache=cache, progress=False)
    assert calls == {"images": 3, "texts": 3 + 21}


def test_any_object_with_the_two_methods_is_an_encoder(toys) -> None:
    class Model:
        name = "duck"

        def encode_images(self, pixels: np.ndarray) -> np.ndarray:
            return toys.color_encoder().encode_images(pixels)

        def encode_texts(self, texts: list[str]) -> np.ndarray:
            return toys.color_encoder().encode_texts(texts)

    dataset = classification_arrays(toys.solid_images(["red", "green", "blue"]), [0, 1, 2], CLASSES)
    assert (
        evaluate_zeroshot(Model(), dataset, templates=ONE_TEMPLATE, progress=False).metrics["top1"]
        == 1.0
    )
    with pytest.raises(TypeError, match="encoder"):
        evaluate_zeroshot(object(), dataset, progress=False)  # type: ignore[arg-type]
