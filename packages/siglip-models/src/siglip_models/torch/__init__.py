"""The PyTorch models (install ``siglip-models[torch]``)."""

from siglip_models.torch._model import SiglipModel
from siglip_models.torch._model import SiglipOutput

__all__ = [
    "SiglipModel",
    "SiglipOutput",
]
