"""siglip-train: train SigLIP two-tower models in PyTorch, from one CPU to many GPUs.

- ``Trainer(model, batches, config, *, loss_fn=None, eval_fn=None)``: any model following
  :class:`TwoTowerModel` (``encode_image``, ``encode_text``, ``log_scale``, ``bias``), any loss with
  the siglip-loss signature (:class:`ContrastiveLoss`), any iterable of batches; DDP under torchrun
  with global negatives; checkpoints with exact resume; LiT / reverse-LiT freezing; FSDP2 (``strategy: fsdp``).
- ``TrainConfig`` and its sections, ``build_config`` (preset + YAML/JSON files + ``a.b=value``
  overrides), ``apply_overrides``, presets ``tiny-cpu``, ``b16-webli-like``, ``lit-b16``.
- ``interpolate_weights`` (WiSE-FT), ``decay_parameter_names``, ``read_metrics``,
  ``latest_checkpoint``.
- :mod:`siglip_train.distributed`: ``strategy: fsdp``'s sharded checkpoints exported as one
  HF-layout model (``export_checkpoint``), per-rank state bytes, the memory planner
  (``plan_memory``, ``siglip-train plan``).
- The command line: ``siglip-train`` or ``python -m siglip_train``. The emoji + Fashion-MNIST demo
  lives in :mod:`siglip_train.demo` (``siglip-train demo``).
- The SigLIP 2 recipe (LocCa decoder, SILC/TIPS self-distillation, ACID curation) in miniature:
  :mod:`siglip_train.recipe` (``RecipeTrainer``, ``RecipeConfig``).

See docs/train.md.
"""

import importlib
from typing import TYPE_CHECKING
from typing import Any

from siglip_train._common import CheckpointError
from siglip_train._common import TrainResult
from siglip_train._config import CheckpointConfig
from siglip_train._config import ConfigError
from siglip_train._config import DataConfig
from siglip_train._config import EvalConfig
from siglip_train._config import LoggingConfig
from siglip_train._config import LossConfig
from siglip_train._config import ModelConfig
from siglip_train._config import OptimizerConfig
from siglip_train._config import TrainConfig
from siglip_train._config import apply_overrides
from siglip_train._config import build_config
from siglip_train._config import config_from_dict
from siglip_train._config import save_config
from siglip_train._logging import read_metrics
from siglip_train._presets import get_preset
from siglip_train._presets import list_presets

if TYPE_CHECKING:
    from siglip_train import distributed as distributed
    from siglip_train import recipe as recipe
    from siglip_train._checkpoint import latest_checkpoint
    from siglip_train._interpolate import interpolate_weights
    from siglip_train._optim import decay_parameter_names
    from siglip_train._protocol import ContrastiveLoss
    from siglip_train._protocol import TwoTowerModel
    from siglip_train._trainer import Trainer

# The names below need torch. They are imported on first access (PEP 562), so that the configs,
# presets and ``siglip_train.jax`` work without importing torch.
_TORCH_NAMES = {
    "ContrastiveLoss": "siglip_train._protocol",
    "Trainer": "siglip_train._trainer",
    "TwoTowerModel": "siglip_train._protocol",
    "decay_parameter_names": "siglip_train._optim",
    "interpolate_weights": "siglip_train._interpolate",
    "latest_checkpoint": "siglip_train._checkpoint",
}
_TORCH_SUBMODULES = ("distributed", "recipe")


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        value = getattr(importlib.import_module(_TORCH_NAMES[name]), name)
    elif name in _TORCH_SUBMODULES:
        value = importlib.import_module(f"siglip_train.{name}")
    else:
        raise AttributeError(f"module 'siglip_train' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_TORCH_SUBMODULES))


__version__ = "0.1.0"

__all__ = [
    "CheckpointConfig",
    "CheckpointError",
    "ConfigError",
    "ContrastiveLoss",
    "DataConfig",
    "EvalConfig",
    "LoggingConfig",
    "LossConfig",
    "ModelConfig",
    "OptimizerConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TwoTowerModel",
    "__version__",
    "apply_overrides",
    "build_config",
    "config_from_dict",
    "decay_parameter_names",
    "get_preset",
    "interpolate_weights",
    "latest_checkpoint",
    "list_presets",
    "read_metrics",
    "save_config",
]
