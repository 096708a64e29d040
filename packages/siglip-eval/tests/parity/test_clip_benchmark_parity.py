"""Peer parity: our metrics equal CLIP_benchmark's on the same embeddings.

CLIP_benchmark 1.6.2 (PyPI ``clip-benchmark``, installed with ``--no-deps``) is driven through its
own ``evaluate`` functions with an identity "model" whose encoders return the given embeddings, so
its whole metric path runs: normalisation, prompt averaging, ``100 * cos`` logits, ``torch.topk``
recall and scikit-learn's balanced accuracy.

- Random (tie-free) embeddings: every number is equal, exactly.
- Tied embeddings (exact small-integer arithmetic, so both sides see the same ties): CLIP_benchmark's
  top-k depends on ``torch.topk``'s unspecified order among equal values, so it must lie between our
  optimistic and pessimistic tie rules; its mean per-class recall (``argmax``) equals ours.
"""

from __future__ import annotations

import builtins
import warnings

import numpy as np
import pytest
import torch

# clip-benchmark==1.6.2 is installed with --no-deps by the session that runs this directory; a
# missing or broken install is a collection error here, not a skip.
from clip_benchmark.metrics import zeroshot_classification
from clip_benchmark.metrics import zeroshot_retrieval
from hypothesis import assume
from hypothesis import given
from hypothesis import strategies as st

from siglip_eval import class_embeddings
from siglip_eval import retrieval_metrics
from siglip_eval import zeroshot_metrics


def _float_of_one_element(value: object) -> float:
    # CLIP_benchmark 1.6.2's accuracy() calls float() on a 1-element 1-D array, which numpy >= 2.3
    # rejects; shadowing the module's `float` (not its code) restores the old conversion.
    return builtins.float(np.asarray(value).reshape(()))


@pytest.fixture(autouse=True)
def _numpy2_compatible_clip_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zeroshot_classification, "float", _float_of_one_element, raising=False)


class IdentityModel:
    """encode_image / encode_text return their input: the embeddings are the "pixels"/"tokens"."""

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens


class Loader(list):
    """A list of batches with the ``.dataset.classes`` attribute CLIP_benchmark reads."""

    def __init__(self, batches: list, classes: list[str] | None = None) -> None:
        super().__init__(batches)
        self.dataset = type("Dataset", (), {"classes": classes or []})()


def lookup_tokenizer(table: dict[str, np.ndarray]):
    def tokenize(texts: list[str]) -> torch.Tensor:
        return torch.from_numpy(np.stack([table[t] for t in texts]).astype(np.float32))

    return tokenize


def clip_benchmark_zeroshot(
    image_emb: np.ndarray, class_emb: np.ndarray, labels: np.ndarray, batch_size: int
) -> dict[str, float]:
    names = [f"class{c}" for c in range(class_emb.shape[0])]
    table = {name: class_emb[c] for c, name in enumerate(names)}
    batches = [
        (
            torch.from_numpy(image_emb[s : s + batch_size]),
            torch.from_numpy(labels[s : s + batch_size]),
        )
        for s in range(0, len(labels), batch_size)
    ]
    with warnings.catch_warnings():
        # scikit-learn warns when a predicted class has no true sample; the value is unaffected.
        warnings.simplefilter("ignore", UserWarning)
        return zeroshot_classification.evaluate(
            IdentityModel(),
            Loader(batches, names),
            lookup_tokenizer(table),
            names,
            ["{c}"],
            "cpu",
            amp=False,
        )


def clip_benchmark_retrieval(
    image_emb: np.ndarray,
    text_emb: np.ndarray,
    captions_per_image: list[int],
    ks: tuple[int, ...],
    batch_size: int,
) -> dict[str, float]:
    texts = [f"t{j}" for j in range(text_emb.shape[0])]
    table = dict(zip(texts, text_emb))
    grouped, start = [], 0
    for count in captions_per_image:
        grouped.append(texts[start : start + count])
        start += count
    batches = [
        (torch.from_numpy(image_emb[s : s + batch_size]), grouped[s : s + batch_size])
        for s in range(0, image_emb.shape[0], batch_size)
    ]
    return zeroshot_retrieval.evaluate(
        IdentityModel(),
        Loader(batches),
        lookup_tokenizer(table),
        "cpu",
        amp=False,
        recall_k_list=list(ks),
    )


def no_near_ties(scores: np.ndarray) -> bool:
    ordered = np.sort(scores, axis=1)
    return bool(np.all(np.diff(ordered, axis=1) > 1e-5))


@st.composite
def zeroshot_problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    images = draw(st.integers(1, 40))
    classes = draw(st.integers(2, 12))
    dim = draw(st.integers(2, 16))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    image_emb = rng.normal(size=(images, dim)).astype(np.float32)
    class_emb = rng.normal(size=(classes, dim)).astype(np.float32)
    labels = rng.integers(0, classes, size=images)
    return image_emb, class_emb, labels, draw(st.integers(1, 16))


@given(zeroshot_problems())
def test_zeroshot_metrics_equal_clip_benchmark_on_random_embeddings(problem) -> None:
    image_emb, class_emb, labels, batch_size = problem
    normalized_classes = class_emb / np.linalg.norm(class_emb, axis=1, keepdims=True)
    assume(no_near_ties(image_emb.astype(np.float64) @ normalized_classes.T))
    theirs = clip_benchmark_zeroshot(image_emb, class_emb, labels, batch_size)
    ours = zeroshot_metrics(image_emb, class_emb, labels)
    assert ours["top1"] == theirs["acc1"]
    if class_emb.shape[0] >= 5:
        assert ours["top5"] == theirs["acc5"]
    else:
        assert np.isnan(ours["top5"])
        assert np.isnan(theirs["acc5"])
    assert ours["mean_per_class_recall"] == pytest.approx(
        theirs["mean_per_class_recall"], abs=1e-15
    )


