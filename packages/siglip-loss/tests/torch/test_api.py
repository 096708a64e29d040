"""torch-only input checks: numpy arrays get the message naming the argument, on every path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from siglip_loss._validation import AUTO_DENSE_MAX_BATCH
from siglip_loss._validation import IMPLEMENTATIONS
from siglip_loss.torch import sigmoid_loss
from siglip_loss.torch import softmax_loss


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("batch", [4, AUTO_DENSE_MAX_BATCH + 1])
def test_numpy_arrays_are_rejected_with_a_message_naming_the_argument_at_any_batch(
    implementation: str, batch: int
) -> None:
    # Above AUTO_DENSE_MAX_BATCH "auto" picks the fused path: it must be checked before that.
    rows = np.zeros((batch, 2), dtype=np.float32)
    with pytest.raises(TypeError, match=r"image_emb: expected a torch.Tensor .* got ndarray"):
        sigmoid_loss(rows, rows, scale=1.0, bias=0.0, implementation=implementation)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"text_emb: expected a torch.Tensor .* got ndarray"):
        sigmoid_loss(torch.from_numpy(rows), rows, scale=1.0, bias=0.0)  # type: ignore[arg-type]


def test_softmax_loss_rejects_numpy_arrays_naming_the_argument() -> None:
    rows = np.zeros((4, 3), dtype=np.float32)
    with pytest.raises(TypeError, match=r"image_emb: expected a torch.Tensor .* got ndarray"):
        softmax_loss(rows, torch.from_numpy(rows), scale=1.0)  # type: ignore[arg-type]
