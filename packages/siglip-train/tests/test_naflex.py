"""Training a SigLIP 2 NaFlex tower: per-batch sequence lengths from siglip-data, exact resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import siglip_data
from siglip_data.naflex import NaflexOptions
from siglip_models.torch import SiglipModel
from siglip_train import TrainConfig
from siglip_train import Trainer
from siglip_train import apply_overrides
from siglip_train import read_metrics
from siglip_train._batches import NaflexImages
from siglip_train._batches import batch_to_tensors

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (20, 40, 230), "grey": (90,) * 3}
SHAPES = {"wide": (8, 48), "tall": (48, 8), "square": (20, 20)}
WORDS = [*COLORS, *SHAPES]


def tokenize(texts: list[str]) -> np.ndarray:
    ids = np.zeros((len(texts), 16), np.int32)  # SigLIP 2 layout: pad 0, EOS 1
    for row, text in enumerate(texts):
        words = [3 + WORDS.index(word) for word in text.split()]
        ids[row, : len(words) + 1] = [*words, 1]
    return ids


def make_dataset(directory: Path) -> siglip_data.ImageTextDataset:
    if not directory.exists():
        rng = np.random.default_rng(0)
        samples = []
        for color, rgb in COLORS.items():
            for shape, (height, width) in SHAPES.items():
                noise = rng.normal(0, 10, (height, width, 3))
                image = np.clip(np.asarray(rgb) + noise, 0, 255).astype(np.uint8)
                samples.append((image, f"{shape} {color}"))
        siglip_data.write_shards(samples, directory, samples_per_shard=4)
    return siglip_data.ImageTextDataset(
        str(directory),
        tokenizer=tokenize,
        naflex=NaflexOptions(sequence_lengths=(6, 12, 20), patch_size=4),
        batch_size=6,
        shuffle_buffer=12,
        seed=3,
        drop_last=True,
    )


def make_config(tmp_path: Path, steps: int) -> TrainConfig:
    return apply_overrides(
        TrainConfig(),
        [
            f"output_dir={tmp_path / 'run'}",
            f"steps={steps}",
            "logging.every_steps=1",
            "logging.progress_bar=false",
            "logging.tensorboard=false",
            "optimizer.warmup_steps=2",
            "optimizer.lr=0.005",
            "checkpoint.every_steps=0",
        ],
    )


def make_model(seed: int = 0) -> SiglipModel:
    torch.manual_seed(seed)
    return SiglipModel("tiny-test-naflex").train()


def test_naflex_batches_become_naflex_images_with_the_batch_length(tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path / "shards")
    lengths = set()
    for batch in dataset:
        images, token_ids = batch_to_tensors(batch, torch.device("cpu"))
        assert isinstance(images, NaflexImages)
        assert images.patches.shape[:2] == images.patch_mask.shape
        assert images.spatial_shapes.dtype == torch.int64
        assert token_ids.shape == (6, 16)
        lengths.add(images.patches.shape[1])
    assert len(lengths) > 1  # the length changes from batch to batch


def test_naflex_training_lowers_the_loss_and_resumes_exactly(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    straight = make_model()
    Trainer(straight, make_dataset(shards), make_config(tmp_path / "straight", 16)).fit()
    losses = [r["loss"] for r in read_metrics(tmp_path / "straight" / "run" / "metrics.jsonl")]
    assert len(losses) == 16
    assert np.mean(losses[-4:]) < np.mean(losses[:4])

    config = make_config(tmp_path / "resumed", 16)
    first = Trainer(make_model(), make_dataset(shards), config).fit(max_steps=7)
    assert first.step == 7
    resumed_model = make_model(seed=9)  # everything must come from the checkpoint
    trainer = Trainer(resumed_model, make_dataset(shards), config)
    trainer.resume(first.checkpoint)  # type: ignore[arg-type]
    assert trainer.fit().step == 16
    for name, parameter in straight.named_parameters():
        torch.testing.assert_close(
            dict(resumed_model.named_parameters())[name], parameter, rtol=0, atol=0, msg=name
        )
