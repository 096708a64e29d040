"""The encoder protocol, batched embedding with progress bars, and the on-disk embedding cache.

An encoder is two callables with numpy in and out, so any model fits:

- ``encode_images(pixels: [batch, height, width, 3] float32 in [-1, 1]) -> [batch, dim]``
- ``encode_texts(texts: list[str]) -> [batch, dim]``

The outputs need not be normalised; every protocol L2-normalises them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

from siglip_eval._atomic import atomic_write_bytes

ImageEncoderFn = Callable[[np.ndarray], Any]
TextEncoderFn = Callable[[list[str]], Any]


class ImageTextEncoder(Protocol):
    """Anything with ``encode_images`` and ``encode_texts`` (numpy in, numpy out, batched)."""

    def encode_images(self, pixels: np.ndarray) -> Any: ...

    def encode_texts(self, texts: list[str]) -> Any: ...


@dataclasses.dataclass(frozen=True)
class Encoder:
    """Two callables that embed images and texts; ``name`` keys the embedding cache.

    Args:
        encode_images: ``pixels [batch, height, width, 3]`` float32 in [-1, 1] -> ``[batch, dim]``.
        encode_texts: ``list[str]`` of length batch -> ``[batch, dim]``.
        name: identifies the model (checkpoint path, hub id); use a new name for new weights.

    Examples:
        >>> import numpy as np
        >>> from siglip_eval import Encoder
        >>> encoder = Encoder(
        ...     encode_images=lambda pixels: pixels.reshape(len(pixels), -1)[:, :4],
        ...     encode_texts=lambda texts: np.ones((len(texts), 4)),
        ...     name="toy",
        ... )
        >>> encoder.encode_texts(["a", "b"]).shape
        (2, 4)
    """

    encode_images: ImageEncoderFn
    encode_texts: TextEncoderFn
    name: str = "model"


def _check_batch_output(
    output: Any,
    *,
    expected_rows: int,
    dim: int | None,
    what: str,
    dataset: str,
    keys: Sequence[str],
) -> np.ndarray:
    array = np.asarray(output)
    if array.ndim != 2 or array.shape[0] != expected_rows:
        raise ValueError(
            f"{what} (dataset {dataset!r}): expected an output of shape [{expected_rows}, dim] for a"
            f" batch starting at item {keys[0]!r}, got shape {array.shape}"
        )
    if dim is not None and array.shape[1] != dim:
        raise ValueError(
            f"{what} (dataset {dataset!r}): expected dim {dim} like the earlier batches, got"
            f" {array.shape[1]} for the batch starting at item {keys[0]!r}"
        )
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ValueError(
            f"{what} (dataset {dataset!r}): expected finite embeddings, got NaN/inf for item"
            f" {keys[row]!r}"
        )
    zero = ~np.any(array != 0, axis=1)
    if zero.any():
        row = int(np.flatnonzero(zero)[0])
        raise ValueError(
            f"{what} (dataset {dataset!r}): expected non-zero embeddings, got an all-zero one for"
            f" item {keys[row]!r}"
        )
    return array.astype(np.float32, copy=False)


def embed_image_batches(
    encode_images: ImageEncoderFn,
    batches: Iterable[tuple[np.ndarray, Sequence[str]]],
    *,
    dataset: str,
    total: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Run ``encode_images`` over ``(pixels, keys)`` batches and stack the outputs.

    Args:
        encode_images: ``[batch, height, width, 3] -> [batch, dim]``.
        batches: iterable of ``(pixels [batch, height, width, 3], keys [batch])``.
        dataset: name used in the progress bar and in errors.
        total: number of images, for the progress bar.
        progress: show a tqdm progress bar.

    Returns:
        ``[images, dim]`` float32 embeddings, in batch order.

    Raises:
        ValueError: no images at all; an output with the wrong shape, NaN/inf or an all-zero row
            (the message names the item).
    """
    outputs: list[np.ndarray] = []
    dim: int | None = None
    with tqdm(total=total, desc=f"images {dataset}", unit="img", disable=not progress) as bar:
        for pixels, keys in batches:
            array = _check_batch_output(
                encode_images(pixels),
                expected_rows=len(keys),
                dim=dim,
                what="encode_images",
                dataset=dataset,
                keys=keys,
            )
            dim = array.shape[1]
            outputs.append(array)
            bar.update(len(keys))
    if not outputs:
        raise ValueError(f"dataset {dataset!r}: expected at least one image, got an empty dataset")
    return np.concatenate(outputs, axis=0)


