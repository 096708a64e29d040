"""JAX adapter for siglip-data (extra ``[jax]``): batches as JAX arrays, prefetched, resumable.

- ``JaxImageTextLoader(dataset, *, prefetch=2, sharding=None)``: iterate batches whose ``pixels``
  (NHWC float32 in [-1, 1]) and ``token_ids`` (int32) are JAX arrays, put on ``sharding`` if
  given; exact ``state_dict()`` / ``load_state_dict()`` despite the prefetch thread.
- ``to_jax(batch, *, sharding=None)``: convert one numpy batch.
"""

from siglip_data.jax._loader import JaxImageTextLoader
from siglip_data.jax._loader import to_jax

__all__ = [
    "JaxImageTextLoader",
    "to_jax",
]
