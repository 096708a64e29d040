"""Input checks shared by the metrics, the protocols and the readers.

Every message names the argument (and, where known, the dataset and the item), what was expected and
what came, so a bad row in a 50,000-image evaluation is found without a debugger.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

TIE_RULES = ("index", "pessimistic", "optimistic")


def _where(dataset: str | None) -> str:
    return f" (dataset {dataset!r})" if dataset else ""


def _item_name(row: int, keys: Sequence[str] | None) -> str:
    if keys is not None and row < len(keys):
        return f"row {row} (item {keys[row]!r})"
    return f"row {row}"


def check_embeddings(
    name: str,
    array: Any,
    *,
    dataset: str | None = None,
    keys: Sequence[str] | None = None,
    dim: int | None = None,
) -> np.ndarray:
    """Return ``array`` as a float64 ``[rows, dim]`` matrix, or raise naming the bad row.

    Raises:
        TypeError: not an array of real numbers.
        ValueError: not rank 2, no rows, a dimension that differs from ``dim``, a NaN/inf value, or
            an all-zero row (which has no direction and cannot be normalised).
    """
    try:
        matrix = np.asarray(array)
    except Exception as error:  # pragma: no cover - numpy raises many types here
        raise TypeError(
            f"{name}{_where(dataset)}: expected an array, got {type(array).__name__}"
        ) from error
    if matrix.dtype == object or not (
        np.issubdtype(matrix.dtype, np.floating) or np.issubdtype(matrix.dtype, np.integer)
    ):
        raise TypeError(
            f"{name}{_where(dataset)}: expected a real-valued array, got dtype {matrix.dtype}"
        )
    if matrix.ndim != 2:
        raise ValueError(
            f"{name}{_where(dataset)}: expected shape [rows, dim], got shape {matrix.shape}"
        )
    if matrix.shape[0] == 0:
        raise ValueError(
            f"{name}{_where(dataset)}: expected at least one row, got shape {matrix.shape}"
        )
    if dim is not None and matrix.shape[1] != dim:
        raise ValueError(
            f"{name}{_where(dataset)}: expected dim {dim} to match the other embeddings, got shape {matrix.shape}"
        )
    matrix = matrix.astype(np.float64, copy=False)
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        bad = int((~finite).sum())
        raise ValueError(
            f"{name}{_where(dataset)}: expected finite values, got NaN/inf in {_item_name(row, keys)}"
            f" ({bad} bad row(s) of {matrix.shape[0]})"
        )
    zero = ~np.any(matrix != 0, axis=1)
    if zero.any():
        row = int(np.flatnonzero(zero)[0])
        raise ValueError(
            f"{name}{_where(dataset)}: expected non-zero rows (they are L2-normalised), got an all-zero"
            f" {_item_name(row, keys)}"
        )
    return matrix


def check_labels(
    name: str,
    labels: Any,
    *,
    rows: int,
    num_classes: int,
    dataset: str | None = None,
    keys: Sequence[str] | None = None,
    rows_name: str = "image_emb",
) -> np.ndarray:
    """Return ``labels`` as an int64 vector of length ``rows`` with values in ``[0, num_classes)``."""
    vector = np.asarray(labels)
    if vector.ndim != 1:
        raise ValueError(
            f"{name}{_where(dataset)}: expected shape [rows], got shape {vector.shape}"
        )
    if vector.shape[0] != rows:
        raise ValueError(
            f"{name}{_where(dataset)}: expected {rows} entries (one per row of {rows_name}), got {vector.shape[0]}"
        )
    whole_floats = np.issubdtype(vector.dtype, np.floating) and np.all(vector == np.round(vector))
    if vector.size and not np.issubdtype(vector.dtype, np.integer) and not whole_floats:
        raise TypeError(
            f"{name}{_where(dataset)}: expected integer indices, got dtype {vector.dtype}"
        )
    vector = vector.astype(np.int64)
    outside = (vector < 0) | (vector >= num_classes)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"{name}{_where(dataset)}: expected values in [0, {num_classes}), got {int(vector[row])} at"
            f" {_item_name(row, keys)}"
        )
    return vector


def check_ties(ties: str) -> str:
    if ties not in TIE_RULES:
        raise ValueError(f"ties: expected one of {TIE_RULES}, got {ties!r}")
    return ties


def check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    values = tuple(ks)
    if not values:
        raise ValueError("ks: expected at least one k, got an empty sequence")
    for k in values:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"ks: expected positive integers, got {values!r}")
    return tuple(int(k) for k in values)


def check_class_names(class_names: Sequence[str], *, dataset: str) -> list[str]:
    """Return ``class_names`` as a list of unique non-empty strings, or raise naming the dataset."""
    names = list(class_names)
    if not names:
        raise ValueError(
            f"class_names (dataset {dataset!r}): expected at least one class, got none"
        )
    for index, class_name in enumerate(names):
        if not isinstance(class_name, str) or not class_name.strip():
            raise ValueError(
                f"class_names (dataset {dataset!r}): expected non-empty strings, got {class_name!r} at index {index}"
            )
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise ValueError(
            f"class_names (dataset {dataset!r}): expected unique names, got {duplicate!r} twice"
        )
    return names


def check_captions(captions: Any, *, dataset: str, key: str) -> list[str]:
    """Return the captions of one image (a string or a list of strings) as a non-empty list."""
    if isinstance(captions, str):
        captions = [captions]
    texts = list(captions)
    if not texts:
        raise ValueError(
            f"dataset {dataset!r}: expected at least one caption per image, got none for item {key!r}"
        )
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(
                f"dataset {dataset!r}: expected non-empty caption strings, got {text!r} for item {key!r}"
            )
    return texts


def check_every_class_present(
    labels: np.ndarray, class_names: Sequence[str], *, dataset: str
) -> None:
    """Raise if a class has no image: its recall would be undefined and silently dropped."""
    counts = np.bincount(labels, minlength=len(class_names))
    if np.any(counts == 0):
        missing = [class_names[int(i)] for i in np.flatnonzero(counts == 0)]
        raise ValueError(
            f"dataset {dataset!r}: expected at least one image per class, got none for"
            f" {len(missing)} class(es): {', '.join(repr(m) for m in missing[:10])}"
            " (pass only the classes present, or add their images)"
        )


def stack_pixels(pixels: list[Any], keys: list[str], *, dataset: str) -> Any:
    """Stack ``[height, width, 3]`` images into a batch, naming the first image of another shape.

    NaFlex records (``siglip_data.naflex.NaflexPatches``, from a NaFlex ``preprocess``) are
    collated into one ``NaflexBatch`` instead; a batch never mixes the two.
    """
    from siglip_data.naflex import NaflexPatches
    from siglip_data.naflex import collate_naflex

    naflex = [isinstance(item, NaflexPatches) for item in pixels]
    if any(naflex):
        if not all(naflex):
            odd = naflex.index(False)
            raise ValueError(
                f"dataset {dataset!r}: expected NaFlex records for every image of a batch, got an"
                f" array for item {keys[odd]!r}"
            )
        try:
            return collate_naflex(pixels)
        except ValueError as error:
            raise ValueError(f"dataset {dataset!r}: {error}") from None
    shapes = {array.shape for array in pixels}
    if len(shapes) > 1:
        first = pixels[0].shape
        odd = next(i for i, array in enumerate(pixels) if array.shape != first)
        raise ValueError(
            f"dataset {dataset!r}: expected every image of a batch to have the same shape {first},"
            f" got {pixels[odd].shape} for item {keys[odd]!r}"
        )
    return np.stack(pixels)
