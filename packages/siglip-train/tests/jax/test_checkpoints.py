"""Checkpoints of the JAX trainer: signals, exact resume on another mesh, keep-last-K, export."""

from __future__ import annotations

import os
import signal
from typing import Any

import jax
import numpy as np
import pytest
import torch
import transformers

from siglip_models.flax import SiglipModel as FlaxSiglip
from siglip_models.torch import SiglipModel as TorchSiglip
from siglip_train import CheckpointError
from siglip_train import read_metrics
from siglip_train.jax import JaxTrainer
from siglip_train.jax import make_mesh

from .helpers import key_bias_apart
from .helpers import numpy_batches
from .helpers import tiny_config


class ResumableBatches:
    """A batch source with a loader state (the position), which can also send a signal."""

    def __init__(self, batches: list[dict], *, signal_at: int | None = None) -> None:
        self.batches = batches
        self.position = 0
        self.signal_at = signal_at

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])

    def __iter__(self) -> Any:
        while True:
            batch = self.batches[self.position % len(self.batches)]
            self.position += 1
            if self.signal_at is not None and self.position == self.signal_at:
                os.kill(os.getpid(), signal.SIGTERM)  # arrives while this step runs
            yield batch


def test_sigterm_saves_and_resume_on_half_the_devices_continues_exactly(tmp_path):
    batches = numpy_batches(7, batch_size=8, seed=1)
    four, two = make_mesh(fsdp=2, devices=jax.devices()[:4]), make_mesh(devices=jax.devices()[:2])

    straight = tiny_config(
        tmp_path / "straight", "checkpoint.every_steps=2", "checkpoint.keep_last=2"
    )
    reference = JaxTrainer(FlaxSiglip("tiny-test"), ResumableBatches(batches), straight, mesh=four)
    reference.fit()
    steps_kept = sorted(path.name for path in (tmp_path / "straight" / "checkpoints").iterdir())
    assert steps_kept == ["step_000000004", "step_000000006"]  # keep_last=2

    config = tiny_config(tmp_path / "resumed")
    first = JaxTrainer(
        FlaxSiglip("tiny-test"), ResumableBatches(batches, signal_at=3), config, mesh=four
    )
    result = first.fit()
    assert result.interrupted
    assert first.stop_signal == signal.SIGTERM
    assert result.step == 3
    assert result.checkpoint.name == "step_000000003"

    with pytest.raises(CheckpointError, match="holds checkpoints"):
        JaxTrainer(FlaxSiglip("tiny-test"), ResumableBatches(batches), config, mesh=two).fit()
    # Another device count (4 -> 2) and another mesh shape: the arrays are resharded on restore.
    second = JaxTrainer(
        FlaxSiglip("tiny-test", rngs=__import__("flax").nnx.Rngs(7)),
        ResumableBatches(batches),
        config,
        mesh=two,
    )
    second.resume("auto")
    result = second.fit()
    assert result.step == 6
    assert not result.interrupted

    expected = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    got = read_metrics(tmp_path / "resumed" / "metrics.jsonl")
    assert [r["step"] for r in got] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([r["loss"] for r in got], [r["loss"] for r in expected], rtol=1e-5)
    for name, value in reference.params.items():
        got_value, expected_value = key_bias_apart(
            name, np.asarray(second.params[name]), np.asarray(value), reach=6e-3
        )
        np.testing.assert_allclose(got_value, expected_value, atol=1e-6, err_msg=name)


def test_a_checkpoint_of_another_model_shape_is_refused(tmp_path):
    config = tiny_config(tmp_path)
    JaxTrainer(FlaxSiglip("tiny-test"), numpy_batches(1, batch_size=8), config).save_checkpoint()
    wider = FlaxSiglip("tiny-test").config.replace(text={"vocab_size": 120})
    trainer = JaxTrainer(FlaxSiglip(wider), numpy_batches(1, batch_size=8), config)
    trainer.resume("auto")
    with pytest.raises(
        CheckpointError,
        match=r"token_embedding/embedding' expected shape \(120, 32\), got \(100, 32\)",
    ):
        trainer.fit()


def test_export_loads_in_siglip_models_torch_and_transformers(tmp_path):
    trainer = JaxTrainer(
        FlaxSiglip("tiny-test"), numpy_batches(1, batch_size=8), tiny_config(tmp_path)
    )
    directory = trainer.export(tmp_path / "model")
    ours = TorchSiglip.from_pretrained(directory).eval()
    exported = trainer.model().hf_state_dict()
    for key, value in ours.hf_state_dict().items():
        np.testing.assert_array_equal(value.detach().numpy(), np.asarray(exported[key]), key)
    theirs = transformers.SiglipModel.from_pretrained(directory).eval()
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        features = theirs.get_image_features(pixel_values=pixels)
        features = getattr(features, "pooler_output", features)
        np.testing.assert_allclose(features.numpy(), ours.encode_image(pixels).numpy(), atol=1e-5)
