"""Flax NNX model vs transformers (same HF files), vs our torch model, and its own behaviour."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from siglip_models import CheckpointError
from siglip_models import get_config
from siglip_models.flax import SiglipModel
from siglip_models.torch import SiglipModel as TorchSiglipModel

ATOL = 1e-4


def _inputs(name: str, images: int, texts: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    config = get_config(name)
    rng = np.random.default_rng(seed)
    size = config.vision.image_size
    pixels = rng.uniform(-1, 1, (images, size, size, 3)).astype(np.float32)
    token_ids = rng.integers(0, config.text.vocab_size, (texts, config.text.max_length))
    return pixels, token_ids.astype(np.int32)


def _assert_matches_transformers(
    ours: SiglipModel,
    reference: Any,
    pixels: np.ndarray,
    token_ids: np.ndarray,
    *,
    full_forward: bool = True,
) -> None:
    nchw = torch.from_numpy(pixels).permute(0, 3, 1, 2)
    ids = torch.from_numpy(token_ids).long()
    with torch.no_grad():  # one reference call carries both towers' outputs
        expected = reference(pixel_values=nchw, input_ids=ids)
    patches = ours.encode_image_patches(jnp.asarray(pixels))
    image = ours.vision_model.head(patches)  # what encode_image returns, without a second pass
    text = ours.encode_text(jnp.asarray(token_ids))
    image_emb = image / jnp.linalg.norm(image, axis=-1, keepdims=True)
    text_emb = text / jnp.linalg.norm(text, axis=-1, keepdims=True)
    pairs = [
        (patches, expected.vision_model_output.last_hidden_state),
        (image, expected.vision_model_output.pooler_output),
        (text, expected.text_model_output.pooler_output),
        (image_emb, expected.image_embeds),
        (text_emb, expected.text_embeds),
        (ours.logits(image_emb, text_emb), expected.logits_per_image),
    ]
    if full_forward:
        got = ours(jnp.asarray(pixels), jnp.asarray(token_ids))
        pairs += [
            (got.logits_per_image, expected.logits_per_image),
            (got.logits_per_text, expected.logits_per_text),
            (got.image_emb, expected.image_embeds),
        ]
    for ours_value, reference_value in pairs:
        np.testing.assert_allclose(
            np.asarray(ours_value), reference_value.numpy(), atol=ATOL, rtol=0
        )


_LOADED: dict[str, SiglipModel] = {}


def _ours(directory: Path) -> SiglipModel:
    if str(directory) not in _LOADED:
        _LOADED[str(directory)] = SiglipModel.from_pretrained(directory)
    return _LOADED[str(directory)]


# Fixed batch shapes: eager JAX compiles every primitive once per new shape (seconds on two
# cores), so the property ranges over the input values, not the batch sizes (torch covers those).
@pytest.mark.parametrize("name", ["tiny-test", "tiny-test-text-head"])
@settings(max_examples=4)
@given(seed=st.integers(0, 2**16))
def test_flax_equals_transformers_for_any_inputs(
    hf_reference: Callable[[str], tuple[Path, Any]], name: str, seed: int
) -> None:
    directory, reference = hf_reference(name)
    _assert_matches_transformers(_ours(directory), reference, *_inputs(name, 3, 3, seed))


@pytest.mark.slow
def test_flax_equals_transformers_at_base_patch16_224(
    hf_reference: Callable[[str], tuple[Path, Any]],
) -> None:
    directory, reference = hf_reference("siglip-base-patch16-224")
    ours = SiglipModel.from_pretrained(directory)
    pixels, token_ids = _inputs("siglip-base-patch16-224", 1, 1, 0)
    _assert_matches_transformers(ours, reference, pixels, token_ids, full_forward=False)


def test_flax_and_torch_read_and_write_the_same_files(
    hf_reference: Callable[[str], tuple[Path, Any]], tmp_path: Path
) -> None:
    directory, _ = hf_reference("tiny-test-text-head")
    flax_model = SiglipModel.from_pretrained(directory)
    torch_model = TorchSiglipModel.from_pretrained(directory)
    flax_state = flax_model.hf_state_dict()
    for key, tensor in torch_model.hf_state_dict().items():
        np.testing.assert_array_equal(np.asarray(flax_state[key]), tensor.numpy(), err_msg=key)
    flax_model.save_pretrained(tmp_path / "from-flax")
    reference, info = transformers.SiglipModel.from_pretrained(
        tmp_path / "from-flax", output_loading_info=True
    )
    assert not info["missing_keys"], info
    assert not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    _assert_matches_transformers(
        flax_model, reference.eval(), *_inputs("tiny-test-text-head", 3, 3, 3)
    )
    again = TorchSiglipModel.from_pretrained(tmp_path / "from-flax")
    for key, tensor in torch_model.state_dict().items():
        assert torch.equal(again.state_dict()[key], tensor), key


def test_random_init_round_trips_through_torch(tmp_path: Path) -> None:
    model = SiglipModel("tiny-test", rngs=nnx.Rngs(3))
    assert float(model.log_scale[...]) == pytest.approx(math.log(10))
    assert float(model.bias[...]) == -10.0
    model.save_pretrained(tmp_path)
    torch_model = TorchSiglipModel.from_pretrained(tmp_path)
    pixels, token_ids = _inputs("tiny-test", 3, 3, 0)
    with torch.no_grad():
        expected = torch_model(
            torch.from_numpy(pixels).permute(0, 3, 1, 2), torch.from_numpy(token_ids).long()
        )
    got = model(jnp.asarray(pixels), jnp.asarray(token_ids))
    np.testing.assert_allclose(got.logits_per_image, expected.logits_per_image.numpy(), atol=ATOL)
    total = sum(v.get_value().size for _, v in nnx.to_flat_state(nnx.state(model, nnx.Param)))
    assert total == get_config("tiny-test").num_parameters()


def test_big_vision_npz_loads_like_torch(
    hf_reference: Callable[[str], tuple[Path, Any]], tmp_path: Path
) -> None:
    from safetensors.numpy import load_file

    directory, _ = hf_reference("tiny-test")
    torch_model = TorchSiglipModel.from_pretrained(directory)
    # Round trip through our own big_vision reader: write the npz from the HF arrays.
    hf = load_file(str(directory / "model.safetensors"))
    flat = {"params/t": hf["logit_scale"], "params/b": hf["logit_bias"]}
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bv_writer", Path(__file__).parents[1] / "torch" / "test_big_vision.py"
    )
    assert spec is not None
    assert spec.loader is not None
    writer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(writer)
    flat = writer._stack(writer._to_big_vision(hf, {"vision": 4, "text": 4}))
    np.savez(tmp_path / "ckpt.npz", **{f"params/{k}": v for k, v in flat.items()})
    flax_model = SiglipModel.from_pretrained(tmp_path / "ckpt.npz")
    flax_state = flax_model.hf_state_dict()
    for key, tensor in torch_model.hf_state_dict().items():
        np.testing.assert_array_equal(np.asarray(flax_state[key]), tensor.numpy(), err_msg=key)


def test_loading_errors_name_the_key(
    hf_reference: Callable[[str], tuple[Path, Any]], tmp_path: Path
) -> None:
    import json
    import shutil

    directory, _ = hf_reference("tiny-test")
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy)
    config = json.loads((copy / "config.json").read_text())
    config["text_config"]["max_position_embeddings"] = 8
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        CheckpointError,
        match=r"text_model\.embeddings\.position_embedding\.weight: config expects \(8, 32\), "
        r"checkpoint has \(16, 32\)",
    ):
        SiglipModel.from_pretrained(copy)
    model = SiglipModel("tiny-test")
    other = SiglipModel("tiny-test", rngs=nnx.Rngs(1))
    other.load_hf_state_dict(model.hf_state_dict())
    other_state = other.hf_state_dict()
    for key, value in model.hf_state_dict().items():
        np.testing.assert_array_equal(np.asarray(other_state[key]), np.asarray(value), err_msg=key)
    arrays = model.hf_state_dict()
    del arrays["text_model.head.bias"]
    with pytest.raises(CheckpointError, match=r"missing keys: text_model\.head\.bias"):
        model.load_hf_state_dict(arrays)


def test_inputs_are_checked() -> None:
    model = SiglipModel("tiny-test")
    with pytest.raises(ValueError, match=r"NHWC"):
        model.encode_image(jnp.zeros((1, 3, 32, 32)))
    with pytest.raises(ValueError, match=r"padded to the trained length 16"):
        model.encode_text(jnp.ones((1, 12), jnp.int32))
    with pytest.raises(ValueError, match="integer"):
        model.encode_text(jnp.ones((1, 16)))


def test_jit_gives_the_eager_result() -> None:
    model = SiglipModel("tiny-test")
    pixels, token_ids = _inputs("tiny-test", 3, 3, 1)

    @nnx.jit
    def forward(module: SiglipModel, pixels: jax.Array, token_ids: jax.Array) -> Any:
        return module(pixels, token_ids)

    eager = model(jnp.asarray(pixels), jnp.asarray(token_ids))
    compiled = forward(model, jnp.asarray(pixels), jnp.asarray(token_ids))
    np.testing.assert_allclose(compiled.logits_per_image, eager.logits_per_image, atol=1e-5)


def _sigmoid_loss_grads(model: SiglipModel) -> dict[tuple[Any, ...], np.ndarray]:
    pixels, token_ids = _inputs("tiny-test", 3, 3, 2)

    def loss_fn(module: SiglipModel) -> jax.Array:
        logits = module(jnp.asarray(pixels), jnp.asarray(token_ids)).logits_per_image
        labels = 2 * jnp.eye(3) - 1
        return -jnp.sum(jax.nn.log_sigmoid(labels * logits)) / 3

    grads = nnx.grad(loss_fn)(model)
    return {path: np.asarray(v.get_value()) for path, v in nnx.to_flat_state(grads)}


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    model = SiglipModel("tiny-test")
    plain = _sigmoid_loss_grads(model)
    recomputed = _sigmoid_loss_grads(model.set_gradient_checkpointing(True))
    assert plain.keys() == recomputed.keys()
    for path, grad in plain.items():
        np.testing.assert_allclose(recomputed[path], grad, atol=1e-6, rtol=1e-5, err_msg=str(path))


def test_gradients_equal_torch_gradients(tmp_path: Path) -> None:
    model = SiglipModel("tiny-test", rngs=nnx.Rngs(7))
    model.save_pretrained(tmp_path)
    torch_model = TorchSiglipModel.from_pretrained(tmp_path).train()
    pixels, token_ids = _inputs("tiny-test", 3, 3, 2)
    out = torch_model(
        torch.from_numpy(pixels).permute(0, 3, 1, 2), torch.from_numpy(token_ids).long()
    )
    labels = 2 * torch.eye(3) - 1
    (-torch.nn.functional.logsigmoid(labels * out.logits_per_image).sum() / 3).backward()
    grads = _sigmoid_loss_grads(model)
    probe = grads[("vision_model", "head", "probe")]
    np.testing.assert_allclose(probe, torch_model.vision_model.head.probe.grad.numpy(), atol=1e-5)
    fc1 = grads[("text_model", "encoder", "layers", 0, "mlp", "fc1", "kernel")]
    torch_fc1 = torch_model.text_model.encoder.layers[0].mlp.fc1.weight.grad.numpy().T
    np.testing.assert_allclose(fc1, torch_fc1, atol=1e-5)
    np.testing.assert_allclose(grads[("bias",)], torch_model.bias.grad.numpy(), atol=1e-5)


def test_bfloat16_inference_stays_close_to_float32() -> None:
    model = SiglipModel("tiny-test")
    pixels, token_ids = _inputs("tiny-test", 3, 3, 5)
    reference = model(jnp.asarray(pixels), jnp.asarray(token_ids))
    model.to_inference_dtype(jnp.bfloat16)
    assert model.vision_model.encoder.layers[0].mlp.fc1.kernel[...].dtype == jnp.bfloat16
    assert model.vision_model.embeddings.patch_embedding.kernel[...].dtype == jnp.float32
    # nnx.LayerNorm computes its statistics with promote_types(bfloat16, float32), which the
    # suite's strict promotion rejects; the mix is Flax's own and deliberate.
    with jax.numpy_dtype_promotion("standard"):
        low = model(jnp.asarray(pixels), jnp.asarray(token_ids))
    assert low.image_emb.dtype == jnp.float32
    assert float(jnp.min(jnp.sum(low.image_emb * reference.image_emb, axis=1))) > 0.99
    assert float(jnp.min(jnp.sum(low.text_emb * reference.text_emb, axis=1))) > 0.99


def test_resized_resolution_matches_transformers_bicubic(
    hf_reference: Callable[[str], tuple[Path, Any]],
) -> None:
    directory, reference = hf_reference("tiny-test")
    ours = SiglipModel.from_pretrained(directory, image_size=48, resize_method="bicubic")
    pixels = np.random.default_rng(0).uniform(-1, 1, (3, 48, 48, 3)).astype(np.float32)
    with torch.no_grad():
        expected = reference.vision_model(
            pixel_values=torch.from_numpy(pixels).permute(0, 3, 1, 2), interpolate_pos_encoding=True
        ).pooler_output
    np.testing.assert_allclose(ours.encode_image(jnp.asarray(pixels)), expected.numpy(), atol=ATOL)
    assert ours.config.vision.image_size == 48


def test_l2_normalize_maps_a_zero_row_to_zeros_with_finite_gradient_and_keeps_dtype() -> None:
    from siglip_models.flax._model import l2_normalize

    x = jnp.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(l2_normalize(x), [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)
    gradient = jax.grad(lambda rows: jnp.sum(l2_normalize(rows)))(x)
    assert bool(jnp.all(jnp.isfinite(gradient)))
    for dtype in (jnp.bfloat16, jnp.float16, jnp.float32):
        assert l2_normalize(jnp.ones((2, 3), dtype)).dtype == dtype
    for dtype in (jnp.int32, jnp.bool_):
        with pytest.raises(TypeError, match=r"l2_normalize: x must be a floating-point"):
            l2_normalize(jnp.ones((2, 3), dtype))


def test_a_zero_embedding_gives_a_zero_normalised_row_and_bias_logits() -> None:
    model = SiglipModel("tiny-test")
    model.text_model.head.kernel[...] = jnp.zeros_like(model.text_model.head.kernel[...])
    model.text_model.head.bias[...] = jnp.zeros_like(model.text_model.head.bias[...])  # type: ignore[index]
    pixels, token_ids = _inputs("tiny-test", 2, 3, 0)
    out = model(jnp.asarray(pixels), jnp.asarray(token_ids))
    np.testing.assert_array_equal(out.text_emb, np.zeros((3, 32), np.float32))
    np.testing.assert_array_equal(out.logits_per_image, np.full((2, 3), -10.0, np.float32))
