"""PyTorch adapter for siglip-data (extra ``[torch]``): NCHW tensors, multi-worker, resumable.

- ``ImageTextLoader(dataset, *, num_workers=0, pin_memory=False, ...)``: iterate batches of
  torch tensors (``pixels`` float32 ``[B, 3, H, W]`` in [-1, 1], ``token_ids`` int32 ``[B, L]``,
  plus ``captions``, ``keys``, ``metadata`` lists); exact ``state_dict()`` / ``load_state_dict()``;
  ``skipped`` counters summed over workers.
- ``TorchImageTextDataset(dataset)``: the ``IterableDataset`` (use ``DataLoader(batch_size=None)``).
- ``to_torch(batch)``: convert one numpy batch.
"""

from siglip_data.torch._loader import ImageTextLoader
from siglip_data.torch._loader import TorchImageTextDataset
from siglip_data.torch._loader import to_torch

__all__ = [
    "ImageTextLoader",
    "TorchImageTextDataset",
    "to_torch",
]
