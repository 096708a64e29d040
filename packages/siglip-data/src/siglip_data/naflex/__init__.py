"""SigLIP 2 NaFlex preprocessing: native aspect ratio, a patch budget, padded patch sequences.

- ``naflex_target_size(height, width, *, patch_size, max_num_patches)``: the resize target
  (transformers' binary search).
- ``naflex_preprocess(image, *, patch_size=16, max_num_patches=256, order="hf")`` ->
  ``NaflexPatches`` (``patches`` float32 ``[max_num_patches, 3 * p * p]``, ``patch_mask``,
  ``spatial_shape``); ``order="big_vision"`` scales before resizing, as big_vision does.
- ``collate_naflex(records)`` -> ``NaflexBatch``; ``NaflexOptions`` makes
  ``ImageTextDataset`` yield NaFlex batches with a per-batch sequence length.
- ``patchify`` / ``unpatchify``: the patch layout, one einops pattern (``PATCH_PATTERN``) for
  numpy, torch and JAX arrays.

See docs/naflex.md.
"""

from siglip_data._naflex import PATCH_PATTERN
from siglip_data._naflex import TRAINING_SEQUENCE_LENGTHS
from siglip_data._naflex import NaflexBatch
from siglip_data._naflex import NaflexOptions
from siglip_data._naflex import NaflexPatches
from siglip_data._naflex import collate_naflex
from siglip_data._naflex import naflex_preprocess
from siglip_data._naflex import naflex_target_size
from siglip_data._naflex import patchify
from siglip_data._naflex import unpatchify

__all__ = [
    "PATCH_PATTERN",
    "TRAINING_SEQUENCE_LENGTHS",
    "NaflexBatch",
    "NaflexOptions",
    "NaflexPatches",
    "collate_naflex",
    "naflex_preprocess",
    "naflex_target_size",
    "patchify",
    "unpatchify",
]
