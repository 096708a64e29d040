"""siglip-eval on a real dataset from siglip-data with a tiny model from siglip-models.

A few hundred Fashion-MNIST test images (Debian package ``dataset-fashion-mnist``) are written as
shards by ``siglip_data.builders.build_fashion_mnist``; a random-weight ``tiny-test`` SigLIP is saved to
disk in the HF layout and evaluated through the CLI path (checkpoint + SentencePiece model), then
checked against an oracle computed directly from the model's own encoders. The Flax model loaded
from the same files must give the same predictions.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import siglip_data
import siglip_models.torch as siglip_models_torch
from siglip_eval import IMAGENET_TEMPLATES
from siglip_eval import evaluate_linear_probe
from siglip_eval import evaluate_zeroshot
from siglip_eval import fill_templates
from siglip_eval.datasets import built_dataset
from siglip_eval.flax import from_pretrained as flax_from_pretrained
from siglip_eval.torch import from_pretrained
from siglip_models import get_config

LIMIT = 160  # images per split


@pytest.fixture(scope="module")
def fashion(tmp_path_factory: pytest.TempPathFactory, debian_data):
    debian_data("fashion-mnist")
    root = tmp_path_factory.mktemp("fashion")
    info = siglip_data.builders.build_fashion_mnist(
        root / "data", limit=LIMIT, samples_per_shard=100
    )
    config = get_config("tiny-test")
    torch.manual_seed(0)
    siglip_models_torch.SiglipModel(config).save_pretrained(root / "checkpoint")
    templates = (*info.caption_templates, *IMAGENET_TEMPLATES)
    prompts = [p for name in info.caption_names for p in fill_templates(templates, name)]
    siglip_data.train_sentencepiece(prompts, root / "spiece.model", vocab_size=80)
    return root, info, config


def oracle_zero_shot(model, tokenizer, pixels: np.ndarray, names, templates) -> np.ndarray:
    """argmax of cosines, prompt embeddings averaged after normalisation, all in torch float64."""
    with torch.no_grad():
        images = model.encode_image(torch.from_numpy(pixels).permute(0, 3, 1, 2)).double()
        classes = []
        for name in names:
            ids = torch.from_numpy(tokenizer(fill_templates(templates, name))).long()
            prompts = torch.nn.functional.normalize(model.encode_text(ids).double(), dim=-1)
            classes.append(torch.nn.functional.normalize(prompts.mean(0), dim=0))
        scores = torch.nn.functional.normalize(images, dim=-1) @ torch.stack(classes).T
    return scores.argmax(dim=1).numpy()


def test_zero_shot_cli_on_fashion_mnist_matches_the_model_oracle(fashion, tmp_path) -> None:
    root, _info, config = fashion
    out = tmp_path / "report"
    status = subprocess.run(
        [
            sys.executable, "-m", "siglip_eval",
            "zeroshot",
            "--model", str(root / "checkpoint"),
            "--tokenizer", str(root / "spiece.model"),
            "--dataset", f"built:{root / 'data'}:test",
            "--templates", "dataset",
            "--out", str(out),
            "--no-progress",
            "--cache", str(tmp_path / "cache"),
        ],
        check=False,
    ).returncode  # fmt: skip
    assert status == 0
    record = json.loads((out / "results.json").read_text())
    assert record["num_images"] == LIMIT
    assert record["num_classes"] == 10
    assert sum(record["images_per_class"].values()) == LIMIT
    assert (out / "confusion_matrix.png").is_file()

    tokenizer = siglip_data.SentencePieceTokenizer(
        root / "spiece.model", length=config.text.max_length
    )
    encoder, model = from_pretrained(root / "checkpoint", tokenizer)
    dataset, templates = built_dataset(
        root / "data", split="test", image_size=config.vision.image_size
    )
    result = evaluate_zeroshot(encoder, dataset, templates=templates, progress=False)
    pixels = np.concatenate([batch.pixels for batch in dataset.batches(64)])
    expected = oracle_zero_shot(model, tokenizer, pixels, dataset.class_names, templates)
    assert result.predictions.tolist() == expected.tolist()
    assert result.metrics["top1"] == pytest.approx(float(np.mean(expected == result.labels)))
    assert record["metrics"]["top1"] == pytest.approx(result.metrics["top1"])
    labels = np.concatenate([batch.labels for batch in dataset.batches(64)])
    assert result.labels.tolist() == labels.tolist()


def test_linear_probe_on_random_features_beats_chance(fashion) -> None:
    root, _info, config = fashion
    tokenizer = siglip_data.SentencePieceTokenizer(
        root / "spiece.model", length=config.text.max_length
    )
    encoder, _ = from_pretrained(root / "checkpoint", tokenizer)
    train, _ = built_dataset(root / "data", split="train", image_size=config.vision.image_size)
    test, _ = built_dataset(root / "data", split="test", image_size=config.vision.image_size)
    result = evaluate_linear_probe(
        encoder, train, test, progress=False, refinements=0, max_iter=200
    )
    # Random ViT features of Fashion-MNIST are still far from chance (10%).
    assert result.metrics["top1"] > 0.35
    assert result.num_test == LIMIT


def test_flax_model_from_the_same_files_gives_the_same_predictions(fashion) -> None:
    root, _info, config = fashion
    tokenizer = siglip_data.SentencePieceTokenizer(
        root / "spiece.model", length=config.text.max_length
    )
    dataset, templates = built_dataset(
        root / "data", split="test", image_size=config.vision.image_size
    )
    torch_encoder, _ = from_pretrained(root / "checkpoint", tokenizer)
    flax_encoder, _ = flax_from_pretrained(root / "checkpoint", tokenizer)
    # One batch shape for images and one for prompts: each jitted encoder compiles once.
    options = {"templates": templates[:1], "batch_size": LIMIT, "text_batch_size": 10}
    torch_result = evaluate_zeroshot(torch_encoder, dataset, progress=False, **options)
    flax_result = evaluate_zeroshot(flax_encoder, dataset, progress=False, **options)
    agree = np.mean(torch_result.predictions == flax_result.predictions)
    assert agree >= 0.99  # float32 kernels differ; a near-tie may flip one image
    assert abs(torch_result.metrics["top1"] - flax_result.metrics["top1"]) <= 0.01