def test_prompt_ensemble_equals_clip_benchmark_classifier() -> None:
    rng = np.random.default_rng(0)
    names, templates = ["cat", "dog", "bird"], ["a {c}.", "the {c}!", "art of {c}"]
    table = {t.replace("{c}", n): rng.normal(size=8) for n in names for t in templates}
    ours = class_embeddings(
        lambda texts: np.stack([table[t] for t in texts]), names, templates, progress=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = zeroshot_classification.zero_shot_classifier(
            IdentityModel(), lookup_tokenizer(table), names, templates, "cpu", amp=False
        )
    np.testing.assert_allclose(ours, theirs.numpy().T, rtol=0, atol=1e-6)


@st.composite
def retrieval_problems(draw: st.DrawFn):
    images = draw(st.integers(1, 25))
    dim = draw(st.integers(2, 16))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    captions_per_image = [draw(st.integers(1, 4)) for _ in range(images)]
    image_emb = rng.normal(size=(images, dim)).astype(np.float32)
    text_to_image = np.repeat(np.arange(images), captions_per_image)
    noise = draw(st.sampled_from([0.1, 1.0, 3.0]))
    text_emb = (
        image_emb[text_to_image] + noise * rng.normal(size=(len(text_to_image), dim))
    ).astype(np.float32)
    batch_size = draw(st.integers(1, 10))
    return image_emb, text_emb, captions_per_image, text_to_image, batch_size


@given(retrieval_problems())
def test_retrieval_recalls_equal_clip_benchmark_on_random_embeddings(problem) -> None:
    image_emb, text_emb, captions_per_image, text_to_image, batch_size = problem
    ks = tuple(k for k in (1, 5, 10) if k <= min(image_emb.shape[0], text_emb.shape[0]))
    unit_images = image_emb / np.linalg.norm(image_emb, axis=1, keepdims=True)
    unit_texts = text_emb / np.linalg.norm(text_emb, axis=1, keepdims=True)
    scores = unit_texts.astype(np.float64) @ unit_images.T
    assume(image_emb.shape[0] < 2 or no_near_ties(scores))
    assume(text_emb.shape[0] < 2 or no_near_ties(scores.T))
    theirs = clip_benchmark_retrieval(image_emb, text_emb, captions_per_image, ks, batch_size)
    ours = retrieval_metrics(image_emb, text_emb, text_to_image, ks=ks)
    for k in ks:
        assert ours[f"image_to_text_R@{k}"] == pytest.approx(
            theirs[f"text_retrieval_recall@{k}"], abs=1e-7
        )
        assert ours[f"text_to_image_R@{k}"] == pytest.approx(
            theirs[f"image_retrieval_recall@{k}"], abs=1e-7
        )


def exact_vectors(draw: st.DrawFn, rows: int, dim: int) -> np.ndarray:
    """Rows of 0/±1 with 1 or 4 non-zeros: norms 1 or 2, so every cosine is exact in float32."""
    matrix = np.zeros((rows, dim), dtype=np.float32)
    for row in range(rows):
        count = draw(st.sampled_from([1, 4]))
        columns = draw(
            st.lists(st.integers(0, dim - 1), min_size=count, max_size=count, unique=True)
        )
        for column in columns:
            matrix[row, column] = draw(st.sampled_from([-1.0, 1.0]))
    return matrix


@given(st.data())
def test_clip_benchmark_lies_between_our_tie_bounds_on_tied_scores(data: st.DataObject) -> None:
    dim, classes = 6, data.draw(st.integers(5, 8))
    images = data.draw(st.integers(1, 30))
    image_emb = exact_vectors(data.draw, images, dim)
    class_emb = exact_vectors(data.draw, classes, dim)
    labels = np.asarray(
        data.draw(st.lists(st.integers(0, classes - 1), min_size=images, max_size=images))
    )
    theirs = clip_benchmark_zeroshot(image_emb, class_emb, labels, batch_size=7)
    low = zeroshot_metrics(image_emb, class_emb, labels, ties="pessimistic")
    high = zeroshot_metrics(image_emb, class_emb, labels, ties="optimistic")
    index = zeroshot_metrics(image_emb, class_emb, labels, ties="index")
    for ours_key, their_key in (("top1", "acc1"), ("top5", "acc5")):
        assert low[ours_key] <= theirs[their_key] <= high[ours_key]
        assert low[ours_key] <= index[ours_key] <= high[ours_key]
    # argmax takes the first maximum in torch and in our "index" rule.
    assert index["mean_per_class_recall"] == pytest.approx(
        theirs["mean_per_class_recall"], abs=1e-15
    )

    texts = exact_vectors(data.draw, images + 2, dim)
    text_to_image = np.concatenate([np.arange(images), [0, images - 1]])
    order = np.argsort(text_to_image, kind="stable")
    counts = np.bincount(text_to_image, minlength=images).tolist()
    theirs_r = clip_benchmark_retrieval(image_emb, texts[order], counts, (1,), batch_size=5)
    low_r = retrieval_metrics(image_emb, texts, text_to_image, ks=(1,), ties="pessimistic")
    high_r = retrieval_metrics(image_emb, texts, text_to_image, ks=(1,), ties="optimistic")
    assert (
        low_r["image_to_text_R@1"] - 1e-7
        <= theirs_r["text_retrieval_recall@1"]
        <= high_r["image_to_text_R@1"] + 1e-7
    )
    assert (
        low_r["text_to_image_R@1"] - 1e-7
        <= theirs_r["image_retrieval_recall@1"]
        <= high_r["text_to_image_R@1"] + 1e-7
    )
