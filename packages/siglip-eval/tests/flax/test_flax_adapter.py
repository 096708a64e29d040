"""The Flax NNX adapter: a tiny siglip-models Flax model, checked against the torch adapter on the
same weights and against the model's own encoders."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import siglip_models.torch
from siglip_eval import evaluate_zeroshot
from siglip_eval._templates import ONE_TEMPLATE
from siglip_eval.datasets import classification_arrays
from siglip_eval.flax import flax_encoder
from siglip_eval.flax import from_pretrained as flax_from_pretrained
from siglip_eval.torch import from_pretrained as torch_from_pretrained
from siglip_models import get_config

CONFIG = get_config("tiny-test")


def tokens(texts: list[str]) -> np.ndarray:
    """Stand-in for SentencePieceTokenizer: int32 ids padded to the trained length."""
    length = CONFIG.text.max_length
    ids = np.full((len(texts), length), CONFIG.text.pad_id, np.int32)
    for row, text in enumerate(texts):
        pieces = [3 + ord(ch) % 90 for ch in text[: length - 1]]
        ids[row, : len(pieces)] = pieces
    return ids


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny SigLIP saved in Hugging Face layout, read by both backends."""
    torch.manual_seed(0)
    model = siglip_models.torch.SiglipModel(CONFIG)
    with torch.no_grad():  # perturb LayerNorms and biases away from their 1 / 0 init
        for name, parameter in model.named_parameters():
            if name.endswith("bias") or "layernorm" in name or "norm" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
    path = tmp_path_factory.mktemp("tiny") / "checkpoint"
    model.save_pretrained(path)
    return path


def pixels(count: int, seed: int) -> np.ndarray:
    size = CONFIG.vision.image_size
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, size=(count, size, size, 3)).astype(np.float32)


def test_flax_encoder_equals_torch_encoder_on_the_same_weights(checkpoint: Path) -> None:
    flax_encoder_, flax_model = flax_from_pretrained(checkpoint, tokens)
    torch_encoder_, _ = torch_from_pretrained(checkpoint, tokens)
    assert flax_encoder_.name == str(checkpoint.resolve())
    images = pixels(5, seed=1)
    flax_images = flax_encoder_.encode_images(images)
    assert flax_images.dtype == np.float32
    assert flax_images.shape == (5, CONFIG.embed_dim)
    np.testing.assert_allclose(
        flax_images, torch_encoder_.encode_images(images), rtol=1e-4, atol=1e-5
    )
    texts = ["a photo of a cat.", "a dog", "x"]
    flax_texts = flax_encoder_.encode_texts(texts)
    np.testing.assert_allclose(flax_texts, torch_encoder_.encode_texts(texts), rtol=1e-4, atol=1e-5)
    # And the adapter is the model's own text encoder on int32 ids (jitted, so up to fusion).
    np.testing.assert_allclose(
        flax_texts,
        np.asarray(flax_model.encode_text(jnp.asarray(tokens(texts)))),
        rtol=1e-5,
        atol=1e-6,
    )


def test_jit_and_eager_agree_and_a_smaller_last_batch_compiles_again(checkpoint: Path) -> None:
    _, model = flax_from_pretrained(checkpoint, tokens)
    jitted = flax_encoder(model, tokens, name="tiny")
    eager = flax_encoder(model, tokens, jit=False)
    images = pixels(3, seed=2)
    for batch in (images, images[:1]):
        np.testing.assert_allclose(
            jitted.encode_images(batch), eager.encode_images(batch), rtol=1e-5, atol=1e-6
        )
    assert jitted.name == "tiny"
    assert eager.name == "SiglipModel"


def test_zero_shot_through_the_flax_adapter_predicts_the_models_argmax(checkpoint: Path) -> None:
    encoder, model = flax_from_pretrained(checkpoint, tokens)
    images = pixels(6, seed=3)
    names = ["cat", "dog", "bird"]
    dataset = classification_arrays(images, [0, 1, 2, 0, 1, 2], names)
    result = evaluate_zeroshot(encoder, dataset, templates=ONE_TEMPLATE, progress=False)
    # Oracle: cosines of the model's own embeddings, argmax per image.
    image_emb = np.asarray(model.encode_image(jnp.asarray(images)), np.float64)
    prompts = [template.replace("{c}", name) for name in names for template in ONE_TEMPLATE]
    class_emb = np.asarray(model.encode_text(jnp.asarray(tokens(prompts))), np.float64)
    cosines = (image_emb / np.linalg.norm(image_emb, axis=1, keepdims=True)) @ (
        class_emb / np.linalg.norm(class_emb, axis=1, keepdims=True)
    ).T
    assert result.predictions.tolist() == np.argmax(cosines, axis=1).tolist()


def test_the_fake_cpu_devices_and_strict_promotion_are_on() -> None:
    assert len(jax.devices("cpu")) == 8
    with pytest.raises(Exception, match="promot"):
        jnp.ones(2, jnp.float32) + jnp.ones(2, jnp.int32)


def test_naflex_batches_go_to_encode_image_naflex_compiled_once_per_length(tmp_path) -> None:
    import torch

    import siglip_models.flax
    import siglip_models.torch
    from siglip_data.naflex import collate_naflex
    from siglip_data.naflex import naflex_preprocess
    from siglip_eval.flax import flax_encoder

    torch.manual_seed(0)
    siglip_models.torch.SiglipModel("tiny-test-naflex").save_pretrained(tmp_path)
    flax_model = siglip_models.flax.SiglipModel.from_pretrained(tmp_path)
    torch_model = siglip_models.torch.SiglipModel.from_pretrained(tmp_path)
    encoder = flax_encoder(flax_model, lambda texts: np.zeros((len(texts), 16), np.int32))
    images = [np.full((12, 40, 3), 200, np.uint8), np.full((40, 4, 3), 30, np.uint8)]
    batch = collate_naflex([naflex_preprocess(i, patch_size=4, max_num_patches=12) for i in images])
    with torch.no_grad():
        expected = torch_model.encode_image_naflex(
            torch.from_numpy(batch.patches),
            torch.from_numpy(batch.patch_mask),
            torch.from_numpy(batch.spatial_shapes),
        ).numpy()
    np.testing.assert_allclose(encoder.encode_images(batch), expected, atol=1e-4)
