"""The backend's softmax_loss and l2_normalize against the numpy oracle (values and gradients)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given

import siglip_loss.numpy as oracle
from siglip_loss.testing import EmbeddingPair
from siglip_loss.testing import embedding_pairs
from siglip_loss.testing import scales

# How far a normalised row may be from the oracle's in each dtype (a few units of its rounding).
RESOLUTION = {"float16": 1e-3, "bfloat16": 8e-3, "float32": 1e-6}


def test_softmax_loss_and_its_jit_match_the_oracle(backend: Any) -> None:
    with backend.x64():

        @backend.examples(jax=6)
        @given(
            pair=embedding_pairs(dtypes=("bfloat16", "float32", "float64"), backend=backend.name),
            scale=scales(),
        )
        def matches_oracle(pair: EmbeddingPair, scale: float) -> None:
            image, text = pair
            expected = oracle.softmax_loss(
                backend.to_numpy(image), backend.to_numpy(text), scale=scale
            )
            float64 = backend.dtype_name(image) == "float64"
            tolerance = 1e-12 if float64 else 1e-5 * (1 + scale)
            got = backend.module.softmax_loss(image, text, scale=scale)
            assert backend.dtype_name(got) == ("float64" if float64 else "float32")
            assert float(got) == pytest.approx(expected, rel=tolerance, abs=tolerance)
            jitted = backend.jit(lambda i, t: backend.module.softmax_loss(i, t, scale=scale))
            assert float(jitted(image, text)) == pytest.approx(
                expected, rel=tolerance, abs=tolerance
            )

        matches_oracle()


def test_softmax_loss_gradients_match_the_oracle(backend: Any) -> None:
    with backend.x64():

        @backend.examples(jax=4)
        @given(
            pair=embedding_pairs(
                batch=(1, 16), dim=(1, 8), dtypes=("float64",), backend=backend.name
            ),
            scale=scales(max_value=50.0),
        )
        def matches_oracle(pair: EmbeddingPair, scale: float) -> None:
            image, text = pair
            want = oracle.softmax_loss_and_grads(
                backend.to_numpy(image), backend.to_numpy(text), scale=scale
            )
            loss, grads = backend.value_and_grad(
                lambda i, t, s: backend.module.softmax_loss(i, t, scale=s),
                image,
                text,
                backend.array(np.float64(scale)),
            )
            assert float(loss) == pytest.approx(want.loss, rel=1e-12, abs=1e-12)
            for got, expected in zip(
                grads, (want.grad_image_emb, want.grad_text_emb, want.grad_scale), strict=True
            ):
                np.testing.assert_allclose(backend.to_numpy(got), expected, rtol=1e-10, atol=1e-12)

        matches_oracle()


def test_l2_normalize_matches_oracle_in_the_input_dtype(backend: Any) -> None:
    @backend.examples(jax=8)
    @given(
        pair=embedding_pairs(
            dtypes=("float16", "bfloat16", "float32"), backend=backend.name, normalized=False
        )
    )
    def matches_oracle(pair: EmbeddingPair) -> None:
        image, _ = pair
        got = backend.module.l2_normalize(image)
        dtype = backend.dtype_name(image)
        assert backend.dtype_name(got) == dtype
        expected = oracle.l2_normalize(backend.to_numpy(image))
        resolution = RESOLUTION[dtype]
        np.testing.assert_allclose(
            backend.to_numpy(got), expected, rtol=resolution, atol=resolution
        )

    matches_oracle()


def test_l2_normalize_of_a_zero_vector_is_zero_with_finite_gradients(backend: Any) -> None:
    rows = backend.array(np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]], np.float32))
    normalized = backend.module.l2_normalize(rows)
    expected = oracle.l2_normalize(np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]]))
    np.testing.assert_allclose(backend.to_numpy(normalized), expected, rtol=1e-6)
    assert not backend.to_numpy(normalized)[0].any()
    _, (gradient,) = backend.value_and_grad(lambda x: backend.module.l2_normalize(x).sum(), rows)
    assert np.all(np.isfinite(backend.to_numpy(gradient)))
    bfloat16_rows = backend.array(np.array([[3.0, 4.0]]), "bfloat16")
    assert backend.dtype_name(backend.module.l2_normalize(bfloat16_rows)) == "bfloat16"
