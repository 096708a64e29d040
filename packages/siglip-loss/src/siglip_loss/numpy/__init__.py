"""The numpy adapter: the float64 oracle every other implementation is tested against."""

from siglip_loss.numpy._recipe import ChunkedTokenCrossEntropyAndGrads
from siglip_loss.numpy._recipe import DistillationLossAndGrads
from siglip_loss.numpy._recipe import TokenCrossEntropyAndGrads
from siglip_loss.numpy._recipe import chunked_token_cross_entropy
from siglip_loss.numpy._recipe import chunked_token_cross_entropy_and_grads
from siglip_loss.numpy._recipe import masked_patch_distillation_loss
from siglip_loss.numpy._recipe import masked_patch_distillation_loss_and_grads
from siglip_loss.numpy._recipe import self_distillation_loss
from siglip_loss.numpy._recipe import self_distillation_loss_and_grads
from siglip_loss.numpy._recipe import token_cross_entropy
from siglip_loss.numpy._recipe import token_cross_entropy_and_grads
from siglip_loss.numpy._recipe import update_center
from siglip_loss.numpy._reference import SigmoidLossAndGrads
from siglip_loss.numpy._reference import SoftmaxLossAndGrads
from siglip_loss.numpy._reference import l2_normalize
from siglip_loss.numpy._reference import positive_pairs_and_weights
from siglip_loss.numpy._reference import sigmoid_loss
from siglip_loss.numpy._reference import sigmoid_loss_and_grads
from siglip_loss.numpy._reference import softmax_loss
from siglip_loss.numpy._reference import softmax_loss_and_grads

__all__ = [
    "ChunkedTokenCrossEntropyAndGrads",
    "DistillationLossAndGrads",
    "SigmoidLossAndGrads",
    "SoftmaxLossAndGrads",
    "TokenCrossEntropyAndGrads",
    "chunked_token_cross_entropy",
    "chunked_token_cross_entropy_and_grads",
    "l2_normalize",
    "masked_patch_distillation_loss",
    "masked_patch_distillation_loss_and_grads",
    "positive_pairs_and_weights",
    "self_distillation_loss",
    "self_distillation_loss_and_grads",
    "sigmoid_loss",
    "sigmoid_loss_and_grads",
    "softmax_loss",
    "softmax_loss_and_grads",
    "token_cross_entropy",
    "token_cross_entropy_and_grads",
    "update_center",
]
