"""Flax NNX adapters: turn a model into an ``Encoder`` (install ``siglip-eval[flax]``)."""

from siglip_eval.flax._adapter import flax_encoder
from siglip_eval.flax._adapter import from_pretrained

__all__ = [
    "flax_encoder",
    "from_pretrained",
]
