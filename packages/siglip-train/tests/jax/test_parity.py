"""The JAX trainer equals the torch trainer step for step (same weights, batches and config)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from siglip_models.flax import SiglipModel as FlaxSiglip
from siglip_models.torch import SiglipModel as TorchSiglip

from siglip_train import Trainer
from siglip_train import read_metrics
from siglip_train.jax import JaxTrainer
from siglip_train.jax import make_mesh

from .helpers import numpy_batches
from .helpers import tiny_config

STEPS = 20


def flax_copy_of(torch_model: TorchSiglip) -> FlaxSiglip:
    flax_model = FlaxSiglip(torch_model.config)
    flax_model.load_hf_state_dict({k: v.detach().numpy() for k, v in torch_model.hf_state_dict().items()})
    return flax_model


def key_bias_apart(key: str, jax_value: np.ndarray, torch_value: np.ndarray) -> tuple:
    """The parts of a parameter that are compared to 1e-4; the attention KEY biases are checked
    only to stay within the lr's reach.

    The key bias adds ``q . b_k`` to every logit of a query row, which the softmax cancels: its
    true gradient is exactly zero, and each framework's gradient is float32 rounding noise that
    Adam divides by its own (tiny) magnitude into updates of up to lr per step. Both trainers
    move it by different noise (measured: up to 7e-4 after 20 steps), every other parameter
    agrees to 1e-6.
    """
    width = torch_value.shape[0] // 3
    if key.endswith("k_proj.bias"):
        reach = STEPS * 2 * 1e-3  # steps x (text multiplier 2) x peak lr
        assert np.max(np.abs(jax_value - torch_value)) <= reach, key
        return jax_value[:0], torch_value[:0]
    if key.endswith("in_proj_bias"):  # [query; key; value] biases of the MAP head
        keep = np.r_[0:width, 2 * width : 3 * width]
        return jax_value[keep], torch_value[keep]
    return jax_value, torch_value


@pytest.mark.parametrize("freeze", ["none", "image"])
def test_jax_trainer_equals_torch_trainer_for_20_steps(tmp_path, freeze):
    torch.manual_seed(0)
    torch_model = TorchSiglip("tiny-test")
    flax_model = flax_copy_of(torch_model)
    frozen_before = {k: v.detach().numpy().copy() for k, v in torch_model.hf_state_dict().items()}
    batches = numpy_batches(5, batch_size=16)
    overrides = (
        f"steps={STEPS}",
        "optimizer.warmup_steps=5",
        f"freeze={freeze}",
        "optimizer.text_lr_multiplier=2",
    )
    torch_config = tiny_config(tmp_path / "torch", *overrides)
    Trainer(torch_model, batches, torch_config).fit()
    # 4 devices: the batch over 4, parameters split over fsdp=2 (threshold 0: all that divide).
    jax_config = tiny_config(tmp_path / "jax", *overrides, "mesh.fsdp=2")
    mesh = make_mesh(fsdp=2, devices=__import__("jax").devices()[:4])
    trainer = JaxTrainer(flax_model, batches, jax_config, mesh=mesh)
    trainer.fit()

    torch_losses = [r["loss"] for r in read_metrics(tmp_path / "torch" / "metrics.jsonl")]
    jax_losses = [r["loss"] for r in read_metrics(tmp_path / "jax" / "metrics.jsonl")]
    assert len(torch_losses) == len(jax_losses) == STEPS
    np.testing.assert_allclose(jax_losses, torch_losses, rtol=1e-4)
    assert jax_losses[-1] < jax_losses[0]  # it trains

    torch_params = {k: v.detach().numpy() for k, v in torch_model.hf_state_dict().items()}
    jax_params = {k: np.asarray(v) for k, v in trainer.model().hf_state_dict().items()}
    assert set(jax_params) == set(torch_params)
    moved = 0
    for key, value in torch_params.items():
        jax_value, torch_value = key_bias_apart(key, jax_params[key], value)
        np.testing.assert_allclose(jax_value, torch_value, atol=1e-4, rtol=0, err_msg=key)
        moved += not np.array_equal(value, frozen_before[key])
        if freeze == "image" and key.startswith("vision_model."):
            # LiT: the locked tower is bit for bit the loaded one.
            assert np.array_equal(jax_params[key], frozen_before[key]), key
    assert moved > 0
