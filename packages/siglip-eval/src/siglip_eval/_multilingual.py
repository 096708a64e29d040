"""Multilingual image-text retrieval: per-language Recall@K the way XM3600 is reported.

Crossmodal-3600 (XM3600) gives each of 3,600 images captions in 36 languages. Every language is
its own retrieval problem over the same images; the published number is Recall@K per language and
its mean over the languages. Two protocols circulate and their numbers are not comparable:

- ``"big_vision"`` (the SigLIP / SigLIP 2 papers): every caption of the language is a query and a
  candidate. text->image is averaged over captions, image->text over images (an image counts when
  any of its captions ranks within K). SigLIP 2's Table 1 reports R@1.
- ``"clip_benchmark"`` (CLIP_benchmark's ``crossmodal3600``): only the first caption of each image
  in the language (``captions[0]``), so one text per image; its command line defaults to R@5.

With one caption per image, image->text has fewer candidates and no second chance, and
text->image is averaged over other queries, so the two disagree on the same model.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from siglip_data.builders import XM3600_LANGUAGES
from siglip_eval._datasets import ImageBatch
from siglip_eval._datasets import Preprocess
from siglip_eval._datasets import Resample
from siglip_eval._datasets import _default_preprocess
from siglip_eval._datasets import load_image
from siglip_eval._encoders import EmbeddingCache
from siglip_eval._encoders import Encoder
from siglip_eval._encoders import as_encoder
from siglip_eval._encoders import embed_image_batches
from siglip_eval._encoders import embed_texts
from siglip_eval._encoders import fingerprint
from siglip_eval._metrics import retrieval_metrics
from siglip_eval._validation import check_captions
from siglip_eval._validation import check_embeddings
from siglip_eval._validation import check_ks
from siglip_eval._validation import check_labels
from siglip_eval._validation import check_ties
from siglip_eval._validation import stack_pixels

PROTOCOLS: tuple[str, ...] = ("big_vision", "clip_benchmark")
# The key of the mean over languages in every result; no language may be called this.
MEAN = "mean"


def _check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {PROTOCOLS}, got {protocol!r}")
    return protocol


def _check_language_codes(name: str, codes: Sequence[Any]) -> list[str]:
    values = list(codes)
    for index, code in enumerate(values):
        if not isinstance(code, str) or not code.strip():
            raise ValueError(
                f"{name}: expected a language code (a non-empty str) at index {index}, got {code!r}"
            )
        if code == MEAN:
            raise ValueError(f"{name}: {MEAN!r} is reserved for the mean over languages")
    return values


def _language_order(languages: list[str], known_languages: Sequence[str] | None) -> list[str]:
    present = list(dict.fromkeys(languages))
    if known_languages is None:
        return present
    order = _check_language_codes("known_languages", known_languages)
    if len(set(order)) != len(order):
        duplicate = next(code for code in order if order.count(code) > 1)
        raise ValueError(f"known_languages: expected unique codes, got {duplicate!r} twice")
    known = set(order)
    for index, language in enumerate(languages):
        if language not in known:
            raise ValueError(
                f"languages: caption {index} has language {language!r}, which is not one of"
                f" known_languages ({', '.join(order)})"
            )
    without = [language for language in order if language not in set(present)]
    if without:
        raise ValueError(
            f"languages: expected captions in every known language, got none in"
            f" {', '.join(repr(language) for language in without)}"
        )
    return order


def language_text_indices(
    text_to_image: np.ndarray,
    languages: Sequence[str],
    *,
    images: int,
    protocol: str = "big_vision",
    known_languages: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """The captions each language's retrieval problem uses, checked.

    Args:
        text_to_image: ``[texts]`` int image of each caption (already range-checked).
        languages: ``[texts]`` language code of each caption.
        images: number of images.
        protocol: ``"big_vision"`` (every caption) or ``"clip_benchmark"`` (the first caption of
            each image in the language, in text order).
        known_languages: the languages to report, in order (default: order of first appearance).

    Returns:
        language -> ``[captions of that language]`` int64 indices into the texts, in text order.

    Raises:
        ValueError: ``languages`` of the wrong length, a caption whose language is not known, a
            known language without captions, or an image without a caption in some language.
    """
    codes = _check_language_codes("languages", languages)
    if len(codes) != text_to_image.shape[0]:
        raise ValueError(
            f"languages: expected {text_to_image.shape[0]} entries (one per row of text_emb),"
            f" got {len(codes)}"
        )
    order = _language_order(codes, known_languages)
    as_array = np.asarray(codes, dtype=object)
    selected: dict[str, np.ndarray] = {}
    for language in order:
        indices = np.flatnonzero(as_array == language)
        if protocol == "clip_benchmark":
            _, first = np.unique(text_to_image[indices], return_index=True)
            indices = indices[np.sort(first)]
        counts = np.bincount(text_to_image[indices], minlength=images)
        if np.any(counts == 0):
            missing = np.flatnonzero(counts == 0)
            raise ValueError(
                f"language {language!r}: expected a caption for every image (XM3600 captions each"
                f" image in every language), got none for {missing.size} image(s), first image"
                f" {int(missing[0])}"
            )
        selected[language] = indices.astype(np.int64)
    return selected


def _mean(per_language: dict[str, dict[str, float]]) -> dict[str, float]:
    keys = next(iter(per_language.values())).keys()
    return {
        key: float(np.mean([metrics[key] for metrics in per_language.values()])) for key in keys
    }


def multilingual_retrieval_metrics(
    image_emb: Any,
    text_emb: Any,
    text_to_image: Any,
    languages: Sequence[str],
    *,
    ks: Sequence[int] = (1, 5, 10),
    protocol: str = "big_vision",
    known_languages: Sequence[str] | None = None,
    ties: str = "index",
) -> dict[str, dict[str, float]]:
    """Per-language image->text and text->image Recall@K over shared images, and their mean.

    For each language l, with ``T_l`` its captions (all of them under ``"big_vision"``; under
    ``"clip_benchmark"`` only the first caption of each image in l):

    ``text_to_image_R@K[l] = (1/|T_l|) sum_{j in T_l} [image text_to_image[j] ranks < K among all
    images]``; ``image_to_text_R@K[l] = (1/N_img) sum_i [some caption of image i in T_l ranks < K
    among T_l]``. That is :func:`siglip_eval.retrieval_metrics` on the images and ``T_l``;
    ``"mean"`` averages each metric over the languages with equal weight (the number papers
    report). See the module docstring for why the protocols differ.

    Args:
        image_emb: ``[images, dim]`` image embeddings, shared by every language.
        text_emb: ``[texts, dim]`` caption embeddings of every language.
        text_to_image: ``[texts]`` int image index of each caption.
        languages: ``[texts]`` language code of each caption (``"de"``, ``"zh"``).
        ks: the K values, positive ints.
        protocol: ``"big_vision"`` (all captions) or ``"clip_benchmark"`` (first caption only).
        known_languages: the languages to report, in this order; every caption's language must be
            one of them and each needs captions. Default: the languages of ``languages`` in order
            of first appearance.
        ties: tie rule (``retrieval_metrics``).

    Returns:
        ``{language: {"image_to_text_R@K": ..., "text_to_image_R@K": ...}, ..., "mean": {...}}``,
        fractions in [0, 1], languages in report order, ``"mean"`` last.

    Raises:
        ValueError: shapes or lengths disagree, a caption points outside the images, a caption
            with an unknown language, a language without captions, an image without a caption in
            some language, a bad protocol / K / tie rule, or a NaN/inf/zero embedding row.

    Examples:
        >>> import numpy as np
        >>> from siglip_eval import multilingual_retrieval_metrics
        >>> images = np.eye(3)
        >>> texts = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1]])
        >>> metrics = multilingual_retrieval_metrics(
        ...     images, texts, [0, 1, 2, 0, 1, 2], ["en"] * 3 + ["de"] * 3, ks=(1,)
        ... )
        >>> metrics["en"]["text_to_image_R@1"], metrics["de"]["text_to_image_R@1"]
        (1.0, 0.3333333333333333)
        >>> metrics["mean"]
        {'image_to_text_R@1': 0.6666666666666666, 'text_to_image_R@1': 0.6666666666666666}
    """
    k_values = check_ks(ks)
    check_ties(ties)
    _check_protocol(protocol)
    images = check_embeddings("image_emb", image_emb)
    texts = check_embeddings("text_emb", text_emb, dim=images.shape[1])
    mapping = check_labels(
        "text_to_image",
        text_to_image,
        rows=texts.shape[0],
        num_classes=images.shape[0],
        rows_name="text_emb",
    )
    selected = language_text_indices(
        mapping,
        languages,
        images=images.shape[0],
        protocol=protocol,
        known_languages=known_languages,
    )
    per_language = {
        language: retrieval_metrics(
            images, texts[indices], mapping[indices], ks=k_values, ties=ties
        )
        for language, indices in selected.items()
    }
    return {**per_language, MEAN: _mean(per_language)}


# ------------------------------------------------------------------------------ the dataset


@dataclasses.dataclass
class MultilingualDataset:
    """Images with captions in several languages (the Crossmodal-3600 structure).

    Every image has at least one caption in every language; ``batches`` yields the images once
    (``ImageBatch`` with ``captions=None``), and ``texts()`` the captions of every language.

    Attributes:
        name: dataset name (errors, cache keys, reports).
        keys: ``[images]`` image keys (``image/key``).
        locales: ``[images]`` the ``image/locale`` of each image (XM3600: the language whose
            region the image was chosen for).
        languages: the languages, in report order.
        captions: language -> ``[images]`` lists of captions.
        batches: ``batch_size -> Iterator[ImageBatch]`` over the images, in ``keys`` order.
    """

    name: str
    keys: list[str]
    locales: list[str]
    languages: list[str]
    captions: dict[str, list[list[str]]]
    batches: Callable[[int], Iterator[ImageBatch]]

    @property
    def size(self) -> int:
        """Number of images."""
        return len(self.keys)

    def texts(self, *, first_only: bool = False) -> tuple[list[str], np.ndarray, list[str]]:
        """``(texts, text_to_image [texts], languages [texts])``: language by language, then image
        by image, each image's captions in their stored order (the first is CLIP_benchmark's).

        Args:
            first_only: only the first caption of each image in each language.

        Returns:
            The captions, the image index of each and the language of each.
        """
        texts: list[str] = []
        text_to_image: list[int] = []
        languages: list[str] = []
        for language in self.languages:
            for image, all_captions in enumerate(self.captions[language]):
                captions = all_captions[:1] if first_only else all_captions
                texts += captions
                text_to_image += [image] * len(captions)
                languages += [language] * len(captions)
        return texts, np.asarray(text_to_image, dtype=np.int64), languages


def _json_lines(path: Path, *, dataset: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"dataset {dataset!r}: line {number} is not JSON: {error}") from error
        if not isinstance(record, dict):
            raise ValueError(
                f"dataset {dataset!r}: line {number}: expected a JSON object, got"
                f" {type(record).__name__}"
            )
        yield number, record


def xm3600(
    root: str | os.PathLike[str],
    *,
    image_size: int,
    languages: Sequence[str] | None = None,
    images_dir: str | os.PathLike[str] | None = None,
    name: str | None = None,
    resample: Resample = "bicubic",
    preprocess: Preprocess | None = None,
) -> MultilingualDataset:
    """Crossmodal-3600 and datasets in its layout (``siglip-data build emoji-multilingual``).

    ``root/captions.jsonl`` holds one JSON object per image: ``"image/key"``, ``"image/locale"``
    and, per language, ``{"caption": [...]}`` (other fields such as ``"caption/tokenized"`` are
    ignored); the image is ``<images_dir>/<image/key>.jpg``. XM3600's own files: unzip
    ``captions.zip`` into ``root`` and untar ``images.tgz`` into ``root/images`` (the folder
    CLIP_benchmark uses). This reader downloads nothing. Every image must have at least one
    caption in every language read, and its file must exist: a missing one is an error naming it
    (CLIP_benchmark skips it, which changes the denominator).

    Args:
        root: the folder with ``captions.jsonl``.
        image_size: the model's square resolution (``siglip_data.preprocess_image``).
        languages: the languages to read, in report order; None: every language of the file,
            XM3600's order first (``siglip_data.builders.XM3600_LANGUAGES``), others sorted.
        images_dir: the folder of ``<key>.jpg`` (default ``root/images``).
        name: dataset name (defaults to the folder name).
        resample: ``siglip_data.preprocess_image`` kernel (see ``image_folder``).
        preprocess: replaces the default preprocessing (see ``image_folder``).

    Returns:
        A ``MultilingualDataset`` that decodes the images lazily, batch by batch.

    Raises:
        FileNotFoundError: no ``captions.jsonl``, or an image key whose ``.jpg`` does not exist
            (named with its line).
        ValueError: a line that is not an object with ``image/key`` and ``image/locale``, a
            repeated key, a language field that is not ``{"caption": [non-empty str, ...]}``, an
            image without captions in a language, a requested language no image has, an empty
            file, or a bad ``image_size`` / ``resample``.
    """
    folder = Path(root)
    dataset = name or folder.name
    captions_file = folder / "captions.jsonl"
    if not captions_file.is_file():
        raise FileNotFoundError(
            f"root (dataset {dataset!r}): no captions.jsonl in {str(folder)!r} (the XM3600 layout:"
            " captions.jsonl and images/<image/key>.jpg)"
        )
    image_folder = Path(images_dir) if images_dir is not None else folder / "images"
    wanted = None if languages is None else _check_language_codes("languages", languages)
    if wanted is not None and len(set(wanted)) != len(wanted):
        duplicate = next(code for code in wanted if wanted.count(code) > 1)
        raise ValueError(f"languages: expected unique codes, got {duplicate!r} twice")
    transform = _default_preprocess(image_size, resample, preprocess)
    keys: list[str] = []
    locales: list[str] = []
    files: list[Path] = []
    per_image: list[dict[str, list[str]]] = []
    line_of: dict[str, int] = {}
    for number, record in _json_lines(captions_file, dataset=dataset):
        key, locale = record.get("image/key"), record.get("image/locale")
        if not isinstance(key, str) or not key or not isinstance(locale, str):
            raise ValueError(
                f"dataset {dataset!r}: line {number}: expected string fields 'image/key' and"
                f" 'image/locale', got {key!r} and {locale!r}"
            )
        if key in line_of:
            raise ValueError(
                f"dataset {dataset!r}: line {number}: image key {key!r} repeats line {line_of[key]}"
            )
        line_of[key] = number
        found: dict[str, list[str]] = {}
        for field, value in record.items():
            if field.startswith("image/"):
                continue
            if not isinstance(value, dict) or "caption" not in value:
                raise ValueError(
                    f"dataset {dataset!r}: line {number} (image {key!r}): field {field!r} is not a"
                    ' language: expected {"caption": [...]}, got'
                    f" {type(value).__name__}"
                )
            if wanted is None or field in wanted:
                found[field] = check_captions(
                    value["caption"], dataset=dataset, key=f"{key} ({field}, line {number})"
                )
        image_file = image_folder / f"{key}.jpg"
        if not image_file.is_file():
            raise FileNotFoundError(
                f"dataset {dataset!r}: image key {key!r} (line {number}) has no image: no file"
                f" {str(image_file)!r}"
            )
        keys.append(key)
        locales.append(locale)
        files.append(image_file)
        per_image.append(found)
    if not keys:
        raise ValueError(f"dataset {dataset!r}: expected at least one image, got an empty file")
    present = {language for found in per_image for language in found}
    if wanted is None:
        order = [code for code in XM3600_LANGUAGES if code in present]
        order += sorted(present - set(order))
    else:
        absent = [language for language in wanted if language not in present]
        if absent:
            raise ValueError(
                f"dataset {dataset!r}: language(s) {', '.join(repr(a) for a in absent)} have no"
                f" captions in {str(captions_file)!r} (languages present:"
                f" {', '.join(sorted(present)) or 'none'})"
            )
        order = wanted
    captions: dict[str, list[list[str]]] = {language: [] for language in order}
    for key, found in zip(keys, per_image):
        for language in order:
            if language not in found:
                raise ValueError(
                    f"dataset {dataset!r}: image {key!r} (line {line_of[key]}) has no captions in"
                    f" language {language!r}; every image needs every language read (pass"
                    " languages=[...] to read fewer)"
                )
            captions[language].append(found[language])

    def batches(batch_size: int) -> Iterator[ImageBatch]:
        for start in range(0, len(files), batch_size):
            chunk_keys = keys[start : start + batch_size]
            pixels = [
                load_image(path, transform, dataset=dataset)
                for path in files[start : start + batch_size]
            ]
            yield ImageBatch(
                pixels=stack_pixels(pixels, chunk_keys, dataset=dataset), keys=chunk_keys
            )

    return MultilingualDataset(
        name=dataset,
        keys=keys,
        locales=locales,
        languages=order,
        captions=captions,
        batches=batches,
    )


# ------------------------------------------------------------------------------ the protocol


@dataclasses.dataclass
class MultilingualResult:
    """Everything a multilingual retrieval run measured.

    Attributes:
        dataset: dataset name.
        metrics: protocol -> ``multilingual_retrieval_metrics`` output (per language and
            ``"mean"``).
        languages: the languages, in report order.
        num_images: images (shared by every language).
        num_texts: protocol -> language -> captions used as queries.
        ks: the K values.
    """

    dataset: str
    metrics: dict[str, dict[str, dict[str, float]]]
    languages: list[str]
    num_images: int
    num_texts: dict[str, dict[str, int]]
    ks: tuple[int, ...]

    def mean_without(self, excluded: Sequence[str] = ("en",)) -> dict[str, dict[str, float]]:
        """protocol -> the mean over the languages not in ``excluded`` (e.g. non-English).

        Args:
            excluded: languages left out of the mean.

        Returns:
            protocol -> metric -> mean; empty when no language is left.
        """
        kept = [language for language in self.languages if language not in set(excluded)]
        if not kept:
            return {}
        return {
            protocol: _mean({language: metrics[language] for language in kept})
            for protocol, metrics in self.metrics.items()
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "task": "multilingual_retrieval",
            "dataset": self.dataset,
            "num_images": self.num_images,
            "languages": self.languages,
            "num_texts": self.num_texts,
            "ks": list(self.ks),
            "metrics": self.metrics,
            "mean_without_english": self.mean_without(("en",)),
        }


def multilingual_from_embeddings(
    image_emb: Any,
    text_emb: Any,
    text_to_image: Any,
    languages: Sequence[str],
    *,
    ks: Sequence[int] = (1, 5, 10),
    protocols: Sequence[str] = PROTOCOLS,
    known_languages: Sequence[str] | None = None,
    dataset: str = "arrays",
    ties: str = "index",
) -> MultilingualResult:
    """``MultilingualResult`` of saved embeddings under one or both protocols.

    Same arguments as :func:`multilingual_retrieval_metrics`; ``protocols`` lists the protocols
    to compute (both by default, to show how far apart they are).
    """
    chosen = [_check_protocol(protocol) for protocol in protocols]
    if not chosen:
        raise ValueError(f"protocols: expected at least one of {PROTOCOLS}, got none")
    k_values = check_ks(ks)
    metrics = {
        protocol: multilingual_retrieval_metrics(
            image_emb,
            text_emb,
            text_to_image,
            languages,
            ks=k_values,
            protocol=protocol,
            known_languages=known_languages,
            ties=ties,
        )
        for protocol in chosen
    }
    mapping = np.asarray(text_to_image, dtype=np.int64)
    images = int(np.asarray(image_emb).shape[0])
    num_texts = {
        protocol: {
            language: int(indices.size)
            for language, indices in language_text_indices(
                mapping,
                languages,
                images=images,
                protocol=protocol,
                known_languages=known_languages,
            ).items()
        }
        for protocol in chosen
    }
    order = [language for language in metrics[chosen[0]] if language != MEAN]
    return MultilingualResult(
        dataset=dataset,
        metrics=metrics,
        languages=order,
        num_images=images,
        num_texts=num_texts,
        ks=k_values,
    )


def evaluate_multilingual(
    encoder: Encoder,
    dataset: MultilingualDataset,
    *,
    ks: Sequence[int] = (1, 5, 10),
    protocols: Sequence[str] = PROTOCOLS,
    batch_size: int = 64,
    text_batch_size: int = 256,
    cache: EmbeddingCache | None = None,
    progress: bool = True,
    ties: str = "index",
) -> MultilingualResult:
    """Per-language Recall@K of ``encoder`` on an XM3600-layout dataset, under both protocols.

    The images are embedded once and shared by every language (XM3600 has 3,600 images and
    261,375 captions); every caption of every language is embedded once, and each protocol picks
    its captions from them (``protocols=("clip_benchmark",)`` embeds only the first captions).

    Args:
        encoder: the model (its text side must lowercase and pad as the model was trained:
            ``siglip_data.SentencePieceTokenizer`` with the right preset and ``lowercase``).
        dataset: a ``MultilingualDataset`` (``siglip_eval.datasets.xm3600``).
        ks: the K values.
        protocols: ``"big_vision"`` and / or ``"clip_benchmark"``.
        batch_size: images per ``encode_images`` call.
        text_batch_size: captions per ``encode_texts`` call.
        cache: optional ``EmbeddingCache`` (keys: the encoder's and the dataset's names).
        progress: progress bars while embedding.
        ties: tie rule.

    Returns:
        ``MultilingualResult``.

    Raises:
        ValueError: a bad protocol or K, NaN / zero embeddings (named by item).

    Examples:
        >>> import numpy as np
        >>> from siglip_eval import Encoder, evaluate_multilingual
        >>> from siglip_eval.datasets import MultilingualDataset, ImageBatch
        >>> colors = {"red": 0, "rot": 0, "blue": 1, "blau": 1}
        >>> pixels = np.eye(3, dtype=np.float32)[:2, None, None, :]  # a red and a green pixel
        >>> dataset = MultilingualDataset(
        ...     name="toy",
        ...     keys=["a", "b"],
        ...     locales=["en", "de"],
        ...     languages=["en", "de"],
        ...     captions={"en": [["red"], ["blue"]], "de": [["rot"], ["blau", "rot"]]},
        ...     batches=lambda size: iter([ImageBatch(pixels=pixels, keys=["a", "b"])]),
        ... )
        >>> encoder = Encoder(
        ...     encode_images=lambda batch: batch.reshape(len(batch), 3),
        ...     encode_texts=lambda texts: np.eye(3)[[colors[t] for t in texts]],
        ... )
        >>> result = evaluate_multilingual(encoder, dataset, ks=(1,), progress=False)
        >>> result.metrics["big_vision"]["de"]["text_to_image_R@1"]
        0.6666666666666666
        >>> result.metrics["clip_benchmark"]["de"]["text_to_image_R@1"]
        1.0
    """
    model = as_encoder(encoder)
    chosen = [_check_protocol(protocol) for protocol in protocols]
    texts, text_to_image, languages = dataset.texts(first_only="big_vision" not in chosen)
    # The captions' own hash keys their cache entry: other languages, other texts, a miss.
    texts_key = fingerprint(texts, languages)
    image_emb = None
    text_emb = None
    if cache is not None:
        images_hit = cache.load(model.name, dataset.name, "images")
        texts_hit = cache.load(model.name, dataset.name, "multilingual-captions")
        if images_hit is not None and images_hit[1].get("keys") == dataset.keys:
            image_emb = images_hit[0]
        if texts_hit is not None and texts_hit[1].get("fingerprint") == texts_key:
            text_emb = texts_hit[0]
    if image_emb is None:
        image_emb = embed_image_batches(
            model.encode_images,
            ((batch.pixels, batch.keys) for batch in dataset.batches(batch_size)),
            dataset=dataset.name,
            total=dataset.size,
            progress=progress,
        )
        if cache is not None:
            cache.save(model.name, dataset.name, "images", image_emb, {"keys": dataset.keys})
    if text_emb is None:
        names = [
            f"{dataset.keys[image]} ({language})"
            for image, language in zip(text_to_image.tolist(), languages)
        ]
        text_emb = embed_texts(
            model.encode_texts,
            texts,
            dataset=dataset.name,
            batch_size=text_batch_size,
            progress=progress,
            keys=names,
        )
        if cache is not None:
            cache.save(
                model.name,
                dataset.name,
                "multilingual-captions",
                text_emb,
                {"fingerprint": texts_key},
            )
    return multilingual_from_embeddings(
        image_emb,
        text_emb,
        text_to_image,
        languages,
        ks=ks,
        protocols=chosen,
        known_languages=dataset.languages,
        dataset=dataset.name,
        ties=ties,
    )
