"""Seeded, resumable augmentation of in-memory uint8 batches (numpy only).

``augment_batch(pixels, config=BatchAugmentation(), seed=..., step=...)``: random resized crop,
flips where the caller allows them, colour jitter, grayscale and background variation; batch
``step`` is a pure function of ``(seed, step)``, so a loader resumes it by storing its step.
Evaluation does not augment (``BatchAugmentation.off()`` only composites onto white).
"""

from siglip_data._batch_augment import BatchAugmentation
from siglip_data._batch_augment import augment_batch

__all__ = [
    "BatchAugmentation",
    "augment_batch",
]
