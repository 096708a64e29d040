"""assert_matches_reference on the backend's own loss: it passes, and a loss that stops the bias
gradient is caught with a message naming the bias."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from siglip_loss.numpy import l2_normalize
from siglip_loss.testing import assert_matches_reference


def test_checker_accepts_our_loss_and_catches_one_that_stops_the_bias_gradient(
    backend: Any,
) -> None:
    sigmoid_loss = backend.module.sigmoid_loss

    def frozen_bias(image_emb: Any, text_emb: Any, *, scale: Any, bias: Any) -> Any:
        return sigmoid_loss(image_emb, text_emb, scale=scale, bias=backend.stop_gradient(bias))

    image = backend.array(l2_normalize(np.random.default_rng(0).normal(size=(5, 4))), "float32")
    assert_matches_reference(sigmoid_loss, image, image, scale=10.0, bias=-3.0)
    # torch: autograd finds no path to bias; JAX: the gradient is an exact zero.
    message = r"gradient of bias: (got 0.0, float64 oracle|loss_fn does not differentiate)"
    with pytest.raises(AssertionError, match=message):
        assert_matches_reference(frozen_bias, image, image, scale=10.0, bias=-3.0)
