"""Peer parity for XM3600: our ``"clip_benchmark"`` protocol equals CLIP_benchmark's own code.

CLIP_benchmark 1.6.2 (installed with ``--no-deps``) reads XM3600 with
``clip_benchmark.datasets.crossmodal3600.create_annotation_file`` (one line of ``captions.jsonl``
per image, ``captions[0]`` of the language, images that exist) and scores it with
``metrics.zeroshot_retrieval.evaluate``. Both run here on a folder in the XM3600 layout whose
captions map to random embeddings: the annotation file it writes picks the same captions our
reader + protocol pick, and its Recall@K equals ours for every language. Its module imports
``torchvision.datasets.VisionDataset`` for a dataset class this test does not use; a stub stands
in for it while the module is imported (torchvision is never installed here).
"""

from __future__ import annotations

import importlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from clip_benchmark.metrics import zeroshot_retrieval
from hypothesis import assume
from hypothesis import given
from hypothesis import strategies as st

from siglip_eval import multilingual_retrieval_metrics
from siglip_eval.datasets import xm3600

LANGUAGES = ["en", "de", "zh", "sw"]


@pytest.fixture(scope="module")
def crossmodal3600() -> types.ModuleType:
    stub = types.ModuleType("torchvision")
    stub_datasets = types.ModuleType("torchvision.datasets")
    stub_datasets.VisionDataset = object  # type: ignore[attr-defined]
    stub.datasets = stub_datasets  # type: ignore[attr-defined]
    saved = {name: sys.modules.get(name) for name in ("torchvision", "torchvision.datasets")}
    sys.modules.update({"torchvision": stub, "torchvision.datasets": stub_datasets})
    try:
        module = importlib.import_module("clip_benchmark.datasets.crossmodal3600")
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
    return module


class IdentityModel:
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens


def clip_benchmark_recalls(
    image_emb: np.ndarray, captions: list[str], table: dict[str, np.ndarray], ks: tuple[int, ...]
) -> dict[str, float]:
    """CLIP_benchmark's retrieval on its annotation file: one caption per image, batches of 4."""
    batches = [
        (torch.from_numpy(image_emb[s : s + 4]), [[text] for text in captions[s : s + 4]])
        for s in range(0, len(captions), 4)
    ]

    def tokenize(texts: list[str]) -> torch.Tensor:
        return torch.from_numpy(np.stack([table[text] for text in texts]))

    return zeroshot_retrieval.evaluate(
        IdentityModel(), batches, tokenize, "cpu", amp=False, recall_k_list=list(ks)
    )


@st.composite
def layouts(draw: st.DrawFn):
    images = draw(st.integers(2, 12))
    dim = draw(st.integers(2, 8))
    languages = LANGUAGES[: draw(st.integers(1, 4))]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    image_emb = rng.normal(size=(images, dim)).astype(np.float32)
    records, table = [], {}
    for image in range(images):
        record: dict = {"image/key": f"{image:016x}", "image/locale": languages[0]}
        for language in languages:
            texts = [f"{language}-{image}-{n}" for n in range(draw(st.integers(1, 3)))]
            for text in texts:
                noise = rng.normal(size=dim).astype(np.float32)
                table[text] = image_emb[image] + draw(st.sampled_from([0.3, 1.0, 3.0])) * noise
            record[language] = {"caption": texts, "caption/tokenized": texts}
        records.append(record)
    return image_emb, records, table, languages


def no_near_ties(scores: np.ndarray) -> bool:
    return bool(np.all(np.diff(np.sort(scores, axis=1), axis=1) > 1e-5))


@given(layout=layouts())
def test_first_caption_protocol_equals_clip_benchmark_on_an_xm3600_layout(
    crossmodal3600: types.ModuleType, tmp_path_factory: pytest.TempPathFactory, layout
) -> None:
    image_emb, records, table, languages = layout
    root = tmp_path_factory.mktemp("cb")
    folder = root / "xm3600"
    (folder / "images").mkdir(parents=True)
    for record in records:  # existence is all either reader needs before decoding
        (folder / "images" / f"{record['image/key']}.jpg").write_bytes(b"")
    (folder / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    dataset = xm3600(folder, image_size=8)
    texts, text_to_image, text_languages = dataset.texts()
    text_emb = np.stack([table[text] for text in texts])
    ks = tuple(k for k in (1, 5, 10) if k <= len(records))
    ours = multilingual_retrieval_metrics(
        image_emb, text_emb, text_to_image, text_languages, ks=ks, protocol="clip_benchmark"
    )
    for language in languages:
        crossmodal3600.create_annotation_file(str(root), language)
        annotation = json.loads(
            (root / crossmodal3600.OUTPUT_FILENAME_TEMPLATE.format(language)).read_text()
        )
        theirs_captions = annotation["annotations"]
        assert [Path(p).stem for p in annotation["image_paths"]] == dataset.keys
        assert theirs_captions == [captions[0] for captions in dataset.captions[language]]
        first = np.stack([table[text] for text in theirs_captions])
        unit = first / np.linalg.norm(first, axis=1, keepdims=True)
        unit_images = image_emb / np.linalg.norm(image_emb, axis=1, keepdims=True)
        scores = unit.astype(np.float64) @ unit_images.T
        assume(no_near_ties(scores) and no_near_ties(scores.T))
        theirs = clip_benchmark_recalls(image_emb, theirs_captions, table, ks)
        for k in ks:
            assert ours[language][f"text_to_image_R@{k}"] == pytest.approx(
                theirs[f"image_retrieval_recall@{k}"], abs=1e-7
            )
            assert ours[language][f"image_to_text_R@{k}"] == pytest.approx(
                theirs[f"text_retrieval_recall@{k}"], abs=1e-7
            )
