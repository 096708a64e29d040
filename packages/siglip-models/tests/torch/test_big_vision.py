"""big_vision .npz checkpoints load to exactly the weights of the equivalent HF directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from siglip_models import CheckpointError
from siglip_models import get_config
from siglip_models import read_big_vision_npz
from siglip_models.torch import SiglipModel


def _to_big_vision(hf: dict[str, np.ndarray], heads: dict[str, int]) -> dict[str, np.ndarray]:
    """Write HF-layout arrays in big_vision's tree (test-side writer, from model-spec 5.3)."""
    flat: dict[str, np.ndarray] = {}

    def dense(prefix: str, hf_prefix: str) -> None:
        flat[f"{prefix}/kernel"] = hf[f"{hf_prefix}.weight"].T
        flat[f"{prefix}/bias"] = hf[f"{hf_prefix}.bias"]

    def norm(prefix: str, hf_prefix: str) -> None:
        flat[f"{prefix}/scale"] = hf[f"{hf_prefix}.weight"]
        flat[f"{prefix}/bias"] = hf[f"{hf_prefix}.bias"]

    def encoder(bv: str, hf_tower: str, num_heads: int) -> None:
        layer = 0
        while f"{hf_tower}.encoder.layers.{layer}.layer_norm1.weight" in hf:
            block, source = f"{bv}/encoderblock_{layer}", f"{hf_tower}.encoder.layers.{layer}"
            norm(f"{block}/LayerNorm_0", f"{source}.layer_norm1")
            norm(f"{block}/LayerNorm_1", f"{source}.layer_norm2")
            attention = f"{block}/MultiHeadDotProductAttention_0"
            for name, projection in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj")):
                weight = hf[f"{source}.self_attn.{projection}.weight"]
                width = weight.shape[1]
                flat[f"{attention}/{name}/kernel"] = weight.T.reshape(width, num_heads, -1)
                flat[f"{attention}/{name}/bias"] = hf[
                    f"{source}.self_attn.{projection}.bias"
                ].reshape(num_heads, -1)
            out = hf[f"{source}.self_attn.out_proj.weight"]
            flat[f"{attention}/out/kernel"] = out.T.reshape(num_heads, -1, out.shape[0])
            flat[f"{attention}/out/bias"] = hf[f"{source}.self_attn.out_proj.bias"]
            dense(f"{block}/MlpBlock_0/Dense_0", f"{source}.mlp.fc1")
            dense(f"{block}/MlpBlock_0/Dense_1", f"{source}.mlp.fc2")
            layer += 1

    flat["img/embedding/kernel"] = hf["vision_model.embeddings.patch_embedding.weight"].transpose(
        2, 3, 1, 0
    )
    flat["img/embedding/bias"] = hf["vision_model.embeddings.patch_embedding.bias"]
    flat["img/pos_embedding"] = hf["vision_model.embeddings.position_embedding.weight"][None]
    encoder("img/Transformer", "vision_model", heads["vision"])
    norm("img/Transformer/encoder_norm", "vision_model.post_layernorm")
    flat["img/MAPHead_0/probe"] = hf["vision_model.head.probe"]
    attention = "img/MAPHead_0/MultiHeadDotProductAttention_0"
    packed = hf["vision_model.head.attention.in_proj_weight"]
    packed_bias = hf["vision_model.head.attention.in_proj_bias"]
    width = packed.shape[1]
    for index, name in enumerate(("query", "key", "value")):
        rows = packed[index * width : (index + 1) * width]
        flat[f"{attention}/{name}/kernel"] = rows.T.reshape(width, heads["vision"], -1)
        flat[f"{attention}/{name}/bias"] = packed_bias[index * width : (index + 1) * width].reshape(
            heads["vision"], -1
        )
    out = hf["vision_model.head.attention.out_proj.weight"]
    flat[f"{attention}/out/kernel"] = out.T.reshape(heads["vision"], -1, width)
    flat[f"{attention}/out/bias"] = hf["vision_model.head.attention.out_proj.bias"]
    norm("img/MAPHead_0/LayerNorm_0", "vision_model.head.layernorm")
    dense("img/MAPHead_0/MlpBlock_0/Dense_0", "vision_model.head.mlp.fc1")
    dense("img/MAPHead_0/MlpBlock_0/Dense_1", "vision_model.head.mlp.fc2")
    flat["txt/Embed_0/embedding"] = hf["text_model.embeddings.token_embedding.weight"]
    flat["txt/pos_embedding"] = hf["text_model.embeddings.position_embedding.weight"][None]
    encoder("txt/Encoder_0", "text_model", heads["text"])
    norm("txt/Encoder_0/encoder_norm", "text_model.final_layer_norm")
    dense("txt/head", "text_model.head")
    flat["t"] = hf["logit_scale"]
    flat["b"] = hf["logit_bias"]
    return flat


