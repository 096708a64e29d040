"""siglip-loss: the SigLIP sigmoid loss for numpy, PyTorch and JAX.

Importing this package costs nothing beyond numpy. The backends live in their own submodules and
import their framework only when imported themselves:

- ``siglip_loss.numpy``: float64 oracle with analytic gradients.
- ``siglip_loss.torch``: PyTorch functions and ``nn.Module`` (extra ``[torch]``).
- ``siglip_loss.jax``: JAX functions (extra ``[jax]``); ``siglip_loss.jax.nnx``: the Flax NNX
  module (extra ``[flax]``).
- ``siglip_loss.testing``: hypothesis strategies and ``assert_matches_reference`` (extra ``[testing]``).
"""

__version__ = "0.1.0"

__all__ = [
    "__version__",
]
