"""The numpy oracle against closed forms and finite differences."""

from __future__ import annotations

import numpy as np

from siglip_loss.numpy import sigmoid_loss
from siglip_loss.numpy import sigmoid_loss_and_grads


def softplus(x: float) -> float:
    return float(np.logaddexp(0.0, x))


def test_zero_similarity_matches_closed_form() -> None:
    for batch in (1, 2, 17):
        zeros = np.zeros((batch, 4))
        result = sigmoid_loss_and_grads(zeros, zeros, scale=10.0, bias=-10.0)
        expected = softplus(10.0) + (batch - 1) * softplus(-10.0)
        assert np.isclose(result.loss, expected, rtol=1e-12)
        assert np.isclose(result.grad_bias, batch / (1 + np.exp(10.0)) - 1, rtol=1e-12)


def test_gradients_equal_central_finite_differences() -> None:
    rng = np.random.default_rng(0)
    image, text = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    scale, bias, step = 2.5, -1.5, 1e-6
    result = sigmoid_loss_and_grads(image, text, scale=scale, bias=bias)

    def loss_at(image: np.ndarray, text: np.ndarray, scale: float, bias: float) -> float:
        return sigmoid_loss(image, text, scale=scale, bias=bias)

    for index in np.ndindex(image.shape):
        plus, minus = image.copy(), image.copy()
        plus[index] += step
        minus[index] -= step
        numeric = (loss_at(plus, text, scale, bias) - loss_at(minus, text, scale, bias)) / (
            2 * step
        )
        assert np.isclose(result.grad_image_emb[index], numeric, rtol=1e-6, atol=1e-8)
    numeric_scale = (
        loss_at(image, text, scale + step, bias) - loss_at(image, text, scale - step, bias)
    ) / (2 * step)
    assert np.isclose(result.grad_scale, numeric_scale, rtol=1e-6, atol=1e-8)
