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


def key_bias_apart(
    key: str, jax_value: np.ndarray, torch_value: np.ndarray, *, reach: float
) -> tuple[np.ndarray, np.ndarray]:
    """The parts of a parameter that are compared to 1e-4; the attention KEY biases are checked
    only to stay within the lr's reach.

    The key bias adds ``q . b_k`` to every logit of a query row, which the softmax cancels: its
    true gradient is exactly zero, and each framework's gradient is float32 rounding noise that
    Adam divides by its own (tiny) magnitude into updates of up to lr per step. Both trainers
    move it by different noise (measured: up to 7e-4 after 20 steps), every other parameter
    agrees to 1e-6.
    """
    key = key.replace("/", ".")
    if key.endswith("k_proj.bias"):
        assert np.max(np.abs(jax_value - torch_value)) <= reach, key
        return jax_value[:0], torch_value[:0]
    if key.endswith("in_proj_bias"):  # [query; key; value] biases of the MAP head
        width = torch_value.shape[0] // 3
        keep = np.r_[0:width, 2 * width : 3 * width]
        return jax_value[keep], torch_value[keep]
    return jax_value, torch_value
