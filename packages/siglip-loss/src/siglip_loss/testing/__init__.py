"""Property-test your own sigmoid loss against ours (install ``siglip-loss[testing]``).

Hypothesis strategies for embedding pairs, scales and biases, group ids and grouped batches (the
multi-positive loss), and ``assert_matches_reference``, which checks a loss (and, for torch/JAX,
its four gradients) against the float64 numpy oracle with dtype-aware tolerances. See
``docs/testing.md``.
"""

from siglip_loss.testing._reference_check import assert_matches_reference
from siglip_loss.testing._strategies import EmbeddingPair
from siglip_loss.testing._strategies import GroupedBatch
from siglip_loss.testing._strategies import GroupPattern
from siglip_loss.testing._strategies import biases
from siglip_loss.testing._strategies import embedding_pairs
from siglip_loss.testing._strategies import group_patterns
from siglip_loss.testing._strategies import grouped_batches
from siglip_loss.testing._strategies import ids_to_backend
from siglip_loss.testing._strategies import scales
from siglip_loss.testing._strategies import to_backend

__all__ = [
    "EmbeddingPair",
    "GroupPattern",
    "GroupedBatch",
    "assert_matches_reference",
    "biases",
    "embedding_pairs",
    "group_patterns",
    "grouped_batches",
    "ids_to_backend",
    "scales",
    "to_backend",
]
