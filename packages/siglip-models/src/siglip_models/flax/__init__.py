"""The Flax NNX models (install ``siglip-models[flax]``)."""

from siglip_models.flax._model import SiglipModel
from siglip_models.flax._model import SiglipOutput

__all__ = [
    "SiglipModel",
    "SiglipOutput",
]
