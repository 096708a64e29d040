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


class EmbeddingPair(NamedTuple):
    """A batch of matching pairs: row ``i`` of ``text_emb`` is the caption of image ``i``."""

    image_emb: Any  # [batch, dim], array of the chosen backend and dtype
    text_emb: Any  # [batch, dim]


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
