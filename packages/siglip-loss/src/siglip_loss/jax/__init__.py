"""The JAX adapter (install ``siglip-loss[jax]``)."""

from siglip_loss.jax._api import sigmoid_loss
from siglip_loss.jax._module import SigmoidLoss
from siglip_loss.jax._reference import l2_normalize
from siglip_loss.jax._reference import softmax_loss
from siglip_loss.jax._sharded import sharded_sigmoid_loss
from siglip_loss.jax._sharded import sharded_sigmoid_loss_on_mesh

__all__ = [
    "SigmoidLoss",
    "l2_normalize",
    "sharded_sigmoid_loss",
    "sharded_sigmoid_loss_on_mesh",
    "sigmoid_loss",
    "softmax_loss",
]
