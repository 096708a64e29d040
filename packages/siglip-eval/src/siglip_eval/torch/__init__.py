"""PyTorch adapters: turn a model into an ``Encoder`` (install ``siglip-eval[torch]``)."""

from siglip_eval.torch._adapter import from_pretrained
from siglip_eval.torch._adapter import torch_encoder
from siglip_eval.torch._adapter import transformers_encoder
from siglip_eval.torch._grounding import generate_boxes

__all__ = [
    "from_pretrained",
    "generate_boxes",
    "torch_encoder",
    "transformers_encoder",
]
