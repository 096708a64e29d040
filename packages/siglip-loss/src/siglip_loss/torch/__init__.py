"""The PyTorch adapter (install ``siglip-loss[torch]``)."""

from siglip_loss.torch._api import sigmoid_loss
from siglip_loss.torch._distributed import distributed_sigmoid_loss
from siglip_loss.torch._distributed import distributed_softmax_loss
from siglip_loss.torch._module import SigmoidLoss
from siglip_loss.torch._reference import l2_normalize
from siglip_loss.torch._reference import softmax_loss

__all__ = [
    "SigmoidLoss",
    "distributed_sigmoid_loss",
    "distributed_softmax_loss",
    "l2_normalize",
    "sigmoid_loss",
    "softmax_loss",
]