def _stack(flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The scan layout: ``encoderblock/...`` with a leading depth axis."""
    stacked: dict[str, list[np.ndarray]] = {}
    out = {}
    for key, value in flat.items():
        for tower in ("img/Transformer", "txt/Encoder_0"):
            marker = f"{tower}/encoderblock_"
            if key.startswith(marker):
                layer, rest = key[len(marker) :].split("/", 1)
                stacked.setdefault(f"{tower}/encoderblock/{rest}", []).append((int(layer), value))
                break
        else:
            out[key] = value
    for key, items in stacked.items():
        out[key] = np.stack([value for _, value in sorted(items, key=lambda item: item[0])])
    return out


def _bfloat16_as_void(array: np.ndarray) -> np.ndarray:
    """How np.savez stores a bfloat16 array: its 2-byte payload as void (round to nearest even)."""
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16).view("V2")


def _bfloat16_round(array: np.ndarray) -> np.ndarray:
    bits = _bfloat16_as_void(array).view(np.uint16).astype(np.uint32) << 16
    return bits.view(np.float32)


def _hf_arrays(directory: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(directory / "model.safetensors"))


def _heads(name: str) -> dict[str, int]:
    config = get_config(name)
    return {"vision": config.vision.num_heads, "text": config.text.num_heads}


def _assert_same_weights(a: SiglipModel, b: SiglipModel) -> None:
    state_b = b.state_dict()
    for key, tensor in a.state_dict().items():
        torch.testing.assert_close(tensor, state_b[key], atol=0, rtol=0, msg=key)


@pytest.mark.parametrize("layout", ["per-layer", "stacked", "params-prefix-stacked"])
def test_npz_in_any_layout_equals_hf_directory(
    hf_reference: Callable[[str], tuple[Path, Any]], tmp_path: Path, layout: str
) -> None:
    directory, _ = hf_reference("tiny-test-text-head")
    flat = _to_big_vision(_hf_arrays(directory), _heads("tiny-test-text-head"))
    if "stacked" in layout:
        flat = _stack(flat)
    if layout.startswith("params"):
        flat = {f"params/{key}": value for key, value in flat.items()}
    np.savez(tmp_path / "ckpt.npz", **flat)
    from_npz = SiglipModel.from_pretrained(tmp_path / "ckpt.npz")
    _assert_same_weights(from_npz, SiglipModel.from_pretrained(directory))
    assert from_npz.config == get_config("tiny-test-text-head")  # recognised by its shapes


def test_bfloat16_void_npz_widens_exactly(
    hf_reference: Callable[[str], tuple[Path, Any]], tmp_path: Path
) -> None:
    directory, _ = hf_reference("tiny-test")
    hf = _hf_arrays(directory)
    flat = _to_big_vision(hf, _heads("tiny-test"))
    np.savez(tmp_path / "bf16.npz", **{k: _bfloat16_as_void(v) for k, v in flat.items()})
    config, arrays = read_big_vision_npz(tmp_path / "bf16.npz", get_config("tiny-test"))
    assert config == get_config("tiny-test")
    for key, value in hf.items():
        np.testing.assert_array_equal(arrays[key], _bfloat16_round(value), err_msg=key)


def test_registered_release_is_recognised_from_shapes(tmp_path: Path) -> None:
    # A B/16-224 npz at the registry shapes maps back to the registry entry (pad id and all).
    torch.manual_seed(0)
    shapes_only = get_config("tiny-test")
    model = SiglipModel(shapes_only)
    hf = {k: v.numpy() for k, v in model.hf_state_dict().items()}
    np.savez(tmp_path / "tiny.npz", **_to_big_vision(hf, _heads("tiny-test")))
    config, _ = read_big_vision_npz(tmp_path / "tiny.npz")
    assert config == shapes_only


def test_missing_text_head_loads_as_identity(
    hf_reference: Callable[[str], tuple[Path, Any]], tmp_path: Path
) -> None:
    directory, _ = hf_reference("tiny-test")
    flat = _to_big_vision(_hf_arrays(directory), _heads("tiny-test"))
    del flat["txt/head/kernel"], flat["txt/head/bias"]
    np.savez(tmp_path / "i18n.npz", **flat)
    model = SiglipModel.from_big_vision(tmp_path / "i18n.npz")
    head = model.text_model.head
    torch.testing.assert_close(head.weight, torch.eye(32), atol=0, rtol=0)
    torch.testing.assert_close(head.bias, torch.zeros(32), atol=0, rtol=0)


def test_legacy_encoder_position_embedding_is_added(
    hf_reference: Callable[[str], tuple[Path, Any]], tmp_path: Path
) -> None:
    directory, _ = hf_reference("tiny-test")
    hf = _hf_arrays(directory)
    flat = _to_big_vision(hf, _heads("tiny-test"))
    extra = np.full_like(flat["txt/pos_embedding"], 0.25)
    flat["txt/pos_embedding"] = flat["txt/pos_embedding"] - extra
    flat["txt/Encoder_0/pos_embedding"] = extra
    np.savez(tmp_path / "legacy.npz", **flat)
    _, arrays = read_big_vision_npz(tmp_path / "legacy.npz")
    np.testing.assert_allclose(
        arrays["text_model.embeddings.position_embedding.weight"],
        hf["text_model.embeddings.position_embedding.weight"],
        atol=1e-7,
    )


def test_npz_errors_name_the_problem(
    hf_reference: Callable[[str], tuple[Path, Any]], tmp_path: Path
) -> None:
    directory, _ = hf_reference("tiny-test")
    flat = _to_big_vision(_hf_arrays(directory), _heads("tiny-test"))
    missing = dict(flat)
    del missing["img/MAPHead_0/LayerNorm_0/scale"]
    np.savez(tmp_path / "missing.npz", **missing)
    with pytest.raises(
        CheckpointError, match=r"missing big_vision keys.*MAPHead_0/LayerNorm_0/scale"
    ):
        read_big_vision_npz(tmp_path / "missing.npz")
    np.savez(tmp_path / "extra.npz", **flat, **{"img/head/kernel": np.zeros((32, 10))})
    with pytest.raises(CheckpointError, match="unexpected big_vision keys: img/head/kernel"):
        read_big_vision_npz(tmp_path / "extra.npz")
    np.savez(tmp_path / "ok.npz", **flat)
    wrong = get_config("tiny-test").replace(text={"vocab_size": 200})
    with pytest.raises(
        CheckpointError,
        match=r"text_model.embeddings.token_embedding.weight: config expects \(200, 32\), "
        r"checkpoint has \(100, 32\)",
    ):
        SiglipModel.from_big_vision(tmp_path / "ok.npz", wrong)
    deeper = get_config("tiny-test").replace(vision={"depth": 3})
    with pytest.raises(CheckpointError, match="encoderblock_2"):
        SiglipModel.from_big_vision(tmp_path / "ok.npz", deeper)


@pytest.mark.parametrize("stacked", [False, True])
def test_save_big_vision_npz_is_the_inverse_of_reading(
    hf_reference: Callable[[str], tuple[Path, Any]], tmp_path: Path, stacked: bool
) -> None:
    directory, _ = hf_reference("tiny-test-text-head")
    hf = _hf_arrays(directory)
    config = get_config("tiny-test-text-head")
    from siglip_models import save_big_vision_npz

    save_big_vision_npz(tmp_path / "out.npz", hf, config, stacked=stacked)
    # Same file content as the independent test-side writer (model-spec 5.3).
    expected = _to_big_vision(hf, _heads("tiny-test-text-head"))
    if stacked:
        expected = _stack(expected)
    with np.load(tmp_path / "out.npz") as written:
        assert sorted(written.files) == sorted(f"params/{key}" for key in expected)
        for key, value in expected.items():
            np.testing.assert_array_equal(written[f"params/{key}"], value, err_msg=key)
    _, arrays = read_big_vision_npz(tmp_path / "out.npz", config)
    for key, value in hf.items():
        np.testing.assert_array_equal(arrays[key], value, err_msg=key)
