"""Shared pieces of the JAX trainer tests: tiny batches and configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from siglip_train import TrainConfig
from siglip_train import apply_overrides


def numpy_batches(count: int, *, batch_size: int = 16, seed: int = 0) -> list[dict]:
    """``count`` NHWC float32 batches for the ``tiny-test`` model (32 px, 16 tokens, vocab 100),
    which the torch and the JAX trainer both take."""
    rng = np.random.default_rng(seed)
    return [
        {
            "pixels": rng.uniform(-1, 1, (batch_size, 32, 32, 3)).astype(np.float32),
            "token_ids": rng.integers(0, 100, (batch_size, 16)).astype(np.int64),
        }
        for _ in range(count)
    ]


def tiny_config(output_dir: Path, *overrides: str) -> TrainConfig:
    """A quiet config for short runs in ``output_dir``."""
    return apply_overrides(
        TrainConfig(),
        [
            f"output_dir={output_dir}",
            "steps=6",
            "optimizer.warmup_steps=2",
            "optimizer.weight_decay=0.1",
            "optimizer.logit_lr_multiplier=10",
            "logging.every_steps=1",
            "logging.progress_bar=false",
            "logging.tensorboard=false",
            "checkpoint.every_steps=0",
            "mesh.min_shard_bytes=0",
            *overrides,
        ],
    )
