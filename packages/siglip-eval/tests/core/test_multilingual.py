"""Multilingual retrieval: per-language Recall@K (both XM3600 protocols), the XM3600-layout reader,
``evaluate_multilingual`` and ``siglip-eval multilingual`` from saved embeddings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from siglip_eval import EmbeddingCache
from siglip_eval import Encoder
from siglip_eval import evaluate_multilingual
from siglip_eval import multilingual_retrieval_metrics
from siglip_eval import retrieval_metrics
from siglip_eval._cli import main
from siglip_eval._multilingual_report import markdown_multilingual
from siglip_eval.datasets import xm3600

LANGUAGES = ["en", "de", "zh", "sw"]
KS = (1, 2, 5)


@st.composite
def multilingual_problems(draw: st.DrawFn):
    """Random embeddings: every image has 1-3 captions in each language, texts shuffled."""
    images = draw(st.integers(1, 12))
    dim = draw(st.integers(2, 8))
    languages = LANGUAGES[: draw(st.integers(1, 4))]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    image_emb = rng.normal(size=(images, dim))
    text_to_image: list[int] = []
    text_languages: list[str] = []
    for language in languages:
        for image in range(images):
            count = draw(st.integers(1, 3))
            text_to_image += [image] * count
            text_languages += [language] * count
    order = rng.permutation(len(text_to_image))
    mapping = np.asarray(text_to_image)[order]
    noise = draw(st.sampled_from([0.3, 1.0, 3.0]))
    text_emb = image_emb[mapping] + noise * rng.normal(size=(len(mapping), dim))
    return image_emb, text_emb, mapping, [text_languages[i] for i in order]


def first_caption_indices(mapping: np.ndarray, language_of: list[str], language: str) -> np.ndarray:
    """CLIP_benchmark's choice: the first caption (in text order) of each image in the language."""
    chosen: dict[int, int] = {}
    for index, (image, code) in enumerate(zip(mapping.tolist(), language_of)):
        if code == language and image not in chosen:
            chosen[image] = index
    return np.asarray(sorted(chosen.values()))


def oracle_recalls(
    image_emb: np.ndarray, text_emb: np.ndarray, mapping: np.ndarray, ks: tuple[int, ...]
) -> dict[str, float]:
    """big_vision's image_text_retrieval formula in float64: top-k by argsort of the similarities."""
    images = image_emb / np.linalg.norm(image_emb, axis=1, keepdims=True)
    texts = text_emb / np.linalg.norm(text_emb, axis=1, keepdims=True)
    similarity = images @ texts.T  # [images, texts]
    out = {}
    for k in ks:
        text_top = np.argsort(-similarity, axis=0, kind="stable")[:k]  # [k, texts]
        out[f"text_to_image_R@{k}"] = float(np.mean(np.any(text_top == mapping[None, :], axis=0)))
        image_top = np.argsort(-similarity, axis=1, kind="stable")[:, :k]  # [images, k]
        hits = [np.any(mapping[image_top[i]] == i) for i in range(len(images))]
        out[f"image_to_text_R@{k}"] = float(np.mean(hits))
    return out


@pytest.mark.parametrize("protocol", ["big_vision", "clip_benchmark"])
@given(problem=multilingual_problems())
def test_per_language_numbers_equal_retrieval_metrics_run_language_by_language(
    protocol: str, problem
) -> None:
    image_emb, text_emb, mapping, language_of = problem
    metrics = multilingual_retrieval_metrics(
        image_emb, text_emb, mapping, language_of, ks=KS, protocol=protocol
    )
    present = list(dict.fromkeys(language_of))
    assert list(metrics) == [*present, "mean"]
    for language in present:
        if protocol == "big_vision":
            indices = np.flatnonzero(np.asarray(language_of) == language)
        else:
            indices = first_caption_indices(mapping, language_of, language)
        expected = retrieval_metrics(image_emb, text_emb[indices], mapping[indices], ks=KS)
        assert metrics[language] == expected
    for key, value in metrics["mean"].items():
        assert value == pytest.approx(np.mean([metrics[lang][key] for lang in present]), abs=1e-15)


