"""Zero-shot classification: prompt-ensembled class embeddings, then nearest class by cosine."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from siglip_eval._datasets import ClassificationDataset
from siglip_eval._encoders import EmbeddingCache
from siglip_eval._encoders import Encoder
from siglip_eval._encoders import TextEncoderFn
from siglip_eval._encoders import as_encoder
from siglip_eval._encoders import embed_image_batches
from siglip_eval._encoders import embed_texts
from siglip_eval._encoders import fingerprint
from siglip_eval._metrics import EPSILON
from siglip_eval._metrics import classification_rank_parts
from siglip_eval._metrics import confusion_matrix
from siglip_eval._metrics import l2_normalize
from siglip_eval._metrics import metrics_from_ranks
from siglip_eval._metrics import per_class_recall
from siglip_eval._metrics import zeroshot_scores
from siglip_eval._templates import IMAGENET_TEMPLATES
from siglip_eval._templates import fill_templates
from siglip_eval._validation import check_embeddings
from siglip_eval._validation import check_every_class_present
from siglip_eval._validation import check_ties


def class_embeddings(
    encode_texts: TextEncoderFn,
    class_names: Sequence[str],
    templates: Sequence[str] = IMAGENET_TEMPLATES,
    *,
    batch_size: int = 256,
    progress: bool = True,
    dataset: str = "classes",
) -> np.ndarray:
    """One embedding per class: the renormalised mean of its normalised prompt embeddings.

    ``w_c = m_c / ||m_c||``, ``m_c = (1/T) sum_t e_ct / ||e_ct||`` with ``e_ct`` the text
    embedding of template t filled with class name c (CLIP's prompt ensembling, as in CLIP_benchmark
    and big_vision).

    Args:
        encode_texts: ``list[str] -> [batch, dim]``.
        class_names: ``[classes]`` names.
        templates: prompts with ``{c}`` for the class name (default: the 80 ImageNet prompts).
        batch_size: prompts per ``encode_texts`` call.
        progress: show a progress bar.
        dataset: name used in errors.

    Returns:
        ``[classes, dim]`` float64, unit-norm rows.

    Raises:
        ValueError: no classes, a template without ``{c}``, a NaN/zero prompt embedding (the message
            names the prompt), or prompts that cancel to a zero mean.

    Examples:
        >>> import numpy as np
        >>> from siglip_eval import class_embeddings
        >>> table = {
        ...     "a cat": [1.0, 0.0],
        ...     "the cat": [3.0, 1.0],
        ...     "a dog": [0.0, 2.0],
        ...     "the dog": [0.0, 1.0],
        ... }
        >>> encode = lambda texts: np.array([table[t] for t in texts])
        >>> class_embeddings(encode, ["cat", "dog"], ["a {c}", "the {c}"], progress=False).shape
        (2, 2)
    """
    names = list(class_names)
    if not names:
        raise ValueError(
            f"class_names (dataset {dataset!r}): expected at least one class, got none"
        )
    prompts: list[str] = []
    for class_name in names:
        prompts.extend(fill_templates(templates, class_name))
    templates_per_class = len(prompts) // len(names)
    # embed_texts has already rejected NaN and all-zero prompt embeddings, naming the prompt.
    embeddings = l2_normalize(
        embed_texts(
            encode_texts,
            prompts,
            dataset=dataset,
            batch_size=batch_size,
            progress=progress,
            keys=prompts,
        ).astype(np.float64)
    )
    # Prompts are grouped by class: row c * templates_per_class + t is template t of class c.
    means = embeddings.reshape(len(names), templates_per_class, -1).mean(axis=1)
    cancelled = np.linalg.norm(means, axis=1) < EPSILON
    if cancelled.any():
        bad = names[int(np.flatnonzero(cancelled)[0])]
        raise ValueError(
            f"class {bad!r} (dataset {dataset!r}): its prompt embeddings cancel out (mean has norm ~0)"
        )
    return l2_normalize(means)


@dataclasses.dataclass
class ZeroShotResult:
    """Everything a zero-shot run measured.

    Attributes:
        dataset: dataset name.
        metrics: ``{"top1", "top5", "mean_per_class_recall"}`` (``zeroshot_metrics``).
        class_names: ``[classes]``.
        per_class_accuracy: ``[classes]`` recall of each class.
        confusion: ``[classes, classes]`` int counts ``[true, predicted]``.
        labels: ``[images]`` true classes.
        predictions: ``[images]`` argmax classes.
        keys: ``[images]`` item names.
        templates: the prompts used.
        tied_images: images whose true class tied with another class at the top-5 boundary (their
            top-k depends on the tie rule; 0 for any real model).
    """

    dataset: str
    metrics: dict[str, float]
    class_names: list[str]
    per_class_accuracy: np.ndarray
    confusion: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    keys: list[str]
    templates: list[str]
    tied_images: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the per-image arrays)."""
        return {
            "task": "zeroshot",
            "dataset": self.dataset,
            "num_images": len(self.labels),
            "num_classes": len(self.class_names),
            "num_templates": len(self.templates),
            "metrics": self.metrics,
            "per_class_accuracy": {
                name: float(value) for name, value in zip(self.class_names, self.per_class_accuracy)
            },
            "images_per_class": {
                name: int(count)
                for name, count in zip(self.class_names, self.confusion.sum(axis=1))
            },
            "confusion_matrix": self.confusion.tolist(),
            "tied_images": self.tied_images,
        }


