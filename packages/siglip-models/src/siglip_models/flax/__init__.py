"""The Flax NNX models (install ``siglip-models[flax]``) and their jitted towers."""

from siglip_models.flax._jit import JittedTowers
from siglip_models.flax._jit import jit_towers
from siglip_models.flax._model import SiglipModel
from siglip_models.flax._model import SiglipOutput

__all__ = [
    "JittedTowers",
    "SiglipModel",
    "SiglipOutput",
    "jit_towers",
]