@pytest.mark.parametrize("protocol", ["big_vision", "clip_benchmark"])
@given(problem=multilingual_problems())
def test_per_language_numbers_equal_a_numpy_oracle_of_big_vision_formula(
    protocol: str, problem
) -> None:
    image_emb, text_emb, mapping, language_of = problem
    metrics = multilingual_retrieval_metrics(
        image_emb, text_emb, mapping, language_of, ks=KS, protocol=protocol
    )
    for language in dict.fromkeys(language_of):
        if protocol == "big_vision":
            indices = np.flatnonzero(np.asarray(language_of) == language)
        else:
            indices = first_caption_indices(mapping, language_of, language)
        expected = oracle_recalls(image_emb, text_emb[indices], mapping[indices], KS)
        assert metrics[language] == pytest.approx(expected, abs=1e-12)


def test_the_protocols_differ_when_an_image_has_several_captions() -> None:
    images = np.eye(3)
    # Image 0's second German caption looks like image 1: big_vision counts it, the first-caption
    # protocol never sees it.
    texts = np.array([[1.0, 0, 0], [0.2, 1, 0], [0, 0, 1], [0, 1, 0.05]])
    mapping = [0, 1, 2, 0]
    languages = ["de"] * 4
    big_vision = multilingual_retrieval_metrics(images, texts, mapping, languages, ks=(1,))
    first = multilingual_retrieval_metrics(
        images, texts, mapping, languages, ks=(1,), protocol="clip_benchmark"
    )
    assert big_vision["de"]["text_to_image_R@1"] == 0.75
    assert first["de"]["text_to_image_R@1"] == 1.0
    # The stray caption outranks image 1's own for image 1: image->text R@1 drops too.
    assert big_vision["de"]["image_to_text_R@1"] == pytest.approx(2 / 3)
    assert first["de"]["image_to_text_R@1"] == 1.0


def test_known_languages_set_the_order_and_one_caption_per_image_makes_protocols_agree() -> None:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(5, 4))
    mapping = np.tile(np.arange(5), 3)
    languages = ["en"] * 5 + ["fr"] * 5 + ["ja"] * 5
    texts = images[mapping] + rng.normal(size=(15, 4))
    ordered = multilingual_retrieval_metrics(
        images, texts, mapping, languages, known_languages=["ja", "en", "fr"]
    )
    assert list(ordered) == ["ja", "en", "fr", "mean"]
    first = multilingual_retrieval_metrics(
        images, texts, mapping, languages, protocol="clip_benchmark"
    )
    assert {k: ordered[k] for k in ("en", "fr", "ja")} == {k: first[k] for k in ("en", "fr", "ja")}


