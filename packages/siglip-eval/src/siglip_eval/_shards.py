"""Readers for siglip-data WebDataset shards.

Evaluation reads every sample exactly once, in stored order, and never skips: a sample without an
image, a label or a caption is an error naming the shard and the key (a training loader may skip
bad samples; an evaluator that did would silently change the denominator).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from siglip_data import preprocess_image
from siglip_data import read_shard
from siglip_data import resolve_shards
from siglip_data.builders import load_dataset_info
from siglip_eval._datasets import ClassificationDataset
from siglip_eval._datasets import ImageBatch
from siglip_eval._datasets import Preprocess
from siglip_eval._datasets import Resample
from siglip_eval._datasets import RetrievalDataset
from siglip_eval._datasets import _check_pixels
from siglip_eval._datasets import check_image_options
from siglip_eval._validation import check_captions
from siglip_eval._validation import check_class_names
from siglip_eval._validation import stack_pixels

ShardSpec = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def _samples(shards: ShardSpec, *, dataset: str) -> Iterator[Any]:
    for path in resolve_shards(shards):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"dataset {dataset!r}: shard {path!r} does not exist")
        for sample in read_shard(path):
            where = f"dataset {dataset!r}: sample {sample.key!r} of shard {path!r}"
            if sample.problem is not None:
                raise ValueError(f"{where} is unreadable ({sample.problem})")
            if sample.image is None:
                raise ValueError(f"{where} has no image member")
            yield sample


def _pixels(
    sample: Any,
    *,
    image_size: int,
    resample: Resample,
    dataset: str,
    preprocess: Preprocess | None = None,
) -> Any:
    try:
        if preprocess is not None:
            with Image.open(io.BytesIO(sample.image)) as image:
                image.load()
                return _check_pixels(preprocess(image), dataset=dataset, key=sample.key)
        return np.asarray(
            preprocess_image(sample.image, size=int(image_size), resample=resample),
            dtype=np.float32,
        )
    except (OSError, ValueError) as error:
        raise ValueError(
            f"dataset {dataset!r}: cannot decode the image of sample {sample.key!r} of shard"
            f" {sample.source!r}: {error}"
        ) from error


def classification_shards(
    shards: ShardSpec,
    *,
    class_names: Sequence[str],
    image_size: int,
    label_key: str = "label",
    name: str | None = None,
    resample: Resample = "bicubic",
    size: int | None = None,
    preprocess: Preprocess | None = None,
) -> ClassificationDataset:
    """Labelled images from siglip-data shards: the label is ``metadata[label_key]`` (an int).

    Args:
        shards: a brace pattern (``"test/shard-{000000..000001}.tar"``), a folder of ``.tar``
            files, or a list of paths.
        class_names: ``[classes]`` prompt names, index = label.
        image_size: model resolution; images go through ``siglip_data.preprocess_image``.
        label_key: metadata field holding the label.
        name: dataset name (defaults to the shard spec).
        resample: ``siglip_data.preprocess_image`` kernel (``"bicubic"``, ``"bilinear"`` = big_vision,
            ``"pil_bilinear"``).
        size: number of samples if known (progress bar).
        preprocess: replaces the default preprocessing: ``PIL.Image -> [height, width, 3]``
            float32 in [-1, 1] or a NaFlex record (``image_size`` and ``resample`` then unused).

    Returns:
        A ``ClassificationDataset`` that reads the shards lazily, in stored order.

    Raises:
        ValueError: a bad ``image_size`` / ``resample`` (at once); while reading, a sample without
            an image or label, a label outside ``[0, classes)`` (named by shard and key), or no
            samples at all.
    """
    dataset = name or str(shards)
    names = check_class_names(class_names, dataset=dataset)
    if preprocess is None:
        check_image_options(image_size, resample)

    def batches(batch_size: int) -> Iterator[ImageBatch]:
        pixels: list[Any] = []
        keys: list[str] = []
        labels: list[int] = []
        for sample in _samples(shards, dataset=dataset):
            metadata = sample.metadata or {}
            label = metadata.get(label_key)
            if isinstance(label, bool) or not isinstance(label, int):
                raise ValueError(
                    f"dataset {dataset!r}: sample {sample.key!r} of shard {sample.source!r}: expected an"
                    f" int metadata[{label_key!r}], got {label!r}"
                )
            if not 0 <= label < len(names):
                raise ValueError(
                    f"dataset {dataset!r}: sample {sample.key!r} of shard {sample.source!r}: label"
                    f" {label} is outside [0, {len(names)}) (class_names has {len(names)} entries)"
                )
            pixels.append(
                _pixels(
                    sample,
                    image_size=image_size,
                    resample=resample,
                    dataset=dataset,
                    preprocess=preprocess,
                )
            )
            keys.append(sample.key)
            labels.append(label)
            if len(keys) == batch_size:
                yield ImageBatch(
                    stack_pixels(pixels, keys, dataset=dataset), keys, np.asarray(labels, np.int64)
                )
                pixels, keys, labels = [], [], []
        if keys:
            yield ImageBatch(
                stack_pixels(pixels, keys, dataset=dataset), keys, np.asarray(labels, np.int64)
            )

    return ClassificationDataset(name=dataset, class_names=names, batches=batches, size=size)


def retrieval_shards(
    shards: ShardSpec,
    *,
    image_size: int,
    name: str | None = None,
    resample: Resample = "bicubic",
    captions_key: str = "captions",
    size: int | None = None,
    preprocess: Preprocess | None = None,
) -> RetrievalDataset:
    """Images with captions from siglip-data shards.

    Each sample is one image; its captions are ``metadata[captions_key]`` (a list of strings) when
    present, else the ``.txt`` member (one caption).

    Args:
        shards: a brace pattern, a folder of ``.tar`` files, or a list of paths.
        image_size: model resolution; images go through ``siglip_data.preprocess_image``.
        name: dataset name (defaults to the shard spec).
        resample: ``siglip_data.preprocess_image`` kernel (``"bicubic"``, ``"bilinear"``,
            ``"pil_bilinear"``).
        captions_key: metadata field holding a list of captions.
        size: number of samples if known (progress bar).
        preprocess: replaces the default preprocessing (see ``classification_shards``).

    Returns:
        A ``RetrievalDataset`` that reads the shards lazily, in stored order.

    Raises:
        ValueError: a bad ``image_size`` / ``resample`` (at once); while reading, a sample without
            an image or caption (named by shard and key).
    """
    dataset = name or str(shards)
    if preprocess is None:
        check_image_options(image_size, resample)

    def batches(batch_size: int) -> Iterator[ImageBatch]:
        pixels: list[Any] = []
        keys: list[str] = []
        captions: list[list[str]] = []
        for sample in _samples(shards, dataset=dataset):
            metadata = sample.metadata or {}
            texts = metadata.get(captions_key, sample.caption)
            if texts is None:
                raise ValueError(
                    f"dataset {dataset!r}: sample {sample.key!r} of shard {sample.source!r} has no"
                    f" caption (.txt member or metadata[{captions_key!r}])"
                )
            captions.append(
                check_captions(texts, dataset=dataset, key=f"{sample.key} ({sample.source})")
            )
            pixels.append(
                _pixels(
                    sample,
                    image_size=image_size,
                    resample=resample,
                    dataset=dataset,
                    preprocess=preprocess,
                )
            )
            keys.append(sample.key)
            if len(keys) == batch_size:
                yield ImageBatch(
                    stack_pixels(pixels, keys, dataset=dataset), keys, captions=captions
                )
                pixels, keys, captions = [], [], []
        if keys:
            yield ImageBatch(stack_pixels(pixels, keys, dataset=dataset), keys, captions=captions)

    return RetrievalDataset(name=dataset, batches=batches, size=size)


def built_dataset(
    directory: str | os.PathLike[str],
    *,
    split: str,
    image_size: int,
    task: str = "classification",
    resample: Resample = "bicubic",
    preprocess: Preprocess | None = None,
) -> tuple[ClassificationDataset | RetrievalDataset, tuple[str, ...]]:
    """A dataset built by ``siglip-data build ...`` (its ``dataset.json``) and its prompt templates.

    For ``task="classification"`` the class names are the dataset's ``caption_names`` (how its
    captions name each class, e.g. "pair of trousers") and the labels its ``label_key``.

    Args:
        directory: the folder holding ``dataset.json``.
        split: the split to read (e.g. ``"train"``, ``"test"``).
        image_size: model resolution; images go through ``siglip_data.preprocess_image``.
        task: ``"classification"`` or ``"retrieval"``.
        resample: ``siglip_data.preprocess_image`` kernel.
        preprocess: replaces the default preprocessing (e.g. NaFlex, see
            ``classification_shards``).

    Returns:
        ``(dataset, caption_templates)``; the templates use ``{}`` or ``{c}`` for the class name.

    Raises:
        FileNotFoundError: no ``dataset.json`` in ``directory``.
        ValueError: unknown split or task.
    """
    info = load_dataset_info(directory)
    if split not in info.splits:
        raise ValueError(
            f"split: expected one of {sorted(info.splits)} for {info.name!r}, got {split!r}"
        )
    spec = list(info.splits[split].shards)
    name = f"{info.name}:{split}"
    size = int(info.splits[split].num_samples)
    if task == "classification":
        return (
            classification_shards(
                spec,
                class_names=list(info.caption_names),
                image_size=image_size,
                label_key=info.label_key,
                name=name,
                resample=resample,
                size=size,
                preprocess=preprocess,
            ),
            tuple(info.caption_templates),
        )
    if task == "retrieval":
        return (
            retrieval_shards(
                spec,
                image_size=image_size,
                name=name,
                resample=resample,
                size=size,
                preprocess=preprocess,
            ),
            tuple(info.caption_templates),
        )
    raise ValueError(f"task: expected 'classification' or 'retrieval', got {task!r}")
