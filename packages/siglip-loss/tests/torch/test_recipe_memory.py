"""chunked_token_cross_entropy never creates a [batch, length, vocab] tensor, in forward or in
backward: every tensor an operator returns is observed (TorchDispatchMode) and none is that big."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from siglip_loss.torch import chunked_token_cross_entropy
from siglip_loss.torch import token_cross_entropy


class LargestTensor(TorchDispatchMode):
    """The most elements of any tensor an operator returned under the mode."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        result = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(result):
            if isinstance(leaf, torch.Tensor):
                self.largest = max(self.largest, leaf.numel())
        return result


def test_chunked_token_cross_entropy_never_holds_batch_length_vocab_logits() -> None:
    batch, length, dim, vocab, chunk_size = 2, 8, 4, 1000, 128
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(batch, length, dim, generator=generator, dtype=torch.bfloat16)
    head = torch.nn.Linear(dim, vocab, dtype=torch.bfloat16)
    hidden.requires_grad_()
    targets = torch.randint(0, vocab, (batch, length), generator=generator)
    weights = torch.ones(batch, length)
    observed = LargestTensor()
    with observed:
        loss = chunked_token_cross_entropy(
            hidden,
            head.weight,
            targets,
            weights=weights,
            vocab_bias=head.bias,
            chunk_size=chunk_size,
        )
        loss.backward()
    # The weight gradient itself is [vocab, dim]; no logits-sized tensor besides.
    assert observed.largest <= max(batch * length * chunk_size, vocab * dim)
    assert batch * length * vocab > 2 * observed.largest
    # The dense form does build it (so the probe can see one).
    dense = LargestTensor()
    with dense:
        token_cross_entropy(head(hidden), targets, weights=weights).backward()
    assert dense.largest >= batch * length * vocab
