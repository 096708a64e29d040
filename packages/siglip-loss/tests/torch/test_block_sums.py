"""torch-only property of the block primitive: it computes its gradients without autograd."""

from __future__ import annotations

import torch

from siglip_loss.torch._fused import sigmoid_block_sums


def test_block_sums_builds_no_autograd_graph() -> None:
    image = torch.randn(4, 3, requires_grad=True)
    scale = torch.tensor(2.0, requires_grad=True)
    sums = sigmoid_block_sums(
        image,
        image.detach(),
        scale=scale,
        bias=0.0,
        positive_offset=0,
        block_size=2,
        compute_grads=True,
    )
    assert all(value is not None and not value.requires_grad for value in sums)
