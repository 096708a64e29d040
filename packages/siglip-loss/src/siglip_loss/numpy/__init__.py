"""The numpy adapter: the float64 oracle every other implementation is tested against."""

from siglip_loss.numpy._reference import SigmoidLossAndGrads
from siglip_loss.numpy._reference import SoftmaxLossAndGrads
from siglip_loss.numpy._reference import l2_normalize
from siglip_loss.numpy._reference import positive_pairs_and_weights
from siglip_loss.numpy._reference import sigmoid_loss
from siglip_loss.numpy._reference import sigmoid_loss_and_grads
from siglip_loss.numpy._reference import softmax_loss
from siglip_loss.numpy._reference import softmax_loss_and_grads

__all__ = [
    "SigmoidLossAndGrads",
    "SoftmaxLossAndGrads",
    "l2_normalize",
    "positive_pairs_and_weights",
    "sigmoid_loss",
    "sigmoid_loss_and_grads",
    "softmax_loss",
    "softmax_loss_and_grads",
]
