"""siglip-train: train SigLIP two-tower models in PyTorch, from one CPU to many GPUs.

- ``Trainer(model, batches, config, *, loss_fn=None, eval_fn=None)``: any model following
  :class:`TwoTowerModel` (``encode_image``, ``encode_text``, ``log_scale``, ``bias``), any loss with
  the siglip-loss signature, any iterable of batches; DDP under torchrun with global negatives;
  checkpoints with exact resume; LiT / reverse-LiT freezing.
- ``TrainConfig`` and its sections, ``build_config`` (preset + YAML/JSON files + ``a.b=value``
  overrides), presets ``tiny-cpu``, ``b16-webli-like``, ``lit-b16``.
- ``interpolate_weights`` (WiSE-FT), ``decay_parameter_names``, ``warmup_cosine_multiplier``.
- ``run_demo``: the emoji + Fashion-MNIST demo (``nox -s demo``, ``siglip-train demo``).

See docs/train.md.
"""

from siglip_train._checkpoint import CheckpointError
from siglip_train._checkpoint import latest_checkpoint
from siglip_train._checkpoint import read_manifest
from siglip_train._cli import main
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
from siglip_train._config import atomic_write_text
from siglip_train._config import build_config
from siglip_train._config import config_from_dict
from siglip_train._config import config_to_dict
from siglip_train._config import config_to_yaml
from siglip_train._config import load_config_file
from siglip_train._config import save_config
from siglip_train._demo import evaluate_demo
from siglip_train._demo import run_demo
from siglip_train._demo_data import DemoBatches
from siglip_train._demo_data import DemoData
from siglip_train._demo_data import prepare_demo_data
from siglip_train._distributed import DistributedContext
from siglip_train._distributed import init_distributed
from siglip_train._interpolate import interpolate_weights
from siglip_train._logging import read_metrics
from siglip_train._optim import decay_parameter_names
from siglip_train._optim import warmup_cosine_multiplier
from siglip_train._presets import get_preset
from siglip_train._presets import list_presets
from siglip_train._presets import register_preset
from siglip_train._protocol import ContrastiveLoss
from siglip_train._protocol import TwoTowerModel
from siglip_train._trainer import Trainer
from siglip_train._trainer import TrainResult
from siglip_train._trainer import batch_to_tensors
from siglip_train._trainer import default_loss
from siglip_train._trainer import tower_parameter_names

__version__ = "0.1.0"

__all__ = [
    "CheckpointConfig",
    "CheckpointError",
    "ConfigError",
    "ContrastiveLoss",
    "DataConfig",
    "DemoBatches",
    "DemoData",
    "DistributedContext",
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
    "atomic_write_text",
    "batch_to_tensors",
    "build_config",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "decay_parameter_names",
    "default_loss",
    "evaluate_demo",
    "get_preset",
    "init_distributed",
    "interpolate_weights",
    "latest_checkpoint",
    "list_presets",
    "load_config_file",
    "main",
    "prepare_demo_data",
    "read_manifest",
    "read_metrics",
    "register_preset",
    "run_demo",
    "save_config",
    "tower_parameter_names",
    "warmup_cosine_multiplier",
]
