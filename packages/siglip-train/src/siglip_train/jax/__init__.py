"""The JAX/Flax trainer (install ``siglip-train[jax]``): a sharded trainer on a device mesh.

- ``JaxTrainer(model, batches, config, *, mesh=None, eval_fn=None)``: the torch ``Trainer``'s
  config, metrics, checkpoints and modes for a Flax NNX two-tower model; one jitted step, the
  batch split over every device, the sigmoid loss by the ring, parameters sharded by FSDP.
- ``make_mesh``, ``fsdp_partition_spec``, ``parameter_shardings``: the ``(data, fsdp)`` mesh and
  the sharding rule.
- ``build_optimizer``, ``warmup_cosine_schedule``, ``decays``: the optax chain.

See docs/train-jax.md.
"""

from siglip_train.jax._mesh import fsdp_partition_spec
from siglip_train.jax._mesh import make_mesh
from siglip_train.jax._mesh import parameter_shardings
from siglip_train.jax._optim import build_optimizer
from siglip_train.jax._optim import decays
from siglip_train.jax._optim import warmup_cosine_schedule
from siglip_train.jax._trainer import JaxTrainer

__all__ = [
    "JaxTrainer",
    "build_optimizer",
    "decays",
    "fsdp_partition_spec",
    "make_mesh",
    "parameter_shardings",
    "warmup_cosine_schedule",
]
