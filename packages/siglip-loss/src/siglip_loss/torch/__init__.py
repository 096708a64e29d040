"""The PyTorch adapter (install ``siglip-loss[torch]``)."""

from siglip_loss.torch._api import sigmoid_loss
from siglip_loss.torch._distributed import distributed_sigmoid_loss
from siglip_loss.torch._distributed import distributed_softmax_loss
from siglip_loss.torch._module import SigmoidLoss
from siglip_loss.torch._recipe import chunked_token_cross_entropy
from siglip_loss.torch._recipe import masked_patch_distillation_loss
from siglip_loss.torch._recipe import self_distillation_loss
from siglip_loss.torch._recipe import token_cross_entropy
from siglip_loss.torch._recipe import update_center
from siglip_loss.torch._reference import l2_normalize
from siglip_loss.torch._reference import softmax_loss

__all__ = [
    "SigmoidLoss",
    "chunked_token_cross_entropy",
    "distributed_sigmoid_loss",
    "distributed_softmax_loss",
    "l2_normalize",
    "masked_patch_distillation_loss",
    "self_distillation_loss",
    "sigmoid_loss",
    "softmax_loss",
    "token_cross_entropy",
    "update_center",
]
