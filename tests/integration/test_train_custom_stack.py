"""A user's own stack built only from the packages' public names, trained by siglip-train.

The image tower is the user's own small CNN; the text tower is siglip-models' SiglipModel text
encoder; the data are siglip-data shards read by its resumable torch loader with a SentencePiece
vocabulary trained on the captions; the loss is siglip-loss's sigmoid loss; siglip-eval scores the
result. The model must learn colour names (zero-shot far above chance), and an interrupted run
resumed through the loader's state must equal the uninterrupted run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import siglip_data
import siglip_data.torch as siglip_data_torch
import siglip_eval
import siglip_loss.torch as siglip_loss_torch
import siglip_models.torch as siglip_models_torch
import siglip_train

COLORS = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 40, 220),
    "yellow": (230, 220, 30),
    "black": (10, 10, 10),
    "white": (245, 245, 245),
    "purple": (140, 30, 160),
    "orange": (250, 140, 20),
}
TEMPLATES = ("a photo of a {} square", "a {} thing", "something {}")


class ColorCNN(torch.nn.Module):
    """The user's own image backbone."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 24, 3, padding=1),
            torch.nn.GELU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
        )
        self.projection = torch.nn.Linear(24, embed_dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.projection(self.features(pixels))


class UserTwoTower(torch.nn.Module):
    """Own CNN + SiglipModel's text tower, with the protocol's log_scale and bias."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.text_encoder = siglip_models_torch.SiglipModel("tiny-test")
        self.image_encoder = ColorCNN(embed_dim=self.text_encoder.config.text.embed_dim)
        self.log_scale = torch.nn.Parameter(torch.tensor(float(np.log(10.0))))
        self.bias = torch.nn.Parameter(torch.tensor(-5.0))

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(pixels)

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.text_encoder.encode_text(token_ids)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("custom-stack")
    rng = np.random.default_rng(0)
    names = list(COLORS)
    samples = []
    for index in range(128):
        color = names[index % len(names)]
        image = np.clip(np.array(COLORS[color]) + rng.normal(0, 12, (16, 16, 3)), 0, 255).astype(
            np.uint8
        )
        samples.append((image, TEMPLATES[index % 3].format(color), {"label": index % 8}))
    siglip_data.write_shards(samples, root / "shards", samples_per_shard=32)
    captions = [t.format(c) for t in TEMPLATES for c in names]
    model_file = siglip_data.train_sentencepiece(captions * 4, root / "colors.model", vocab_size=36)
    tokenizer = siglip_data.SentencePieceTokenizer(model_file, preset="siglip", length=16)
    return {"root": root, "tokenizer": tokenizer, "names": names}


def loader(stack: dict) -> object:
    dataset = siglip_data.ImageTextDataset(
        str(stack["root"] / "shards" / "shard-{00000..00003}.tar"),
        tokenizer=stack["tokenizer"],
        image_size=16,
        batch_size=16,
        shuffle_buffer=32,
        seed=3,
        drop_last=True,
    )
    return siglip_data_torch.ImageTextLoader(dataset)


def config(path: Path, steps: int) -> object:
    return siglip_train.apply_overrides(
        siglip_train.TrainConfig(),
        [
            f"output_dir={path}",
            f"steps={steps}",
            "optimizer.lr=0.01",
            "optimizer.warmup_steps=3",
            "logging.progress_bar=false",
            "logging.tensorboard=false",
            "checkpoint.every_steps=0",
        ],
    )


def test_custom_stack_learns_colour_names_zero_shot(stack: dict, tmp_path: Path) -> None:
    model = UserTwoTower()
    trainer = siglip_train.Trainer(
        model, loader(stack), config(tmp_path, 40), loss_fn=siglip_loss_torch.sigmoid_loss
    )
    result = trainer.fit()
    assert result.step == 40
    losses = [r["loss"] for r in siglip_train.read_metrics(tmp_path / "metrics.jsonl")]
    assert losses[-1] < 0.75 * losses[0]

    model.eval()
    rng = np.random.default_rng(1)
    labels = np.arange(64) % 8
    images = np.stack(
        [
            np.clip(
                np.array(COLORS[stack["names"][label]]) + rng.normal(0, 12, (16, 16, 3)), 0, 255
            )
            for label in labels
        ]
    )
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    prompts = stack["tokenizer"]([f"a {name} thing" for name in stack["names"]])
    with torch.no_grad():
        image_emb = model.encode_image(pixels).numpy().astype(np.float64)
        class_emb = model.encode_text(torch.from_numpy(prompts).long()).numpy().astype(np.float64)
    metrics = siglip_eval.zeroshot_metrics(image_emb, class_emb, labels)
    assert metrics["top1"] >= 0.5  # chance is 1/8


def test_custom_stack_resumes_through_the_loader_state(stack: dict, tmp_path: Path) -> None:
    straight = UserTwoTower()
    siglip_train.Trainer(straight, loader(stack), config(tmp_path / "a", 12)).fit()

    run = config(tmp_path / "b", 12)
    first = siglip_train.Trainer(UserTwoTower(), loader(stack), run).fit(max_steps=5)
    resumed = UserTwoTower()
    trainer = siglip_train.Trainer(resumed, loader(stack), run)
    trainer.resume(first.checkpoint)
    assert trainer.fit().step == 12
    for name, parameter in straight.named_parameters():
        torch.testing.assert_close(
            dict(resumed.named_parameters())[name], parameter, rtol=0, atol=0
        )
