"""Named training presets: full ``TrainConfig`` objects a run starts from."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

from siglip_train._config import CheckpointConfig
from siglip_train._config import DataConfig
from siglip_train._config import LoggingConfig
from siglip_train._config import LossConfig
from siglip_train._config import ModelConfig
from siglip_train._config import OptimizerConfig
from siglip_train._config import TrainConfig

# Weight decay below is in PyTorch AdamW units, like OptimizerConfig.weight_decay: each step
# subtracts lr(t) * weight_decay * w. The papers quote big_vision's wd, which is not multiplied
# by the lr: wd_bv = weight_decay * peak lr.


def _tiny_cpu() -> TrainConfig:
    # A small SigLIP recipe for one CPU: fp32, one torch thread (on a 2-core machine shared with
    # other jobs, two threads make these small ops many times slower; num_threads=0 uses all
    # cores). log_scale and bias get 10x the lr so that they move in a 1,000-step run. It trains
    # on the shards given in data.shards (and the model data.tokenizer fits); the emoji +
    # Fashion-MNIST demo is `siglip-train demo`, with its own model and data.
    return TrainConfig(
        steps=1000,
        seed=0,
        output_dir="runs/tiny-cpu",
        precision="fp32",
        device="cpu",
        num_threads=1,
        model=ModelConfig(name="tiny-test", log_scale_init=math.log(10.0), bias_init=-10.0),
        optimizer=OptimizerConfig(
            lr=1e-3,
            weight_decay=0.1,  # big_vision wd 1e-4 at lr 1e-3
            beta2=0.95,
            grad_clip=1.0,
            warmup_steps=100,
            logit_lr_multiplier=10.0,
        ),
        loss=LossConfig(name="sigmoid"),
        data=DataConfig(batch_size=128, image_size=32, text_length=16),
        checkpoint=CheckpointConfig(every_steps=250, keep_last=2),
        logging=LoggingConfig(every_steps=10),
    )


def _b16_webli_like() -> TrainConfig:
    # SigLIP B/16 from scratch as in arXiv:2303.15343 / 2502.14786: batch 32k, lr 1e-3, weight
    # decay 0.1 (big_vision wd 1e-4 at lr 1e-3), beta2 0.95, clip 1, cosine, bf16 on GPU.
    return TrainConfig(
        steps=300_000,
        output_dir="runs/b16-webli-like",
        precision="auto",
        model=ModelConfig(
            name="siglip-base-patch16-224", log_scale_init=math.log(10.0), bias_init=-10.0
        ),
        optimizer=OptimizerConfig(
            lr=1e-3,
            weight_decay=0.1,  # big_vision wd 1e-4 at lr 1e-3
            beta2=0.95,
            grad_clip=1.0,
            warmup_steps=20_000,
        ),
        loss=LossConfig(name="sigmoid", distributed_strategy="ring"),
        data=DataConfig(batch_size=32_768, image_size=224, text_length=64),
        checkpoint=CheckpointConfig(every_steps=2000, keep_last=3),
        logging=LoggingConfig(every_steps=50),
    )


def _lit_b16() -> TrainConfig:
    # LiT / SigLiT: image tower locked (frozen), text tower trained (arXiv:2303.15343 sec. 4.4;
    # big_vision siglip_lit_coco.py: lr 1e-3, wd 0.01 in big_vision units, 3% warmup, clip 1).
    config = _b16_webli_like()
    config.steps = 20_000
    config.output_dir = "runs/lit-b16"
    config.freeze = "image"  # needs model.init_from: the pretrained model to lock-image-tune
    config.optimizer.weight_decay = 10.0  # big_vision wd 0.01 at lr 1e-3
    config.optimizer.warmup_steps = 600
    config.data.batch_size = 16_384
    return config


_PRESETS: dict[str, Callable[[], TrainConfig]] = {
    "tiny-cpu": _tiny_cpu,
    "b16-webli-like": _b16_webli_like,
    "lit-b16": _lit_b16,
}


def list_presets() -> list[str]:
    """Names of the built-in presets.

    Examples:
        >>> list_presets()
        ['b16-webli-like', 'lit-b16', 'tiny-cpu']
    """
    return sorted(_PRESETS)


def get_preset(name: str) -> TrainConfig:
    """A fresh copy of the preset ``name``.

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    if name not in _PRESETS:
        raise KeyError(f"unknown preset {name!r}; known presets: {list_presets()}")
    return copy.deepcopy(_PRESETS[name]())


def register_preset(name: str, factory: Callable[[], TrainConfig]) -> None:
    """Add a preset (a function returning a ``TrainConfig``); the name must be new.

    Raises:
        ValueError: ``name`` is taken.
    """
    if name in _PRESETS:
        raise ValueError(f"preset {name!r} already exists")
    _PRESETS[name] = factory