def test_bad_input_is_a_clear_error() -> None:
    images = np.eye(2)
    texts = np.eye(2)[[0, 1, 0, 1]]
    mapping = [0, 1, 0, 1]
    languages = ["en", "en", "de", "de"]
    metrics = multilingual_retrieval_metrics
    with pytest.raises(ValueError, match=r"caption 2 has language 'de', which is not one of"):
        metrics(images, texts, mapping, languages, known_languages=["en"])
    with pytest.raises(ValueError, match=r"expected captions in every known language.*'sw'"):
        metrics(images, texts, mapping, languages, known_languages=["en", "de", "sw"])
    with pytest.raises(ValueError, match=r"languages: expected 4 entries .* got 3"):
        metrics(images, texts, mapping, languages[:3])
    with pytest.raises(ValueError, match=r"text_to_image: expected 4 entries"):
        metrics(images, texts, mapping[:3], languages)
    with pytest.raises(ValueError, match=r"text_emb: expected dim 2"):
        metrics(images, np.ones((4, 3)), mapping, languages)
    with pytest.raises(ValueError, match=r"language 'de': expected a caption for every image"):
        metrics(images, texts, [0, 1, 0, 0], languages)
    with pytest.raises(ValueError, match=r"'mean' is reserved"):
        metrics(images, texts, mapping, ["en", "en", "mean", "mean"])
    with pytest.raises(ValueError, match=r"expected a language code .* at index 1, got 3"):
        metrics(images, texts, mapping, ["en", 3, "de", "de"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"protocol: expected one of"):
        metrics(images, texts, mapping, languages, protocol="mteb")
    with pytest.raises(ValueError, match=r"expected values in \[0, 2\), got 5"):
        metrics(images, texts, [0, 1, 0, 5], languages)
    with pytest.raises(ValueError, match=r"expected unique codes, got 'en' twice"):
        metrics(images, texts, mapping, languages, known_languages=["en", "de", "en"])


# ------------------------------------------------------------------------ the XM3600 layout

COLORS = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}
WORDS = {
    "red": "red", "rot": "red", "rouge": "red", "赤": "red",
    "green": "green", "grün": "green", "vert": "green", "緑": "green",
    "blue": "blue", "blau": "blue", "bleu": "blue", "青": "blue",
}  # fmt: skip
CAPTIONS = {
    "red": {"en": ["a red square", "red"], "de": ["ein rot Quadrat"], "ja": ["赤 の 四角"]},
    "green": {"en": ["a green square"], "de": ["grün", "ein grün Quadrat"], "ja": ["緑"]},
    "blue": {"en": ["a blue square"], "de": ["blau"], "ja": ["青 の 四角", "青"]},
}


