"""The PyTorch adapter: NHWC numpy in, the model's own encoders, float32 numpy out."""

from __future__ import annotations

import numpy as np
import torch

import siglip_models.torch
from siglip_eval import evaluate_zeroshot
from siglip_eval._templates import ONE_TEMPLATE
from siglip_eval.datasets import classification_arrays
from siglip_eval.torch import torch_encoder
from siglip_eval.torch import transformers_encoder
from siglip_models import get_config


class Toy(torch.nn.Module):
    """encode_image = a linear map of the channel means; encode_text = an embedding lookup."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.image_proj = torch.nn.Linear(3, 4)
        self.token_table = torch.nn.Embedding(10, 4)
        self.seen_shape: tuple[int, ...] = ()

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        self.seen_shape = tuple(pixels.shape)
        return self.image_proj(pixels.mean(dim=(2, 3)))

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        assert ids.dtype == torch.long
        return self.token_table(ids).sum(dim=1)


def tokenize(texts: list[str]) -> np.ndarray:
    return np.asarray(
        [
            [len(word) % 10 for word in text.split()[:3]] + [0] * (3 - len(text.split()[:3]))
            for text in texts
        ],
        np.int32,
    )


def test_images_are_permuted_to_nchw_and_outputs_equal_the_model() -> None:
    model = Toy()
    encoder = torch_encoder(model, tokenize, name="toy")
    pixels = np.random.default_rng(0).uniform(-1, 1, size=(2, 5, 7, 3)).astype(np.float32)
    output = encoder.encode_images(pixels)
    assert model.seen_shape == (2, 3, 5, 7)
    with torch.no_grad():
        expected = model.encode_image(torch.from_numpy(pixels).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_array_equal(output, expected)
    assert output.dtype == np.float32
    texts = ["a photo of", "x"]
    with torch.no_grad():
        expected_text = model.encode_text(torch.from_numpy(tokenize(texts)).long()).numpy()
    np.testing.assert_array_equal(encoder.encode_texts(texts), expected_text)
    assert encoder.name == "toy"


def test_bfloat16_model_runs_and_returns_float32() -> None:
    model = Toy().to(torch.bfloat16)
    encoder = torch_encoder(model, tokenize)
    output = encoder.encode_images(np.zeros((1, 4, 4, 3), np.float32))
    assert output.dtype == np.float32


def test_siglip_models_tiny_model_end_to_end() -> None:
    config = get_config("tiny-test")
    torch.manual_seed(0)
    model = siglip_models.torch.SiglipModel(config)
    length = config.text.max_length

    def tokens(texts: list[str]) -> np.ndarray:
        ids = np.full((len(texts), length), config.text.pad_id, np.int32)
        for row, text in enumerate(texts):
            ids[row, : min(len(text), length - 1)] = [3 + ord(ch) % 90 for ch in text[: length - 1]]
        return ids

    encoder = torch_encoder(model, tokens)
    size = config.vision.image_size
    pixels = np.random.default_rng(1).uniform(-1, 1, size=(6, size, size, 3)).astype(np.float32)
    with torch.no_grad():
        image_emb = model.encode_image(torch.from_numpy(pixels).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(encoder.encode_images(pixels), image_emb, rtol=1e-6, atol=1e-6)
    dataset = classification_arrays(pixels, [0, 1, 2, 0, 1, 2], ["cat", "dog", "bird"])
    result = evaluate_zeroshot(encoder, dataset, templates=ONE_TEMPLATE, progress=False)
    # Oracle: cosines of the model's own embeddings, argmax per image.
    with torch.no_grad():
        class_emb = model.encode_text(
            torch.from_numpy(
                tokens(["a photo of a cat.", "a photo of a dog.", "a photo of a bird."])
            ).long()
        ).numpy()
    cos = (image_emb / np.linalg.norm(image_emb, axis=1, keepdims=True)) @ (
        class_emb / np.linalg.norm(class_emb, axis=1, keepdims=True)
    ).T
    assert result.predictions.tolist() == np.argmax(cos, axis=1).tolist()


def test_transformers_style_output_objects_are_unwrapped() -> None:
    class Output:
        def __init__(self, pooled: torch.Tensor) -> None:
            self.pooler_output = pooled

    class HFLike(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(()))

        def get_image_features(self, pixel_values: torch.Tensor) -> Output:
            return Output(pixel_values.mean(dim=(2, 3)) * self.weight)

        def get_text_features(self, input_ids: torch.Tensor) -> torch.Tensor:
            return input_ids.float()

    seen: dict[str, object] = {}

    def hf_tokenizer(texts, **kwargs):
        seen.update(kwargs)
        return {"input_ids": torch.ones(len(texts), kwargs["max_length"], dtype=torch.long)}

    encoder = transformers_encoder(HFLike(), hf_tokenizer, max_length=16)
    assert encoder.encode_images(np.ones((2, 4, 4, 3), np.float32)).tolist() == [[1.0] * 3] * 2
    assert encoder.encode_texts(["a", "b"]).shape == (2, 16)
    assert seen["padding"] == "max_length"
    assert seen["truncation"] is True


def test_each_call_runs_in_eval_mode_and_restores_training_mode() -> None:
    class WithBatchNorm(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm = torch.nn.BatchNorm1d(3)
            self.modes: list[bool] = []

        def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
            self.modes.append(self.training)
            return self.norm(pixels.mean(dim=(2, 3)))

        def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
            self.modes.append(self.training)
            return ids[:, :3].float() + 1.0

    model = WithBatchNorm().train()
    running_mean = model.norm.running_mean.clone()
    encoder = torch_encoder(model, tokenize)
    encoder.encode_images(np.random.default_rng(0).normal(size=(4, 2, 2, 3)).astype(np.float32))
    encoder.encode_texts(["a b c"])
    assert model.modes == [False, False]
    assert model.training  # back to training mode
    assert torch.equal(model.norm.running_mean, running_mean)  # statistics untouched
    model.eval()
    encoder.encode_texts(["a"])
    assert not model.training
