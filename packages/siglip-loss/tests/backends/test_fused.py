"""The backend's fused and chunked losses: equal to each other and to the dense reference for any
tiling and dtype, equal to the oracle with ragged tiles, gradients in each input's dtype."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from siglip_loss.numpy import sigmoid_loss_and_grads
from siglip_loss.testing import biases
from siglip_loss.testing import scales

# Gradients come back in the input dtype: implementations may differ by a rounding of that dtype.
GRAD_RTOL = {"float32": 2e-5, "bfloat16": 1.6e-2, "float16": 2e-3}


def loss_and_grads(
    backend: Any, implementation: str, block_size: int | None, *arguments: Any
) -> tuple[Any, tuple]:
    options: dict[str, Any] = {"implementation": implementation}
    if implementation != "reference":
        options["block_size"] = block_size

    def loss(image: Any, text: Any, scale: Any, bias: Any) -> Any:
        return backend.module.sigmoid_loss(image, text, scale=scale, bias=bias, **options)

    return backend.value_and_grad(loss, *arguments)


def test_fused_equals_chunked_equals_reference_for_any_block_size_and_dtype(backend: Any) -> None:
    @backend.examples(torch=25, jax=5)
    @given(
        batch=st.integers(1, 40),
        dim=st.integers(1, 12),
        block_size=st.integers(1, 48),
        dtype=st.sampled_from(sorted(GRAD_RTOL)),
        scale=scales(max_value=50.0),
        bias=biases(),
        seed=st.integers(0, 2**16),
    )
    def all_equal(
        batch: int, dim: int, block_size: int, dtype: str, scale: float, bias: float, seed: int
    ) -> None:
        rng = np.random.default_rng(seed)
        rows = rng.normal(size=(2, batch, dim))
        rows /= np.linalg.norm(rows, axis=-1, keepdims=True)
        arguments = (
            backend.array(rows[0], dtype),
            backend.array(rows[1], dtype),
            backend.array(np.float32(scale)),
            backend.array(np.float32(bias)),
        )
        reference = loss_and_grads(backend, "reference", None, *arguments)
        for implementation in ("fused", "chunked"):
            loss, grads = loss_and_grads(backend, implementation, block_size, *arguments)
            assert float(loss) == pytest.approx(float(reference[0]), rel=2e-5, abs=1e-6)
            names = ("image_emb", "text_emb", "scale", "bias")
            for name, got, want in zip(names, grads, reference[1], strict=True):
                assert backend.dtype_name(got) == backend.dtype_name(want), name
                rtol = GRAD_RTOL[dtype] if name in ("image_emb", "text_emb") else 2e-5
                want_values = backend.to_numpy(want)
                magnitude = float(np.max(np.abs(want_values))) + 1e-6
                np.testing.assert_allclose(
                    backend.to_numpy(got),
                    want_values,
                    rtol=rtol,
                    atol=rtol * magnitude,
                    err_msg=name,
                )

    all_equal()


@pytest.mark.parametrize(
    ("image_dtype", "text_dtype", "rtol"),
    [("float32", "float32", 1e-4), ("float64", "float32", 1e-5)],  # mixed: computed in float64
)
def test_fused_equals_numpy_oracle_with_ragged_tiles(
    backend: Any, image_dtype: str, text_dtype: str, rtol: float
) -> None:
    rng = np.random.default_rng(0)
    image, text = rng.normal(size=(37, 9)) / 3, rng.normal(size=(37, 9)) / 3
    oracle = sigmoid_loss_and_grads(image, text, scale=12.0, bias=-4.0)
    with backend.x64():
        loss, grads = loss_and_grads(
            backend,
            "fused",
            8,
            backend.array(image, image_dtype),
            backend.array(text, text_dtype),
            backend.array(np.float32(12.0)),
            backend.array(np.float32(-4.0)),
        )
    want = (oracle.grad_image_emb, oracle.grad_text_emb, oracle.grad_scale, oracle.grad_bias)
    np.testing.assert_allclose(float(loss), oracle.loss, rtol=1e-5)
    for got, expected in zip(grads, want, strict=True):
        np.testing.assert_allclose(backend.to_numpy(got), expected, rtol=rtol, atol=1e-6)


@pytest.mark.parametrize("implementation", ["fused", "chunked"])
def test_gradients_come_back_in_each_inputs_dtype(backend: Any, implementation: str) -> None:
    rng = np.random.default_rng(1)
    loss, grads = backend.value_and_grad(
        lambda i, t, s, b: backend.module.sigmoid_loss(
            i, t, scale=s, bias=b, implementation=implementation
        ),
        backend.array(rng.normal(size=(6, 3)), "float16"),
        backend.array(rng.normal(size=(6, 3)), "float16"),
        backend.array(4.0, "bfloat16"),
        backend.array(-1.0, "float32"),
    )
    assert backend.dtype_name(loss) == "float32"
    assert [backend.dtype_name(g) for g in grads] == ["float16", "float16", "bfloat16", "float32"]