def write_layout(root: Path, records: list[dict] | None = None, images: list[str] | None = None):
    """A 3-image XM3600-layout folder: solid-color JPEGs, captions in en / de / ja."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    if records is None:
        records = [
            {
                "image/key": f"{color}0001",
                "image/locale": "en",
                **{
                    lang: {"caption": texts, "caption/tokenized": texts}
                    for lang, texts in by_lang.items()
                },
            }
            for color, by_lang in CAPTIONS.items()
        ]
    for key in images if images is not None else [r["image/key"] for r in records]:
        color = re.sub(r"\d+", "", key)
        Image.new("RGB", (12, 9), COLORS.get(color, (128, 128, 128))).save(
            root / "images" / f"{key}.jpg", quality=95
        )
    (root / "captions.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )
    return records


def color_encoder(calls: list[str] | None = None) -> Encoder:
    basis = {"red": (1.0, -1, -1), "green": (-1.0, 1, -1), "blue": (-1.0, -1, 1)}

    def encode_images(pixels: np.ndarray) -> np.ndarray:
        if calls is not None:
            calls.append("images")
        return pixels.reshape(len(pixels), -1, 3).mean(axis=1)

    def encode_texts(texts: list[str]) -> np.ndarray:
        if calls is not None:
            calls.append("texts")
        return np.asarray([basis[next(WORDS[w] for w in t.split() if w in WORDS)] for t in texts])

    return Encoder(encode_images=encode_images, encode_texts=encode_texts, name="colors")


def test_reader_reads_keys_languages_captions_and_images(tmp_path: Path) -> None:
    write_layout(tmp_path)
    dataset = xm3600(tmp_path, image_size=8)
    assert dataset.name == tmp_path.name
    assert dataset.keys == ["red0001", "green0001", "blue0001"]
    assert dataset.locales == ["en"] * 3
    assert dataset.languages == ["de", "en", "ja"]  # XM3600's order
    assert dataset.captions["ja"] == [["赤 の 四角"], ["緑"], ["青 の 四角", "青"]]
    texts, text_to_image, languages = dataset.texts()
    assert len(texts) == len(text_to_image) == len(languages) == 12
    assert texts[:4] == ["ein rot Quadrat", "grün", "ein grün Quadrat", "blau"]
    assert text_to_image[:4].tolist() == [0, 1, 1, 2]
    (batch,) = list(dataset.batches(8))
    assert batch.pixels.shape == (3, 8, 8, 3)
    assert batch.pixels.dtype == np.float32
    assert batch.keys == dataset.keys
    assert batch.pixels[0, :, :, 0].mean() > 0.7  # red, in [-1, 1]
    subset = xm3600(tmp_path, image_size=8, languages=["ja", "en"], name="xm")
    assert (subset.name, subset.languages) == ("xm", ["ja", "en"])


def test_evaluate_multilingual_embeds_each_image_once_and_reports_both_protocols(
    tmp_path: Path,
) -> None:
    write_layout(tmp_path / "data")
    dataset = xm3600(tmp_path / "data", image_size=8)
    calls: list[str] = []
    cache = EmbeddingCache(tmp_path / "cache")
    result = evaluate_multilingual(
        color_encoder(calls), dataset, ks=(1, 2), progress=False, cache=cache
    )
    assert calls.count("images") == 1
    assert result.languages == ["de", "en", "ja"]
    assert result.num_images == 3
    assert result.num_texts == {
        "big_vision": {"de": 4, "en": 4, "ja": 4},
        "clip_benchmark": {"de": 3, "en": 3, "ja": 3},
    }
    for protocol in ("big_vision", "clip_benchmark"):
        for language in ("de", "en", "ja"):
            assert result.metrics[protocol][language]["text_to_image_R@1"] == 1.0
            assert result.metrics[protocol][language]["image_to_text_R@1"] == 1.0
        assert result.metrics[protocol]["mean"]["text_to_image_R@1"] == 1.0
    again = evaluate_multilingual(
        color_encoder(calls), dataset, ks=(1, 2), progress=False, cache=cache
    )
    assert calls.count("images") == 1  # the cache served the second run
    assert again.metrics == result.metrics
    first_only = evaluate_multilingual(
        color_encoder(), dataset, ks=(1, 2), progress=False, protocols=("clip_benchmark",)
    )
    assert first_only.metrics["clip_benchmark"] == result.metrics["clip_benchmark"]
    assert first_only.num_texts == {"clip_benchmark": {"de": 3, "en": 3, "ja": 3}}
    summary = result.to_dict()
    assert summary["mean_without_english"]["big_vision"]["text_to_image_R@1"] == 1.0
    markdown = markdown_multilingual(result, context={"model": "colors"})
    assert "## protocol `big_vision`" in markdown
    assert "| ja | 4 | 100.00 |" in markdown
    assert "| mean without en | 8 |" in markdown


def test_reader_errors_name_the_line_key_and_language(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no captions\.jsonl"):
        xm3600(tmp_path / "absent", image_size=8)
    records = write_layout(tmp_path / "a", images=["red0001", "green0001"])
    with pytest.raises(FileNotFoundError, match=r"image key 'blue0001' \(line 3\) has no image"):
        xm3600(tmp_path / "a", image_size=8)
    write_layout(tmp_path / "b", records)
    with pytest.raises(ValueError, match=r"language\(s\) 'sw' have no captions"):
        xm3600(tmp_path / "b", image_size=8, languages=["en", "sw"])
    with pytest.raises(ValueError, match="expected unique codes"):
        xm3600(tmp_path / "b", image_size=8, languages=["en", "en"])
    gap = [dict(r) for r in records]
    del gap[1]["ja"]
    write_layout(tmp_path / "c", gap)
    with pytest.raises(ValueError, match=r"image 'green0001' \(line 2\) has no captions in .*'ja'"):
        xm3600(tmp_path / "c", image_size=8)
    assert xm3600(tmp_path / "c", image_size=8, languages=["en", "de"]).size == 3
    bad = [dict(r) for r in records]
    bad[2]["captions"] = ["a blue square"]
    write_layout(tmp_path / "d", bad)
    with pytest.raises(ValueError, match=r"line 3 .*field 'captions' is not a language"):
        xm3600(tmp_path / "d", image_size=8)
    empty_caption = [dict(r) for r in records]
    empty_caption[0]["de"] = {"caption": []}
    write_layout(tmp_path / "e", empty_caption)
    with pytest.raises(ValueError, match="at least one caption per image, got none for item"):
        xm3600(tmp_path / "e", image_size=8)
    write_layout(tmp_path / "f", [records[0], records[0]])
    with pytest.raises(ValueError, match=r"line 2: image key 'red0001' repeats line 1"):
        xm3600(tmp_path / "f", image_size=8)
    write_layout(tmp_path / "g", [{"image/locale": "en", "en": {"caption": ["x"]}}], images=[])
    with pytest.raises(ValueError, match=r"line 1: expected string fields 'image/key'"):
        xm3600(tmp_path / "g", image_size=8)
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "captions.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match="line 1 is not JSON"):
        xm3600(tmp_path / "h", image_size=8)
    (tmp_path / "h" / "captions.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="got an empty file"):
        xm3600(tmp_path / "h", image_size=8)
    with pytest.raises(ValueError, match="image_size"):
        xm3600(tmp_path / "b", image_size=0)


def test_cli_from_saved_embeddings_writes_the_per_language_table(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(3)
    image_emb = rng.normal(size=(10, 6))
    mapping = np.concatenate([np.arange(10), np.repeat(np.arange(10), 2)])
    languages = np.array(["en"] * 10 + ["th"] * 20)
    text_emb = image_emb[mapping] + rng.normal(size=(30, 6))
    path = tmp_path / "xm.npz"
    np.savez(
        path, image_emb=image_emb, text_emb=text_emb, text_to_image=mapping, languages=languages
    )
    out = tmp_path / "report"
    assert main(["multilingual", "--embeddings", str(path), "--out", str(out), "--no-plots"]) == 0
    record = json.loads((out / "results.json").read_text())
    expected = multilingual_retrieval_metrics(image_emb, text_emb, mapping, languages.tolist())
    assert record["metrics"]["big_vision"] == expected
    assert record["num_texts"]["clip_benchmark"] == {"en": 10, "th": 10}
    assert record["languages"] == ["en", "th"]
    assert "| th | 20 |" in (out / "summary.md").read_text()
    assert "protocol `clip_benchmark`" in capsys.readouterr().out
    assert (
        main(
            [
                "multilingual",
                "--embeddings",
                str(path),
                "--out",
                str(out),
                "--no-plots",
                "--languages",
                "en,sw",
            ]
        )
        == 2
    )
    assert "'sw'" in capsys.readouterr().err
    assert main(["multilingual", "--model", str(tmp_path), "--out", str(out)]) == 2
    assert "needs --root" in capsys.readouterr().err


def test_the_reader_serves_the_built_emoji_multilingual_dataset(
    tmp_path: Path, debian_data
) -> None:
    debian_data("emoji-multilingual")
    import siglip_data

    info = siglip_data.builders.build_emoji_multilingual(
        tmp_path, languages=["en", "de", "ja"], limit=30, image_size=32
    )
    for split in ("train", "heldout"):
        dataset = xm3600(tmp_path / split, image_size=16)
        assert dataset.size == info.images[split]
        assert dataset.languages == ["de", "en", "ja"]
        assert dataset.locales == ["und"] * dataset.size
        texts, _, languages = dataset.texts()
        assert len(texts) == sum(info.captions[split].values())
        assert languages.count("ja") == info.captions[split]["ja"]
    rng = np.random.default_rng(0)
    table: dict[str, np.ndarray] = {}

    def embed_texts(batch: list[str]) -> np.ndarray:
        return np.stack([table.setdefault(text, rng.normal(size=8)) for text in batch])

    encoder = Encoder(
        encode_images=lambda pixels: pixels.reshape(len(pixels), -1)[:, :8] + 1e-3,
        encode_texts=embed_texts,
        name="random",
    )
    result = evaluate_multilingual(encoder, dataset, progress=False)
    assert result.languages == ["de", "en", "ja"]
    assert result.num_images == info.images["heldout"]
