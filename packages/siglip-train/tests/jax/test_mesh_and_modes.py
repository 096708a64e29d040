"""The mesh, the sharding rule, the optimizer's groups and masks, errors, and reverse LiT."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from siglip_models.flax import SiglipModel
from siglip_train import ConfigError
from siglip_train.jax import JaxTrainer
from siglip_train.jax import decays
from siglip_train.jax import fsdp_partition_spec
from siglip_train.jax import make_mesh

from .helpers import numpy_batches
from .helpers import tiny_config


@pytest.mark.parametrize("devices", [1, 2, 4, 8])
def test_params_and_adam_moments_per_device_shrink_with_fsdp(tmp_path, devices):
    """FSDP over all devices: parameter + optimizer bytes per device ~ total / devices."""
    mesh = make_mesh(fsdp=devices, devices=jax.devices()[:devices])
    trainer = JaxTrainer(
        SiglipModel("tiny-test"), numpy_batches(1, batch_size=8), tiny_config(tmp_path), mesh=mesh
    )
    trainer._setup()
    leaves = jax.tree.leaves((trainer.params, trainer.opt_state))
    total = sum(leaf.nbytes for leaf in leaves)
    first_device = sum(
        shard.data.nbytes
        for leaf in leaves
        for shard in leaf.addressable_shards
        if shard.device == mesh.devices.flat[0]
    )
    # Arrays with no dimension divisible by the axis (scale, bias, biases of odd width) stay
    # whole; the tiny model's are a few percent of its bytes.
    assert first_device <= total / devices * 1.15 + 2_000


def test_the_sharding_rule_splits_the_largest_divisible_dimension():
    assert fsdp_partition_spec(
        (100, 32), itemsize=4, fsdp_size=4, min_shard_bytes=0
    ) == jax.sharding.PartitionSpec("fsdp", None)
    assert fsdp_partition_spec(
        (37, 32), itemsize=4, fsdp_size=4, min_shard_bytes=0
    ) == jax.sharding.PartitionSpec(None, "fsdp")
    assert (
        fsdp_partition_spec((37,), itemsize=4, fsdp_size=4, min_shard_bytes=0)
        == jax.sharding.PartitionSpec()
    )
    assert (
        fsdp_partition_spec((1024, 1024), itemsize=4, fsdp_size=4, min_shard_bytes=8 * 2**20)
        == jax.sharding.PartitionSpec()
    )


def test_weight_decay_is_on_weights_only():
    names = {
        "vision_model/embeddings/patch_embedding/kernel": 4,
        "vision_model/encoder/layers/0/mlp/fc1/kernel": 2,
        "vision_model/head/attention/in_proj_weight": 2,
        "vision_model/head/probe": 3,
        "vision_model/embeddings/position_embedding/embedding": 2,
        "text_model/embeddings/token_embedding/embedding": 2,
        "text_model/final_layer_norm/scale": 1,
        "text_model/head/bias": 1,
        "log_scale": 0,
        "bias": 0,
    }
    assert {name for name, ndim in names.items() if decays(name, ndim)} == {
        "vision_model/embeddings/patch_embedding/kernel",
        "vision_model/encoder/layers/0/mlp/fc1/kernel",
        "vision_model/head/attention/in_proj_weight",
    }


def test_bad_batch_and_mesh_are_named(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"fsdp: expected at most the 8 available device\(s\), got a mesh axis of 16",
    ):
        make_mesh(fsdp=16)
    with pytest.raises(ConfigError, match=r"'mesh\.fsdp'"):
        JaxTrainer(SiglipModel("tiny-test"), [], tiny_config(tmp_path, "mesh.fsdp=3"))
    trainer = JaxTrainer(
        SiglipModel("tiny-test"), numpy_batches(1, batch_size=12), tiny_config(tmp_path)
    )
    with pytest.raises(
        ValueError, match="global batch divisible by the 8 devices of the mesh, got 12 rows"
    ):
        trainer.fit()
    with pytest.raises(ConfigError, match=r"'loss\.positives' must be 'diagonal'"):
        JaxTrainer(SiglipModel("tiny-test"), [], tiny_config(tmp_path, "loss.positives=caption"))
    with pytest.raises(ConfigError, match=r"'precision' must be 'auto' or 'fp32'.*got 'bf16'"):
        JaxTrainer(SiglipModel("tiny-test"), [], tiny_config(tmp_path, "precision=bf16"))
    naflex = dict(numpy_batches(1, batch_size=8)[0], patch_mask=np.ones((8, 16), bool))
    with pytest.raises(ValueError, match=r"NaFlex batch.*torch trainer only"):
        JaxTrainer(SiglipModel("tiny-test"), [naflex], tiny_config(tmp_path)).fit()


@pytest.mark.parametrize(
    ("freeze", "locked"), [("image", "vision_model/"), ("text", "text_model/")]
)
def test_lit_and_reverse_lit_keep_the_locked_tower_bit_identical(tmp_path, freeze, locked):
    mesh = make_mesh(devices=jax.devices()[:2])
    config = tiny_config(tmp_path, f"freeze={freeze}", "steps=2")
    trainer = JaxTrainer(
        SiglipModel("tiny-test"), numpy_batches(2, batch_size=8), config, mesh=mesh
    )
    before = {name: np.asarray(value) for name, value in trainer.params.items()}
    trainer.fit()
    assert trainer.groups["log_scale"] == "shared"
    for name, value in trainer.params.items():
        same = np.array_equal(np.asarray(value), before[name])
        if name.startswith(locked):
            assert same, name
        elif name.endswith("kernel"):
            assert not same, name  # the other tower trains
