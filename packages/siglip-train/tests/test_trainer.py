"""The training loop against a hand-written loop; freezing; checkpoints; resume; signals."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from tensorboard.backend.event_processing import event_accumulator

import siglip_data
from siglip_loss.torch import l2_normalize
from siglip_loss.torch import sigmoid_loss
from siglip_loss.torch import softmax_loss
from siglip_models.torch import SiglipModel
from siglip_train import CheckpointError
from siglip_train import TrainConfig
from siglip_train import Trainer
from siglip_train import apply_overrides
from siglip_train import read_metrics
from siglip_train._common import warmup_cosine_multiplier
from siglip_train._optim import decay_parameter_names


def make_config(tmp_path: Path, *overrides: str) -> TrainConfig:
    base = [
        f"output_dir={tmp_path / 'run'}",
        "steps=6",
        "logging.every_steps=1",
        "logging.progress_bar=false",
        "logging.tensorboard=false",
        "optimizer.warmup_steps=2",
        "optimizer.lr=0.01",
        "optimizer.weight_decay=0.1",
        "checkpoint.every_steps=0",
    ]
    return apply_overrides(TrainConfig(), [*base, *overrides])


def make_model(seed: int = 0) -> SiglipModel:
    torch.manual_seed(seed)
    return SiglipModel("tiny-test").train()


def parameters_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_trainer_equals_a_hand_written_adamw_loop(make_batches, tmp_path: Path) -> None:
    config = make_config(tmp_path, "optimizer.grad_clip=0.5")
    batches = make_batches(6)
    trained = make_model()
    Trainer(trained, batches, config).fit()

    # The oracle: the SigLIP recipe written out by hand.
    model = make_model()
    decay = decay_parameter_names(model)
    named = list(model.named_parameters())
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for n, p in named if n in decay], "weight_decay": 0.1},
            {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
        ],
        lr=0.01,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    losses = []
    for step, batch in enumerate(batches):
        for group in optimizer.param_groups:
            group["lr"] = 0.01 * warmup_cosine_multiplier(step, total_steps=6, warmup_steps=2)
        image = l2_normalize(model.encode_image(batch["pixels"]))
        text = l2_normalize(model.encode_text(batch["token_ids"]))
        loss = sigmoid_loss(image, text, scale=model.log_scale.exp(), bias=model.bias)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()
        losses.append(loss.item())
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(
            dict(trained.named_parameters())[name], parameter, rtol=1e-5, atol=1e-6
        )
    logged = [r["loss"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")]
    assert logged == pytest.approx(losses, rel=1e-5)


@pytest.mark.parametrize(
    ("frozen", "trained_prefix"), [("image", "text_model."), ("text", "vision_model.")]
)
def test_frozen_tower_is_bit_identical_after_training(
    make_batches, tmp_path: Path, frozen: str, trained_prefix: str
) -> None:
    model = make_model()
    before = parameters_of(model)
    Trainer(model, make_batches(3), make_config(tmp_path, "steps=3", f"freeze={frozen}")).fit()
    frozen_prefix = "vision_model." if frozen == "image" else "text_model."
    after = parameters_of(model)
    for name in before:
        if name.startswith(frozen_prefix):
            assert torch.equal(before[name], after[name]), f"{name} moved"
    moved = [
        n for n in before if n.startswith(trained_prefix) and not torch.equal(before[n], after[n])
    ]
    assert len(moved) > 10
    assert not torch.equal(before["log_scale"], after["log_scale"])
    assert not torch.equal(before["bias"], after["bias"])


def test_softmax_option_trains_with_the_clip_loss_and_leaves_the_bias(
    make_batches, tmp_path: Path
) -> None:
    batches = make_batches(1)
    model = make_model()
    with torch.no_grad():
        expected = softmax_loss(
            l2_normalize(model.encode_image(batches[0]["pixels"])),
            l2_normalize(model.encode_text(batches[0]["token_ids"])),
            scale=model.log_scale.exp(),
        ).item()
    bias = model.bias.detach().clone()
    Trainer(model, batches, make_config(tmp_path, "steps=1", "loss.name=softmax")).fit()
    record = read_metrics(tmp_path / "run" / "metrics.jsonl")[0]
    assert record["loss"] == pytest.approx(expected, rel=1e-5)
    assert torch.equal(model.bias.detach(), bias)


def test_gradient_checkpointing_gives_the_same_parameters(make_batches, tmp_path: Path) -> None:
    results = []
    for index, flag in enumerate(("false", "true")):
        model = make_model()
        config = make_config(tmp_path / str(index), "steps=2", f"model.grad_checkpointing={flag}")
        Trainer(model, make_batches(2), config).fit()
        results.append(parameters_of(model))
    for name in results[0]:
        torch.testing.assert_close(results[0][name], results[1][name], rtol=1e-5, atol=1e-6)


def test_twenty_steps_equal_ten_plus_resume_ten(make_batches, tmp_path: Path) -> None:
    batches = make_batches(7)  # fewer than 20: also exercises the epoch wrap-around
    config = make_config(tmp_path / "straight", "steps=20")
    straight = make_model()
    Trainer(straight, batches, config).fit()

    config = make_config(tmp_path / "resumed", "steps=20")
    first = Trainer(make_model(), batches, config)
    result = first.fit(max_steps=10)
    assert result.step == 10
    assert result.interrupted
    resumed = make_model(seed=123)  # different init: everything must come from the checkpoint
    trainer = Trainer(resumed, batches, config)
    trainer.resume(result.checkpoint)  # type: ignore[arg-type]
    assert trainer.fit().step == 20
    for name, parameter in straight.named_parameters():
        torch.testing.assert_close(
            dict(resumed.named_parameters())[name], parameter, rtol=0, atol=0
        )
    records = read_metrics(tmp_path / "resumed" / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 21))


class SignalAtBatch:
    """Resumable batches that send this process SIGTERM while yielding batch ``at``."""

    def __init__(self, batches: list[dict], at: int | None) -> None:
        self.batches = batches
        self.at = at
        self.position = 0

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.position = state["position"]

    def __iter__(self):  # type: ignore[no-untyped-def]
        while True:
            if self.position == self.at:
                os.kill(os.getpid(), signal.SIGTERM)
            batch = self.batches[self.position % len(self.batches)]
            self.position += 1
            yield batch


def test_sigterm_saves_a_checkpoint_and_resume_matches_the_uninterrupted_run(
    make_batches,
    tmp_path: Path,
) -> None:
    batches = make_batches(5)
    straight = make_model()
    Trainer(straight, SignalAtBatch(batches, None), make_config(tmp_path / "a", "steps=12")).fit()

    config = make_config(tmp_path / "b", "steps=12")
    trainer = Trainer(make_model(), SignalAtBatch(batches, 6), config)
    result = trainer.fit()
    assert trainer.stop_signal == signal.SIGTERM
    assert result.interrupted
    assert result.step == 7  # the step in flight finishes, then it saves
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored
    resumed_model = make_model(seed=5)
    resumed = Trainer(resumed_model, SignalAtBatch(batches, None), config)
    resumed.resume(result.checkpoint)  # type: ignore[arg-type]
    assert resumed.fit().step == 12
    for name, parameter in straight.named_parameters():
        torch.testing.assert_close(
            dict(resumed_model.named_parameters())[name], parameter, rtol=0, atol=0
        )


def test_checkpoints_are_complete_pruned_and_load_in_siglip_models_and_transformers(
    make_batches,
    tmp_path: Path,
) -> None:
    model = make_model()
    config = make_config(tmp_path, "steps=6", "checkpoint.every_steps=2", "checkpoint.keep_last=2")
    result = Trainer(model, make_batches(2), config).fit()
    root = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["step_000000004", "step_000000006"]
    checkpoint = result.checkpoint
    assert checkpoint == root / "step_000000006"
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    assert manifest["step"] == 6
    assert {"model/model.safetensors", "model/config.json", "config.yaml"} <= set(manifest["files"])
    assert "steps: 6" in (checkpoint / "config.yaml").read_text()

    pixels, token_ids = make_batches(1)[0].values()
    model.eval()
    with torch.no_grad():
        expected = model(pixels, token_ids).logits_per_image
    loaded = SiglipModel.from_pretrained(checkpoint / "model")
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixels, token_ids).logits_per_image, expected)
    hf_model = transformers.SiglipModel.from_pretrained(str(checkpoint / "model")).eval()
    with torch.no_grad():
        hf_logits = hf_model(pixel_values=pixels, input_ids=token_ids).logits_per_image
    torch.testing.assert_close(hf_logits, expected, rtol=1e-4, atol=1e-4)


def _checkpoint(make_batches, tmp_path: Path) -> Path:
    result = Trainer(make_model(), make_batches(2), make_config(tmp_path, "steps=2")).fit()
    assert result.checkpoint is not None
    return result.checkpoint


def test_corrupt_checkpoint_is_refused_with_the_file_named(make_batches, tmp_path: Path) -> None:
    checkpoint = _checkpoint(make_batches, tmp_path)
    weights = checkpoint / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    trainer = Trainer(make_model(), make_batches(2), make_config(tmp_path))
    with pytest.raises(CheckpointError, match=r"model\.safetensors' is corrupt: sha256"):
        trainer.resume(checkpoint)


def test_incomplete_checkpoint_is_refused(make_batches, tmp_path: Path) -> None:
    checkpoint = _checkpoint(make_batches, tmp_path)
    (checkpoint / "manifest.json").unlink()
    trainer = Trainer(make_model(), make_batches(2), make_config(tmp_path))
    with pytest.raises(CheckpointError, match=r"has no manifest\.json: it is incomplete"):
        trainer.resume(checkpoint)


def test_checkpoint_of_another_architecture_is_refused(make_batches, tmp_path: Path) -> None:
    checkpoint = _checkpoint(make_batches, tmp_path)
    other = SiglipModel("tiny-test-text-head")
    trainer = Trainer(other, make_batches(2), make_config(tmp_path))
    with pytest.raises(CheckpointError, match="does not match the model"):
        trainer.resume(checkpoint)


def test_metrics_hold_loss_lr_scale_bias_and_throughput(make_batches, tmp_path: Path) -> None:
    model = make_model()
    Trainer(model, make_batches(3), make_config(tmp_path, "steps=3")).fit()
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3]
    assert records[0]["lr"] == pytest.approx(0.01 * 0.5)
    assert records[-1]["scale"] == pytest.approx(math.exp(model.log_scale.item()), rel=1e-6)
    assert records[-1]["bias"] == pytest.approx(model.bias.item(), rel=1e-6)
    assert all(r["samples_per_second"] > 0 and math.isfinite(r["loss"]) for r in records)


def test_periodic_eval_runs_in_eval_mode_and_is_logged(make_batches, tmp_path: Path) -> None:
    seen = []

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        seen.append((model.training, torch.is_grad_enabled()))
        return {"scale": float(model.log_scale.exp())}  # type: ignore[operator]

    model = make_model()
    config = make_config(tmp_path, "steps=4", "eval.every_steps=2")
    result = Trainer(model, make_batches(2), config, eval_fn=evaluate).fit()
    assert seen == [(False, False), (False, False)]
    assert model.training
    evals = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4]
    assert result.eval["scale"] == pytest.approx(math.exp(model.log_scale.item()))


def test_bad_inputs_are_named(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="Linear has no 'encode_image'"):
        Trainer(torch.nn.Linear(2, 2), [], make_config(tmp_path))
    trainer = Trainer(make_model(), [{"pixels": torch.zeros(2, 3, 32, 32)}], make_config(tmp_path))
    with pytest.raises(KeyError, match="batch must have 'token_ids'"):
        trainer.fit()


def test_bf16_autocast_first_loss_matches_float32_to_bf16_precision(
    make_batches, tmp_path: Path
) -> None:
    losses = {}
    for precision in ("fp32", "bf16"):
        model = make_model()
        config = make_config(tmp_path / precision, "steps=1", f"precision={precision}")
        trainer = Trainer(model, make_batches(1), config)
        assert trainer.autocast_dtype == (torch.bfloat16 if precision == "bf16" else None)
        losses[precision] = trainer.fit().last_loss
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=2e-2)
    assert losses["bf16"] != losses["fp32"]  # autocast really ran in bfloat16


def test_tensorboard_gets_the_same_scalars_as_the_jsonl(make_batches, tmp_path: Path) -> None:
    config = make_config(tmp_path, "steps=2", "logging.tensorboard=true")
    trainer = Trainer(make_model(), make_batches(2), config)
    trainer.fit(max_steps=1)
    trainer.fit()  # a second fit() on the same trainer keeps logging to TensorBoard
    accumulator = event_accumulator.EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    accumulator.Reload()
    logged = read_metrics(tmp_path / "run" / "metrics.jsonl")
    for tag in ("loss", "lr", "scale", "bias", "samples_per_second"):
        events = accumulator.Scalars(f"train/{tag}")
        assert [e.step for e in events] == [1, 2]
        assert [e.value for e in events] == pytest.approx([r[tag] for r in logged], rel=1e-6)


def test_uint8_batches_are_scaled_exactly_as_siglip_data_scales_pixels() -> None:
    from siglip_train._batches import batch_to_tensors

    every_value = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=-1)
    batch = {"pixels": every_value, "token_ids": np.zeros((1, 4), np.int32)}
    pixels, token_ids = batch_to_tensors(batch, torch.device("cpu"))
    expected = siglip_data.normalize_uint8_pixels(every_value).transpose(0, 3, 1, 2)
    assert pixels.dtype == torch.float32
    assert token_ids.dtype == torch.int64
    np.testing.assert_array_equal(pixels.numpy(), expected)  # bit for bit
    nchw = {"pixels": torch.from_numpy(every_value).permute(0, 3, 1, 2), "token_ids": token_ids}
    torch.testing.assert_close(
        batch_to_tensors(nchw, torch.device("cpu"))[0], pixels, rtol=0, atol=0
    )


def test_a_failed_checkpoint_write_leaves_no_directory_behind(
    make_batches, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from siglip_train import _checkpoint

    trainer = Trainer(make_model(), make_batches(2), make_config(tmp_path, "steps=2"))
    trainer.fit(max_steps=1)
    written = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert written == ["step_000000001"]

    def disk_full(model: torch.nn.Module, directory: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_checkpoint, "save_model_weights", disk_full)
    with pytest.raises(OSError, match=r"step_000000002'.*No space left on device"):
        trainer.fit()
    # the previous checkpoint is intact and no half-written (temp) directory is left
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == written


def test_custom_models_reach_the_trainer_through_the_protocol_only(
    make_batches, tmp_path: Path
) -> None:
    class NotAModule:
        log_scale = bias = torch.nn.Parameter(torch.zeros(()))

        def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
            return pixels.flatten(1)

        def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor:
            return token_ids.float()

    with pytest.raises(TypeError, match=r"must be a torch\.nn\.Module, got NotAModule"):
        Trainer(NotAModule(), make_batches(1), make_config(tmp_path))  # type: ignore[arg-type]


def test_caption_positives_give_the_group_loss_of_duplicated_captions(
    make_batches, tmp_path: Path
) -> None:
    batch = dict(make_batches(1)[0])
    batch["token_ids"] = batch["token_ids"][[0, 1, 0, 2, 1, 0, 3, 2]]  # repeated captions
    model = make_model()
    with torch.no_grad():
        image = l2_normalize(model.encode_image(batch["pixels"]))
        text = l2_normalize(model.encode_text(batch["token_ids"]))
        # Independent of the trainer's hashing: equal rows get equal ids.
        _, ids = np.unique(batch["token_ids"].numpy(), axis=0, return_inverse=True)
        ids = torch.from_numpy(ids.reshape(-1))
        options = {"scale": model.log_scale.exp(), "bias": model.bias}
        diagonal = sigmoid_loss(image, text, **options).item()
        grouped = {
            weighting: sigmoid_loss(
                image,
                text,
                image_groups=ids,
                text_groups=ids,
                positive_weighting=weighting,
                **options,
            ).item()
            for weighting in ("uniform", "inverse_count")
        }
    assert abs(grouped["uniform"] - diagonal) > 1e-3  # the duplicates are no longer negatives
    for weighting, expected in grouped.items():
        run = tmp_path / weighting
        config = make_config(
            run, "steps=1", "loss.positives=caption", f"loss.positive_weighting={weighting}"
        )
        Trainer(make_model(), [batch], config).fit()
        record = read_metrics(run / "run" / "metrics.jsonl")[0]
        assert record["loss"] == pytest.approx(expected, rel=1e-5)


def test_group_key_positives_use_the_batch_keys(make_batches, tmp_path: Path) -> None:
    batch = dict(make_batches(1)[0])
    keys = ["cat", "cat", "dog", "car", "dog", "cat", "bus", "car"]
    model = make_model()
    with torch.no_grad():
        ids = torch.tensor([["cat", "dog", "car", "bus"].index(key) for key in keys])
        expected = sigmoid_loss(
            l2_normalize(model.encode_image(batch["pixels"])),
            l2_normalize(model.encode_text(batch["token_ids"])),
            scale=model.log_scale.exp(),
            bias=model.bias,
            image_groups=ids,
            text_groups=ids,
        ).item()
    config = make_config(tmp_path, "steps=1", "loss.positives=group_key")
    Trainer(make_model(), [dict(batch, group_key=keys)], config).fit()
    record = read_metrics(tmp_path / "run" / "metrics.jsonl")[0]
    assert record["loss"] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(KeyError, match=r"loss.positives='group_key' needs a 'group_key' entry"):
        Trainer(make_model(), [batch], make_config(tmp_path / "missing", *_GROUP_KEY)).fit()


_GROUP_KEY = ("steps=1", "loss.positives=group_key")
