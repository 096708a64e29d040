"""Image-text retrieval: Recall@K both ways with several captions per image."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from siglip_eval._datasets import RetrievalDataset
from siglip_eval._encoders import EmbeddingCache
from siglip_eval._encoders import Encoder
from siglip_eval._encoders import as_encoder
from siglip_eval._encoders import embed_image_batches
from siglip_eval._encoders import embed_texts
from siglip_eval._metrics import recall_at_k
from siglip_eval._metrics import retrieval_rank_parts
from siglip_eval._validation import check_ks
from siglip_eval._validation import check_ties


@dataclasses.dataclass
class RetrievalResult:
    """Everything a retrieval run measured.

    Attributes:
        dataset: dataset name.
        metrics: ``{"image_to_text_R@K", "text_to_image_R@K"}`` (``retrieval_metrics``).
        image_ranks: ``[images]`` rank of each image's best caption (0 = first).
        text_ranks: ``[texts]`` rank of each caption's image (0 = first).
        text_to_image: ``[texts]`` image index of each caption.
        keys: ``[images]`` item names.
        tied_queries: queries (images and captions) whose hit at some K depends on the tie rule
            (0 for real models).
    """

    dataset: str
    metrics: dict[str, float]
    image_ranks: np.ndarray
    text_ranks: np.ndarray
    text_to_image: np.ndarray
    keys: list[str]
    tied_queries: int

    def recall_curve(self, max_k: int = 50) -> dict[str, list[float]]:
        """Recall@K for K = 1..max_k both ways (the report's recall@K plot).

        Args:
            max_k: the largest K.

        Returns:
            ``{"k": [1.0, ...], "image_to_text": [...], "text_to_image": [...]}``.
        """
        ks = list(range(1, max_k + 1))
        return {
            "k": [float(k) for k in ks],
            "image_to_text": [recall_at_k(self.image_ranks, k) for k in ks],
            "text_to_image": [recall_at_k(self.text_ranks, k) for k in ks],
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the per-query arrays)."""
        return {
            "task": "retrieval",
            "dataset": self.dataset,
            "num_images": len(self.image_ranks),
            "num_texts": len(self.text_ranks),
            "metrics": self.metrics,
            "median_rank": {
                "image_to_text": float(np.median(self.image_ranks) + 1),
                "text_to_image": float(np.median(self.text_ranks) + 1),
            },
            "tied_queries": self.tied_queries,
        }


def retrieval_from_embeddings(
    image_emb: Any,
    text_emb: Any,
    text_to_image: Any,
    *,
    ks: Sequence[int] = (1, 5, 10),
    dataset: str = "arrays",
    keys: Sequence[str] | None = None,
    ties: str = "index",
) -> RetrievalResult:
    """Retrieval result (Recall@K both ways, per-query ranks) from embeddings.

    Args:
        image_emb: ``[images, dim]`` image embeddings.
        text_emb: ``[texts, dim]`` caption embeddings.
        text_to_image: ``[texts]`` image index of each caption; every image needs a caption.
        ks: the K values.
        dataset: name used in errors and the report.
        keys: ``[images]`` item names.
        ties: tie rule (``retrieval_metrics``).

    Returns:
        ``RetrievalResult`` with the metrics, per-query ranks and the count of tied queries.

    Raises:
        ValueError: shapes disagree, an image has no caption, or an embedding row is NaN/inf/zero.
    """
    k_values = check_ks(ks)
    check_ties(ties)
    all_parts = retrieval_rank_parts(image_emb, text_emb, text_to_image, dataset=dataset)
    image_ranks, text_ranks = (parts.ranks(ties) for parts in all_parts)
    metrics = {f"image_to_text_R@{k}": recall_at_k(image_ranks, k) for k in k_values}
    metrics.update({f"text_to_image_R@{k}": recall_at_k(text_ranks, k) for k in k_values})
    tied = 0
    for parts in all_parts:
        optimistic, pessimistic = parts.ranks("optimistic"), parts.ranks("pessimistic")
        depends = np.zeros(optimistic.shape, dtype=bool)
        for k in k_values:
            depends |= (optimistic < k) != (pessimistic < k)
        tied += int(depends.sum())
    return RetrievalResult(
        dataset=dataset,
        metrics=metrics,
        image_ranks=image_ranks,
        text_ranks=text_ranks,
        text_to_image=np.asarray(text_to_image, dtype=np.int64),
        keys=list(keys) if keys is not None else [str(i) for i in range(len(image_ranks))],
        tied_queries=tied,
    )


def embed_retrieval(
    encoder: Encoder,
    dataset: RetrievalDataset,
    *,
    batch_size: int = 64,
    text_batch_size: int = 256,
    cache: EmbeddingCache | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``(image_emb, text_emb, text_to_image, keys)`` of a retrieval dataset (cached when ``cache``)."""
    if cache is not None:
        images_hit = cache.load(encoder.name, dataset.name, "images")
        texts_hit = cache.load(encoder.name, dataset.name, "captions")
        if images_hit is not None and texts_hit is not None:
            mapping = np.asarray(texts_hit[1]["text_to_image"], dtype=np.int64)
            return images_hit[0], texts_hit[0], mapping, list(images_hit[1]["keys"])
    captions: list[str] = []
    text_to_image: list[int] = []
    caption_keys: list[str] = []
    keys: list[str] = []

    def batches() -> Any:
        for batch in dataset.batches(batch_size):
            if batch.captions is None or len(batch.captions) != len(batch.keys):
                got = (
                    "no captions"
                    if batch.captions is None
                    else f"{len(batch.captions)} caption lists"
                )
                raise ValueError(
                    f"dataset {dataset.name!r}: expected one caption list per image ({len(batch.keys)}"
                    f" images from item {batch.keys[0]!r}), got {got}"
                )
            for key, texts in zip(batch.keys, batch.captions):
                if len(texts) == 0:
                    raise ValueError(
                        f"dataset {dataset.name!r}: expected at least one caption per image, got none for item {key!r}"
                    )
                for number, text in enumerate(texts):
                    captions.append(text)
                    text_to_image.append(len(keys))
                    caption_keys.append(f"{key}#{number}")
                keys.append(key)
            yield batch.pixels, batch.keys

    image_emb = embed_image_batches(
        encoder.encode_images,
        batches(),
        dataset=dataset.name,
        total=dataset.size,
        progress=progress,
    )
    text_emb = embed_texts(
        encoder.encode_texts,
        captions,
        dataset=dataset.name,
        batch_size=text_batch_size,
        progress=progress,
        keys=caption_keys,
    )
    mapping = np.asarray(text_to_image, dtype=np.int64)
    if cache is not None:
        cache.save(encoder.name, dataset.name, "images", image_emb, {"keys": keys})
        cache.save(
            encoder.name, dataset.name, "captions", text_emb, {"text_to_image": mapping.tolist()}
        )
    return image_emb, text_emb, mapping, keys


def evaluate_retrieval(
    encoder: Encoder,
    dataset: RetrievalDataset,
    *,
    ks: Sequence[int] = (1, 5, 10),
    batch_size: int = 64,
    text_batch_size: int = 256,
    cache: EmbeddingCache | None = None,
    progress: bool = True,
    ties: str = "index",
) -> RetrievalResult:
    """Image->text and text->image Recall@K of ``encoder`` on ``dataset``.

    Every image and every caption is embedded once; the caption j of image i is relevant to image i
    only. Image->text counts a hit when any caption of the image ranks within K (CLIP protocol).

    Args:
        encoder: the model.
        dataset: images with captions (``karpathy_json``, ``retrieval_jsonl``, ``retrieval_shards``,
            ``retrieval_arrays``).
        ks: the K values.
        batch_size: images per ``encode_images`` call.
        text_batch_size: captions per ``encode_texts`` call.
        cache: optional ``EmbeddingCache``.
        progress: progress bars while embedding.
        ties: tie rule.

    Returns:
        ``RetrievalResult``.

    Raises:
        ValueError: empty dataset, an image without captions, NaN embeddings (named by item).
    """
    image_emb, text_emb, mapping, keys = embed_retrieval(
        as_encoder(encoder),
        dataset,
        batch_size=batch_size,
        text_batch_size=text_batch_size,
        cache=cache,
        progress=progress,
    )
    return retrieval_from_embeddings(
        image_emb, text_emb, mapping, ks=ks, dataset=dataset.name, keys=keys, ties=ties
    )
