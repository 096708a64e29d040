"""The backend's SigmoidLoss module forwards its extra options to sigmoid_loss."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest


def test_an_option_sigmoid_loss_does_not_take_is_refused_when_the_module_is_built(
    backend: Any,
) -> None:
    # A misspelt option used to pass until the first forward, far from where it was written.
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['unknown_option'\]"):
        backend.sigmoid_loss_module(unknown_option=3)


def test_block_size_and_implementation_options_reach_the_loss(backend: Any) -> None:
    rows = backend.array(np.eye(5, 3, dtype=np.float32))
    default = backend.to_numpy(backend.sigmoid_loss_module()(rows, rows))
    for implementation in ("reference", "chunked", "fused"):
        module = backend.sigmoid_loss_module(implementation=implementation, block_size=2)
        assert backend.to_numpy(module(rows, rows)) == pytest.approx(default, rel=1e-6)
    with pytest.raises(ValueError, match="block_size"):
        backend.sigmoid_loss_module(block_size=0)(rows, rows)