def zeroshot_from_embeddings(
    image_emb: Any,
    class_emb: Any,
    labels: Any,
    class_names: Sequence[str],
    *,
    dataset: str = "arrays",
    keys: Sequence[str] | None = None,
    templates: Sequence[str] = (),
    ties: str = "index",
) -> ZeroShotResult:
    """Zero-shot result (metrics, per-class accuracy, confusion matrix) from embeddings.

    Args:
        image_emb: ``[images, dim]`` image embeddings.
        class_emb: ``[classes, dim]`` class embeddings (e.g. from ``class_embeddings``).
        labels: ``[images]`` int true classes.
        class_names: ``[classes]``.
        dataset: name used in errors and the report.
        keys: ``[images]`` item names for errors (defaults to row numbers).
        templates: the prompts behind ``class_emb`` (recorded in the report).
        ties: tie rule for top-k (``zeroshot_metrics``).

    Returns:
        ``ZeroShotResult`` with the metrics, per-class accuracy, confusion matrix and predictions.

    Raises:
        ValueError: a class without images, a NaN/zero embedding (named by item), shape mismatch.
    """
    names = list(class_names)
    item_keys = list(keys) if keys is not None else [str(i) for i in range(len(np.asarray(labels)))]
    images = check_embeddings("image_emb", image_emb, dataset=dataset, keys=item_keys)
    classes = check_embeddings(
        "class_emb", class_emb, dataset=dataset, keys=names, dim=images.shape[1]
    )
    if classes.shape[0] != len(names):
        raise ValueError(
            f"class_emb (dataset {dataset!r}): expected {len(names)} rows (one per class name), got {classes.shape[0]}"
        )
    truth = np.asarray(labels).astype(np.int64)
    if truth.shape != (images.shape[0],):
        raise ValueError(
            f"labels (dataset {dataset!r}): expected shape [{images.shape[0]}] (one per image), got {truth.shape}"
        )
    check_every_class_present(truth, names, dataset=dataset)
    check_ties(ties)
    scores = zeroshot_scores(images, classes)
    parts = classification_rank_parts(scores, truth)
    metrics = metrics_from_ranks(parts.ranks(ties), truth, len(names))
    predictions = np.argmax(scores, axis=1).astype(np.int64)
    confusion = confusion_matrix(truth, predictions, num_classes=len(names))
    optimistic, pessimistic = parts.ranks("optimistic"), parts.ranks("pessimistic")
    tied = int(
        np.sum(((optimistic < 5) != (pessimistic < 5)) | ((optimistic < 1) != (pessimistic < 1)))
    )
    return ZeroShotResult(
        dataset=dataset,
        metrics=metrics,
        class_names=names,
        per_class_accuracy=per_class_recall(confusion),
        confusion=confusion,
        labels=truth,
        predictions=predictions,
        keys=item_keys,
        templates=list(templates),
        tied_images=tied,
    )


