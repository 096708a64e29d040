"""The backend's SigmoidLoss module forwards its extra options to sigmoid_loss."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest


def test_loss_options_are_forwarded_to_sigmoid_loss(backend: Any) -> None:
    module = backend.sigmoid_loss_module(unknown_option=3)
    rows = backend.array(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match="unknown_option"):
        module(rows, rows)


def test_block_size_and_implementation_options_reach_the_loss(backend: Any) -> None:
    rows = backend.array(np.eye(5, 3, dtype=np.float32))
    default = backend.to_numpy(backend.sigmoid_loss_module()(rows, rows))
    for implementation in ("reference", "chunked", "fused"):
        module = backend.sigmoid_loss_module(implementation=implementation, block_size=2)
        assert backend.to_numpy(module(rows, rows)) == pytest.approx(default, rel=1e-6)
    with pytest.raises(ValueError, match="block_size"):
        backend.sigmoid_loss_module(block_size=0)(rows, rows)