def embed_texts(
    encode_texts: TextEncoderFn,
    texts: Sequence[str],
    *,
    dataset: str,
    batch_size: int = 256,
    progress: bool = True,
    keys: Sequence[str] | None = None,
) -> np.ndarray:
    """Run ``encode_texts`` over ``texts`` in batches of ``batch_size``.

    Args:
        encode_texts: ``list[str] -> [batch, dim]``.
        texts: the strings, in order.
        dataset: name used in the progress bar and in errors.
        batch_size: strings per call.
        progress: show a tqdm progress bar.
        keys: optional names of the strings for error messages (defaults to the strings).

    Returns:
        ``[texts, dim]`` float32 embeddings.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size}")
    if len(texts) == 0:
        raise ValueError(f"dataset {dataset!r}: expected at least one text, got none")
    names = list(keys) if keys is not None else [repr(text)[:60] for text in texts]
    outputs: list[np.ndarray] = []
    dim: int | None = None
    with tqdm(total=len(texts), desc=f"texts {dataset}", unit="txt", disable=not progress) as bar:
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            array = _check_batch_output(
                encode_texts(chunk),
                expected_rows=len(chunk),
                dim=dim,
                what="encode_texts",
                dataset=dataset,
                keys=names[start : start + batch_size],
            )
            dim = array.shape[1]
            outputs.append(array)
            bar.update(len(chunk))
    return np.concatenate(outputs, axis=0)


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (used in cache keys).

    Examples:
        >>> from siglip_eval._encoders import fingerprint
        >>> fingerprint(["a photo of a {c}."], ["cat", "dog"]) == fingerprint(
        ...     ["a photo of a {c}."], ["cat", "dog"]
        ... )
        True
    """
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "x"


class EmbeddingCache:
    """``.npy`` embeddings on disk, keyed by model name + dataset name + what was embedded.

    Each entry is ``<model>__<dataset>__<kind>__<hash>.npy`` plus a ``.json`` sidecar holding the
    item keys (and labels) it was computed for; both are written atomically and durably (temporary
    file in the same folder, ``fsync``, rename, ``fsync`` of the folder), array first, so an
    interrupted run or a power loss never leaves a truncated entry. An entry whose sidecar is
    missing or does not match its array is a miss and is recomputed.

    Args:
        directory: folder for the cache (created on first write).

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> from siglip_eval import EmbeddingCache
        >>> cache = EmbeddingCache(tempfile.mkdtemp())
        >>> cache.save("m", "d", "images", np.ones((2, 3), np.float32), {"keys": ["a", "b"]})
        >>> cache.load("m", "d", "images")[0].shape
        (2, 3)
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path(self, model: str, dataset: str, kind: str) -> Path:
        """Where the entry for ``(model, dataset, kind)`` lives (it may not exist yet).

        Args:
            model: the encoder's name.
            dataset: the dataset's name.
            kind: what was embedded (``"images"``, ``"captions"``, a class-embedding key).

        Returns:
            The ``.npy`` path; its JSON sidecar has the same stem.
        """
        digest = fingerprint(model, dataset, kind)
        return self.directory / f"{_safe(model)}__{_safe(dataset)}__{_safe(kind)}__{digest}.npy"

    def load(self, model: str, dataset: str, kind: str) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The cached ``(embeddings, metadata)`` of ``(model, dataset, kind)``.

        Args:
            model: the encoder's name.
            dataset: the dataset's name.
            kind: what was embedded.

        Returns:
            ``(embeddings [rows, dim], metadata)``, or None on a miss (no entry, no sidecar, or a
            sidecar whose row count does not match the array).
        """
        array_path = self.path(model, dataset, kind)
        meta_path = array_path.with_suffix(".json")
        if not (array_path.exists() and meta_path.exists()):
            return None
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
        embeddings = np.load(array_path, allow_pickle=False)
        if embeddings.shape[0] != metadata.get("rows"):
            return None
        return embeddings, metadata

    def save(
        self, model: str, dataset: str, kind: str, embeddings: np.ndarray, metadata: dict[str, Any]
    ) -> None:
        """Store ``embeddings`` and a JSON sidecar atomically (array first, sidecar last).

        Args:
            model: the encoder's name.
            dataset: the dataset's name.
            kind: what was embedded.
            embeddings: ``[rows, dim]`` array.
            metadata: JSON-serialisable facts about the rows (item keys, labels); ``rows``,
                ``model``, ``dataset`` and ``kind`` are added.
        """
        array_path = self.path(model, dataset, kind)
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(embeddings), allow_pickle=False)
        record = dict(
            metadata,
            rows=int(np.asarray(embeddings).shape[0]),
            model=model,
            dataset=dataset,
            kind=kind,
        )
        # Array first, sidecar last: a sidecar exists only for a complete array.
        atomic_write_bytes(array_path, buffer.getvalue())
        atomic_write_bytes(
            array_path.with_suffix(".json"), json.dumps(record, ensure_ascii=False).encode("utf-8")
        )


def as_encoder(encoder: Any) -> Encoder:
    """``encoder`` itself, or an ``Encoder`` over any object with the two methods."""
    if isinstance(encoder, Encoder):
        return encoder
    if not (
        callable(getattr(encoder, "encode_images", None))
        and callable(getattr(encoder, "encode_texts", None))
    ):
        raise TypeError(
            f"encoder: expected an Encoder or an object with encode_images and encode_texts, got {type(encoder).__name__}"
        )
    return Encoder(
        encode_images=encoder.encode_images,
        encode_texts=encoder.encode_texts,
        name=str(getattr(encoder, "name", type(encoder).__name__)),
    )
