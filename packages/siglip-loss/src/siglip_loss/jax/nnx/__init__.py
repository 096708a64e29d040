"""The Flax NNX shell around the JAX loss (install ``siglip-loss[flax]``).

``siglip_loss.jax`` itself needs only jax; this submodule is the one that imports Flax.
``siglip_loss.jax.SigmoidLoss`` is the same class, imported from here on first access.
"""

from siglip_loss.jax._module import SigmoidLoss

__all__ = [
    "SigmoidLoss",
]
