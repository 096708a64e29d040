"""The JAX adapter (install ``siglip-loss[jax]``; the Flax NNX module needs ``[flax]``).

Importing it needs only jax. The Flax module lives in :mod:`siglip_loss.jax.nnx`;
``siglip_loss.jax.SigmoidLoss`` still works and imports Flax only when it is first accessed.
"""

from typing import Any

from siglip_loss.jax._api import sigmoid_loss
from siglip_loss.jax._recipe import chunked_token_cross_entropy
from siglip_loss.jax._recipe import masked_patch_distillation_loss
from siglip_loss.jax._recipe import self_distillation_loss
from siglip_loss.jax._recipe import token_cross_entropy
from siglip_loss.jax._recipe import update_center
from siglip_loss.jax._reference import l2_normalize
from siglip_loss.jax._reference import softmax_loss
from siglip_loss.jax._sharded import sharded_sigmoid_loss
from siglip_loss.jax._sharded import sharded_sigmoid_loss_on_mesh

__all__ = [
    "chunked_token_cross_entropy",
    "l2_normalize",
    "masked_patch_distillation_loss",
    "self_distillation_loss",
    "sharded_sigmoid_loss",
    "sharded_sigmoid_loss_on_mesh",
    "sigmoid_loss",
    "softmax_loss",
    "token_cross_entropy",
    "update_center",
]


def __getattr__(name: str) -> Any:
    # The one exception to "__init__ only re-exports": users of the pure functions (optax,
    # equinox) must not need Flax, and Flax users keep `from siglip_loss.jax import SigmoidLoss`.
    if name == "SigmoidLoss":
        from siglip_loss.jax.nnx import SigmoidLoss

        return SigmoidLoss
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
