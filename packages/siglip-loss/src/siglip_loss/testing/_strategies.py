"""Hypothesis strategies for property-testing sigmoid-loss implementations.

Embeddings are generated from a drawn seed with numpy's generator rather than element by element:
drawing 2 x 64 x 64 floats through hypothesis is slow, and what matters for a loss is the shape,
the dtype and the structure of the pairs (independent, aligned, duplicated, zero rows), all of
which hypothesis draws and shrinks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import numpy as np
from hypothesis import strategies as st

DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64")
BACKENDS = ("numpy", "torch", "jax")
LAYOUTS = ("independent", "aligned", "duplicated", "zero_rows")
GROUP_PATTERNS = ("unique", "all_equal", "repeated", "captions_per_image", "without_positives")
"""The group patterns :func:`group_patterns` draws from (see there)."""


class EmbeddingPair(NamedTuple):
    """A batch of matching pairs: row ``i`` of ``text_emb`` is the caption of image ``i``."""

    image_emb: Any  # [batch, dim], array of the chosen backend and dtype
    text_emb: Any  # [batch, dim]


class GroupPattern(NamedTuple):
    """Group ids of a multi-positive batch: pair ``(i, j)`` is a positive iff the ids are equal."""

    image_groups: Any  # [batch] integer array of the chosen backend
    text_groups: Any  # [text_batch]


class GroupedBatch(NamedTuple):
    """Images, texts (possibly a different number) and their group ids."""

    image_emb: Any  # [batch, dim]
    text_emb: Any  # [text_batch, dim]
    image_groups: Any  # [batch] integers
    text_groups: Any  # [text_batch] integers


def _check_range(name: str, bounds: tuple[int, int], *, lowest: int) -> tuple[int, int]:
    if (
        not isinstance(bounds, tuple)
        or len(bounds) != 2
        or not all(isinstance(b, int) for b in bounds)
    ):
        raise TypeError(f"{name}: expected a (min, max) tuple of ints, got {bounds!r}")
    low, high = bounds
    if low < lowest or high < low:
        raise ValueError(f"{name}: expected {lowest} <= min <= max, got {bounds!r}")
    return low, high


def _as_range(name: str, value: int | tuple[int, int], *, lowest: int) -> tuple[int, int]:
    if isinstance(value, tuple):
        return _check_range(name, value, lowest=lowest)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int or a (min, max) tuple of ints, got {value!r}")
    return _check_range(name, (value, value), lowest=lowest)


def _check_patterns(patterns: Sequence[str]) -> tuple[str, ...]:
    if isinstance(patterns, str) or not patterns:
        raise TypeError(f"patterns: expected a non-empty sequence of names, got {patterns!r}")
    for pattern in patterns:
        if pattern not in GROUP_PATTERNS:
            raise ValueError(f"patterns: expected names among {GROUP_PATTERNS}, got {pattern!r}")
    return tuple(patterns)


def _check_dtypes(dtypes: Sequence[str], backend: str) -> tuple[str, ...]:
    if isinstance(dtypes, str) or not dtypes:
        raise TypeError(f"dtypes: expected a non-empty sequence of dtype names, got {dtypes!r}")
    for dtype in dtypes:
        if dtype not in DTYPE_NAMES:
            raise ValueError(f"dtypes: expected names among {DTYPE_NAMES}, got {dtype!r}")
    if backend == "numpy" and "bfloat16" in dtypes:
        raise ValueError("dtypes: numpy has no bfloat16; use backend='torch' or backend='jax'")
    if backend == "jax" and "float64" in dtypes:
        import jax

        if not jax.config.read("jax_enable_x64"):
            raise ValueError(
                "dtypes: float64 with backend='jax' needs jax_enable_x64; got it disabled"
            )
    return tuple(dtypes)


def to_backend(array: np.ndarray, *, backend: str, dtype: str) -> Any:
    """Convert a numpy array to an array of ``backend`` (numpy, torch or jax) in ``dtype``.

    Args:
        array: numpy array of any shape and float dtype.
        backend: ``"numpy"``, ``"torch"`` or ``"jax"``.
        dtype: one of ``float16``, ``bfloat16``, ``float32``, ``float64``.

    Returns:
        A ``numpy.ndarray``, ``torch.Tensor`` (CPU) or ``jax.Array``.

    Raises:
        ValueError: an unknown backend or dtype name.

    Examples:
        >>> import numpy as np
        >>> from siglip_loss.testing import to_backend
        >>> to_backend(np.ones(2), backend="numpy", dtype="float16")
        array([1., 1.], dtype=float16)
    """
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"dtype: expected one of {DTYPE_NAMES}, got {dtype!r}")
    if backend == "numpy":
        return np.asarray(array, dtype=dtype)
    if backend == "torch":
        import torch

        return torch.from_numpy(np.asarray(array, dtype=np.float64)).to(getattr(torch, dtype))
    if backend == "jax":
        import jax.numpy as jnp

        return jnp.asarray(np.asarray(array, dtype=np.float64), dtype=getattr(jnp, dtype))
    raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")


def ids_to_backend(ids: np.ndarray, *, backend: str) -> Any:
    """Integer group ids as an array of ``backend``: numpy and torch int64, JAX's default int.

    Args:
        ids: numpy integer array of any shape.
        backend: ``"numpy"``, ``"torch"`` or ``"jax"``.

    Returns:
        A ``numpy.ndarray``, ``torch.Tensor`` (CPU) or ``jax.Array``.

    Raises:
        ValueError: an unknown backend.

    Examples:
        >>> import numpy as np
        >>> from siglip_loss.testing import ids_to_backend
        >>> ids_to_backend(np.array([3, 3, 7]), backend="numpy")
        array([3, 3, 7])
    """
    values = np.asarray(ids, dtype=np.int64)
    if backend == "numpy":
        return values
    if backend == "torch":
        import torch

        return torch.from_numpy(values)
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        return jnp.asarray(values.astype(jax.dtypes.canonicalize_dtype(np.int64)))
    raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")


def _draw_ids(
    draw: st.DrawFn, pattern: str, image_batch: int, text_batch: int
) -> tuple[np.ndarray, np.ndarray]:
    """Group ids of one pattern, drawn element by element (hypothesis shrinks the structure)."""

    def ids(count: int, low: int, high: int, label: str) -> np.ndarray:
        values = draw(st.lists(st.integers(low, high), min_size=count, max_size=count), label=label)
        return np.array(values, dtype=np.int64)

    if pattern == "unique":
        # Distinct ids on each side from one pool: a permuted diagonal when the batches agree,
        # a partial matching otherwise.
        pool = max(image_batch, text_batch)
        image_order = draw(st.permutations(range(pool)), label="image_ids")[:image_batch]
        text_order = draw(st.permutations(range(pool)), label="text_ids")[:text_batch]
        return np.array(image_order, dtype=np.int64), np.array(text_order, dtype=np.int64)
    if pattern == "all_equal":
        return np.zeros(image_batch, np.int64), np.zeros(text_batch, np.int64)
    if pattern == "repeated":
        count = draw(st.integers(1, max(1, max(image_batch, text_batch) // 2)), label="groups")
        return (
            ids(image_batch, 0, count - 1, "image_ids"),
            ids(text_batch, 0, count - 1, "text_ids"),
        )
    if pattern == "captions_per_image":
        # Every image its own id; every caption belongs to one image (some have none).
        return np.arange(image_batch, dtype=np.int64), ids(
            text_batch, 0, image_batch - 1, "text_ids"
        )
    # without_positives: image row 0 and text column 0 match nothing; the rest repeat.
    count = draw(st.integers(1, max(1, max(image_batch, text_batch) // 2)), label="groups")
    image_ids = ids(image_batch, 0, count - 1, "image_ids")
    text_ids = ids(text_batch, 0, count - 1, "text_ids")
    image_ids[0], text_ids[0] = -1, -2
    return image_ids, text_ids


def group_patterns(
    *,
    image_batch: int | tuple[int, int],
    text_batch: int | tuple[int, int] | None = None,
    patterns: Sequence[str] = GROUP_PATTERNS,
    backend: str = "numpy",
) -> st.SearchStrategy[GroupPattern]:
    """Group ids for property-testing a multi-positive sigmoid loss (several captions per image).

    Draws a pattern and the ids that realise it:

    - ``unique``: distinct ids on each side, so every row and column has at most one positive
      (with equal batches, a permuted diagonal: the standard loss in another order);
    - ``all_equal``: one group, every pair a positive;
    - ``repeated``: ids from a small range on both sides (repeated captions, duplicate images),
      rows and columns with several positives or none;
    - ``captions_per_image``: each image its own id, each text the id of a random image (COCO's
      several captions per image; some images get no caption);
    - ``without_positives``: like ``repeated``, but image row 0 and text column 0 surely match
      nothing.

    Args:
        image_batch: the number of image ids, or an inclusive ``(min, max)`` range (``min >= 1``).
        text_batch: the number of text ids or a range; None draws the image batch (square).
        patterns: the pattern names to draw from (default: all five above).
        backend: ``"numpy"``, ``"torch"`` or ``"jax"``: the array type of the ids (int64; JAX's
            default integer).

    Returns:
        A strategy of :class:`GroupPattern` ``(image_groups, text_groups)``.

    Raises:
        TypeError: a batch is not an int or a ``(min, max)`` tuple of ints, or ``patterns`` is
            not a sequence of names (raised when called).
        ValueError: a batch below 1 or a range out of order, an unknown pattern or backend.

    Examples:
        >>> from hypothesis import given
        >>> from siglip_loss.testing import group_patterns
        >>> @given(group_patterns(image_batch=4, text_batch=(4, 20)))
        ... def test_one_id_per_row(groups):
        ...     assert len(groups.image_groups) == 4
        ...     assert 4 <= len(groups.text_groups) <= 20
        >>> test_one_id_per_row()
    """
    image_range = _as_range("image_batch", image_batch, lowest=1)
    text_range = None if text_batch is None else _as_range("text_batch", text_batch, lowest=1)
    names = _check_patterns(patterns)
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")

    @st.composite
    def draw_pattern(draw: st.DrawFn) -> GroupPattern:
        rows = draw(st.integers(*image_range), label="image_batch")
        columns = rows if text_range is None else draw(st.integers(*text_range), label="text_batch")
        pattern = draw(st.sampled_from(names), label="pattern")
        image_ids, text_ids = _draw_ids(draw, pattern, rows, columns)
        return GroupPattern(
            ids_to_backend(image_ids, backend=backend), ids_to_backend(text_ids, backend=backend)
        )

    return draw_pattern()


def grouped_batches(
    *,
    image_batch: int | tuple[int, int] = (1, 32),
    text_batch: int | tuple[int, int] | None = (1, 48),
    dim: int | tuple[int, int] = (1, 32),
    dtypes: Sequence[str] = ("float32",),
    backend: str = "numpy",
    normalized: bool = True,
    patterns: Sequence[str] = GROUP_PATTERNS,
) -> st.SearchStrategy[GroupedBatch]:
    """Images, texts and group ids for property-testing a multi-positive sigmoid loss.

    The ids come from :func:`group_patterns`; the embeddings are Gaussian rows, either
    independent or ``aligned`` (each text close to an image of its group: confident positives).

    Args:
        image_batch: images, an int or an inclusive ``(min, max)`` range.
        text_batch: texts, an int or a range; None: as many as images.
        dim: embedding dimension, an int or a range.
        dtypes: dtype names of the embeddings (``float16``, ``bfloat16``, ``float32``,
            ``float64``).
        backend: ``"numpy"``, ``"torch"`` or ``"jax"``.
        normalized: L2-normalise the rows.
        patterns: the group patterns to draw from (see :func:`group_patterns`; default all).

    Returns:
        A strategy of :class:`GroupedBatch` ``(image_emb, text_emb, image_groups, text_groups)``.

    Raises:
        TypeError: a size is not an int or ``(min, max)`` tuple, or ``dtypes``/``patterns`` is
            not a sequence of names (raised when called).
        ValueError: a range out of order or below 1, an unknown dtype, pattern or backend,
            bfloat16 with numpy, or float64 with JAX without ``jax_enable_x64``.

    Examples:
        >>> from hypothesis import given
        >>> from siglip_loss.testing import grouped_batches
        >>> @given(grouped_batches(image_batch=3, text_batch=(1, 9), dim=4))
        ... def test_shapes(batch):
        ...     assert batch.image_emb.shape == (3, 4)
        ...     assert batch.text_emb.shape[0] == len(batch.text_groups)
        >>> test_shapes()
    """
    dim_range = _as_range("dim", dim, lowest=1)
    dtype_names = _check_dtypes(dtypes, backend)
    ids = group_patterns(
        image_batch=image_batch, text_batch=text_batch, patterns=patterns, backend="numpy"
    )

    @st.composite
    def draw_batch(draw: st.DrawFn) -> GroupedBatch:
        image_ids, text_ids = draw(ids, label="groups")
        dimension = draw(st.integers(*dim_range), label="dim")
        dtype = draw(st.sampled_from(dtype_names), label="dtype")
        aligned = draw(st.booleans(), label="aligned")
        generator = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
        image = generator.standard_normal((len(image_ids), dimension))
        text = generator.standard_normal((len(text_ids), dimension))
        if aligned:
            for column, group in enumerate(text_ids):
                matches = np.flatnonzero(image_ids == group)
                if matches.size:
                    text[column] = image[generator.choice(matches)] + 0.1 * text[column]
        if normalized:
            image, text = _normalize_rows(image), _normalize_rows(text)
        return GroupedBatch(
            to_backend(image, backend=backend, dtype=dtype),
            to_backend(text, backend=backend, dtype=dtype),
            ids_to_backend(image_ids, backend=backend),
            ids_to_backend(text_ids, backend=backend),
        )

    return draw_batch()


def _normalize_rows(array: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.sum(array * array, axis=1, keepdims=True))
    normalized: np.ndarray = array / np.maximum(norms, 1e-8)
    return normalized


def embedding_pairs(
    *,
    batch: tuple[int, int] = (1, 64),
    dim: tuple[int, int] = (1, 64),
    dtypes: Sequence[str] = ("float32",),
    backend: str = "numpy",
    normalized: bool = True,
) -> st.SearchStrategy[EmbeddingPair]:
    """Pairs of ``[batch, dim]`` embedding matrices for property tests.

    Draws the batch size, the dimension, the dtype, a layout and a seed:

    - ``independent``: image and text rows are independent Gaussian vectors;
    - ``aligned``: each text row is its image row plus small noise (confident positives, the
      regime of a trained model);
    - ``duplicated``: some rows repeat earlier ones (ties between negatives and positives);
    - ``zero_rows``: some rows are all zero (what ``l2_normalize`` gives for a zero vector).

    Args:
        batch: inclusive ``(min, max)`` batch size, ``min >= 1``.
        dim: inclusive ``(min, max)`` embedding dimension, ``min >= 1``.
        dtypes: dtype names to draw from (``float16``, ``bfloat16``, ``float32``, ``float64``).
        backend: ``"numpy"``, ``"torch"`` or ``"jax"``: the array type generated.
        normalized: L2-normalise the rows (as SigLIP does before the loss).

    Returns:
        A strategy of :class:`EmbeddingPair` ``(image_emb, text_emb)`` in the chosen backend and
        dtype.

    Raises:
        TypeError: ``batch`` or ``dim`` is not a ``(min, max)`` tuple of ints, or ``dtypes`` is
            not a sequence of names (raised when called).
        ValueError: a range out of order or below 1, an unknown dtype name or backend, bfloat16
            with numpy, or float64 with JAX without ``jax_enable_x64`` (raised when called).

    Examples:
        >>> from hypothesis import given
        >>> from siglip_loss.testing import embedding_pairs
        >>> @given(embedding_pairs(batch=(2, 4), dim=(3, 3), dtypes=("float16", "float32")))
        ... def test_shapes(pair):
        ...     assert pair.image_emb.shape == pair.text_emb.shape
        ...     assert 2 <= pair.image_emb.shape[0] <= 4 and pair.image_emb.shape[1] == 3
        >>> test_shapes()
    """
    batch_range = _check_range("batch", batch, lowest=1)
    dim_range = _check_range("dim", dim, lowest=1)
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    dtype_names = _check_dtypes(dtypes, backend)

    @st.composite
    def draw_pair(draw: st.DrawFn) -> EmbeddingPair:
        batch_size = draw(st.integers(*batch_range), label="batch")
        dimension = draw(st.integers(*dim_range), label="dim")
        dtype = draw(st.sampled_from(dtype_names), label="dtype")
        layout = draw(st.sampled_from(LAYOUTS), label="layout")
        seed = draw(st.integers(0, 2**32 - 1), label="seed")
        generator = np.random.default_rng(seed)
        image = generator.standard_normal((batch_size, dimension))
        text = generator.standard_normal((batch_size, dimension))
        if layout == "aligned":
            text = image + 0.1 * text
        elif layout == "duplicated":
            source = generator.integers(0, batch_size, size=batch_size)
            image, text = image[source], text[source]
        elif layout == "zero_rows":
            image[generator.random(batch_size) < 0.3] = 0.0
            text[generator.random(batch_size) < 0.3] = 0.0
        if normalized:
            image, text = _normalize_rows(image), _normalize_rows(text)
        return EmbeddingPair(
            image_emb=to_backend(image, backend=backend, dtype=dtype),
            text_emb=to_backend(text, backend=backend, dtype=dtype),
        )

    return draw_pair()


def scales(*, min_value: float = 0.1, max_value: float = 200.0) -> st.SearchStrategy[float]:
    """Positive logit multipliers ``t = exp(log_scale)``, spread evenly in log space.

    The default range covers the init (10) and trained SigLIP values (about 112).

    Args:
        min_value: smallest scale, > 0.
        max_value: largest scale, >= ``min_value``.

    Returns:
        A strategy of Python floats in ``[min_value, max_value]``.

    Raises:
        ValueError: a bound is not finite and positive, or ``max_value < min_value``.

    Examples:
        >>> from hypothesis import given
        >>> from siglip_loss.testing import scales
        >>> @given(scales(min_value=0.5, max_value=2.0))
        ... def test_range(scale):
        ...     assert 0.5 <= scale <= 2.0
        >>> test_range()
    """
    for name, value in (("min_value", min_value), ("max_value", max_value)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name}: expected a finite positive scale, got {value!r}")
    if max_value < min_value:
        raise ValueError(f"max_value: expected >= min_value {min_value}, got {max_value}")
    low, high = math.log(min_value), math.log(max_value)
    return st.floats(low, high).map(
        lambda log_scale: min(max(math.exp(log_scale), min_value), max_value)
    )


def biases(*, min_value: float = -20.0, max_value: float = 20.0) -> st.SearchStrategy[float]:
    """Logit biases ``b`` in ``[min_value, max_value]`` (the init is -10).

    Args:
        min_value: smallest bias (finite).
        max_value: largest bias (finite, >= ``min_value``).

    Returns:
        A strategy of Python floats.

    Raises:
        ValueError: a bound is not finite or ``max_value < min_value``.

    Examples:
        >>> from hypothesis import given
        >>> from siglip_loss.testing import biases
        >>> @given(biases(min_value=-1.0, max_value=1.0))
        ... def test_range(bias):
        ...     assert -1.0 <= bias <= 1.0
        >>> test_range()
    """
    for name, value in (("min_value", min_value), ("max_value", max_value)):
        if not math.isfinite(value):
            raise ValueError(f"{name}: expected a finite bias, got {value!r}")
    if max_value < min_value:
        raise ValueError(f"max_value: expected >= min_value {min_value}, got {max_value}")
    return st.floats(min_value, max_value)
