"""The JAX trainer equals the torch trainer step for step (same weights, batches and config)."""

from __future__ import annotations

import numpy as np
import torch

from siglip_models.flax import SiglipModel as FlaxSiglip
from siglip_models.torch import SiglipModel as TorchSiglip
from siglip_train import Trainer
from siglip_train import read_metrics
from siglip_train.jax import JaxTrainer
from siglip_train.jax import make_mesh

from .helpers import key_bias_apart
from .helpers import numpy_batches
from .helpers import tiny_config

STEPS = 20


def flax_copy_of(torch_model: TorchSiglip) -> FlaxSiglip:
    flax_model = FlaxSiglip(torch_model.config)
    flax_model.load_hf_state_dict(
        {k: v.detach().numpy() for k, v in torch_model.hf_state_dict().items()}
    )
    return flax_model


def test_jax_trainer_equals_torch_trainer_for_20_steps(tmp_path):
    freeze = "none"  # the frozen modes: test_mesh_and_modes.py (bit-identical towers)
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
        jax_value, torch_value = key_bias_apart(key, jax_params[key], value, reach=STEPS * 2e-3)
        np.testing.assert_allclose(jax_value, torch_value, atol=1e-4, rtol=0, err_msg=key)
        moved += not np.array_equal(value, frozen_before[key])
        if freeze == "image" and key.startswith("vision_model."):
            # LiT: the locked tower is bit for bit the loaded one.
            assert np.array_equal(jax_params[key], frozen_before[key]), key
    assert moved > 0