def embed_classification(
    encoder: Encoder,
    dataset: ClassificationDataset,
    *,
    batch_size: int = 64,
    cache: EmbeddingCache | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Image embeddings, labels and keys of a classification dataset (cached when ``cache``)."""
    if cache is not None:
        hit = cache.load(encoder.name, dataset.name, "images")
        if hit is not None:
            embeddings, metadata = hit
            return (
                embeddings,
                np.asarray(metadata["labels"], dtype=np.int64),
                list(metadata["keys"]),
            )
    labels: list[np.ndarray] = []
    keys: list[str] = []

    def batches() -> Any:
        for batch in dataset.batches(batch_size):
            if batch.labels is None:
                raise ValueError(
                    f"dataset {dataset.name!r}: expected labelled batches, got a batch without labels"
                )
            labels.append(np.asarray(batch.labels, dtype=np.int64))
            keys.extend(batch.keys)
            yield batch.pixels, batch.keys

    embeddings = embed_image_batches(
        encoder.encode_images,
        batches(),
        dataset=dataset.name,
        total=dataset.size,
        progress=progress,
    )
    label_array = np.concatenate(labels)
    if cache is not None:
        cache.save(
            encoder.name,
            dataset.name,
            "images",
            embeddings,
            {"labels": label_array.tolist(), "keys": keys},
        )
    return embeddings, label_array, keys


def evaluate_zeroshot(
    encoder: Encoder,
    dataset: ClassificationDataset,
    *,
    templates: Sequence[str] = IMAGENET_TEMPLATES,
    batch_size: int = 64,
    text_batch_size: int = 256,
    cache: EmbeddingCache | None = None,
    progress: bool = True,
    ties: str = "index",
) -> ZeroShotResult:
    """Zero-shot classification of ``dataset`` with ``encoder``.

    Embeds every image once, builds one class embedding per class from ``templates`` (prompt
    ensembling, ``class_embeddings``), classifies each image by its highest cosine (equivalently
    its highest SigLIP logit) and measures top-1, top-5, mean per-class recall, per-class accuracy
    and the confusion matrix.

    Args:
        encoder: the model (``Encoder`` or any object with ``encode_images``/``encode_texts``).
        dataset: labelled images (``image_folder``, ``classification_shards``, ``classification_arrays``).
        templates: prompts with ``{c}``; ``IMAGENET_TEMPLATES`` (80) or ``ONE_TEMPLATE``.
        batch_size: images per ``encode_images`` call.
        text_batch_size: prompts per ``encode_texts`` call.
        cache: optional ``EmbeddingCache``; image and class embeddings are reused across runs.
        progress: progress bars while embedding.
        ties: tie rule for top-k.

    Returns:
        ``ZeroShotResult``.

    Raises:
        ValueError: empty dataset, a class with no images, NaN embeddings (named by item).
    """
    encoder = as_encoder(encoder)
    model_name = encoder.name
    image_emb, labels, keys = embed_classification(
        encoder, dataset, batch_size=batch_size, cache=cache, progress=progress
    )
    check_every_class_present(labels, dataset.class_names, dataset=dataset.name)
    text_kind = "classes-" + fingerprint(list(dataset.class_names), list(templates))
    class_emb: np.ndarray | None = None
    if cache is not None:
        hit = cache.load(model_name, dataset.name, text_kind)
        class_emb = None if hit is None else hit[0]
    if class_emb is None:
        class_emb = class_embeddings(
            encoder.encode_texts,
            dataset.class_names,
            templates,
            batch_size=text_batch_size,
            progress=progress,
            dataset=dataset.name,
        )
        if cache is not None:
            cache.save(
                model_name, dataset.name, text_kind, class_emb, {"class_names": dataset.class_names}
            )
    return zeroshot_from_embeddings(
        image_emb,
        class_emb,
        labels,
        dataset.class_names,
        dataset=dataset.name,
        keys=keys,
        templates=templates,
        ties=ties,
    )
