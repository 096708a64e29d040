"""PyTorch model behaviour: loading errors, input checks, checkpointing, bf16, resolution."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from safetensors.torch import save_file

import siglip_models.torch
from siglip_models import CheckpointError
from siglip_models import get_config
from siglip_models.torch import SiglipModel


def _copy(directory: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(directory, target)
    return target


@pytest.fixture
def tiny_dir(hf_reference: Callable[[str], tuple[Path, Any]], tmp_path: Path) -> Path:
    return _copy(hf_reference("tiny-test")[0], tmp_path)


def _edit_weights(directory: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    state = load_file(str(directory / "model.safetensors"))
    edit(state)
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})


def test_missing_key_is_named(tiny_dir: Path) -> None:
    _edit_weights(tiny_dir, lambda s: s.pop("vision_model.head.probe"))
    with pytest.raises(CheckpointError, match=r"missing keys: vision_model\.head\.probe"):
        SiglipModel.from_pretrained(tiny_dir)


def test_unexpected_key_is_named(tiny_dir: Path) -> None:
    _edit_weights(tiny_dir, lambda s: s.update({"vision_model.extra.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"unexpected keys: vision_model\.extra\.weight"):
        SiglipModel.from_pretrained(tiny_dir)


def test_shape_mismatch_names_key_and_both_shapes(tiny_dir: Path) -> None:
    config = json.loads((tiny_dir / "config.json").read_text())
    config["vision_config"]["image_size"] = 48  # the weights hold a 4x4 grid, the config a 6x6
    (tiny_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        CheckpointError,
        match=r"vision_model\.embeddings\.position_embedding\.weight: config expects \(36, 32\), "
        r"checkpoint has \(16, 32\)",
    ):
        SiglipModel.from_pretrained(tiny_dir)


def test_pickle_only_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps(siglip_models.config_to_hf_dict(get_config("tiny-test")))
    )
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(FileNotFoundError, match="pickle"):
        SiglipModel.from_pretrained(tmp_path)


def test_missing_config_is_explained(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        SiglipModel.from_pretrained(tmp_path)


def test_sharded_checkpoint_loads(tiny_dir: Path, tmp_path: Path) -> None:
    state = load_file(str(tiny_dir / "model.safetensors"))
    keys = sorted(state)
    halves = {
        "model-00001-of-00002.safetensors": keys[::2],
        "model-00002-of-00002.safetensors": keys[1::2],
    }
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    shutil.copy(tiny_dir / "config.json", sharded / "config.json")
    weight_map = {}
    for file, names in halves.items():
        save_file({k: state[k] for k in names}, str(sharded / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(names, file))
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    a, b = SiglipModel.from_pretrained(sharded), SiglipModel.from_pretrained(tiny_dir)
    for key, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[key]), key


def test_inputs_are_checked() -> None:
    model = SiglipModel("tiny-test")
    with pytest.raises(ValueError, match=r"padded to the trained length 16"):
        model.encode_text(torch.ones(2, 10, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        model.encode_text(torch.ones(2, 16))
    with pytest.raises(ValueError, match=r"NCHW"):
        model.encode_image(torch.zeros(2, 32, 32, 3))
    with pytest.raises(ValueError, match=r"must be 32x32.*resize_position_embedding"):
        model.encode_image(torch.zeros(2, 3, 48, 48))
    with pytest.raises(TypeError, match="SiglipConfig"):
        SiglipModel(42)  # type: ignore[arg-type]


def test_from_scratch_init_uses_paper_scale_and_bias() -> None:
    model = SiglipModel("tiny-test")
    assert model.log_scale.item() == pytest.approx(math.log(10))
    assert model.bias.item() == -10.0
    assert isinstance(model.log_scale, torch.nn.Parameter)
    assert model.log_scale.requires_grad
    total = sum(parameter.numel() for parameter in model.parameters())
    assert total == get_config("tiny-test").num_parameters()


def test_logits_are_scale_times_cosine_plus_bias() -> None:
    torch.manual_seed(0)
    model = SiglipModel("tiny-test").eval()
    pixels = torch.rand(3, 3, 32, 32) * 2 - 1
    token_ids = torch.randint(0, 100, (2, 16))
    with torch.no_grad():
        out = model(pixels, token_ids)
        image = model.encode_image(pixels).double()
        text = model.encode_text(token_ids).double()
    cosine = (image / image.norm(dim=1, keepdim=True)) @ (text / text.norm(dim=1, keepdim=True)).T
    expected = 10.0 * cosine - 10.0
    torch.testing.assert_close(out.logits_per_image.double(), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.logits_per_text, out.logits_per_image.T)
    torch.testing.assert_close(out.image_emb.norm(dim=1), torch.ones(3))


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    model = SiglipModel("tiny-test").train()
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    token_ids = torch.randint(0, 100, (2, 16))

    def gradients() -> dict[str, torch.Tensor]:
        model.zero_grad()
        out = model(pixels, token_ids)
        labels = 2 * torch.eye(2) - 1
        loss = -torch.nn.functional.logsigmoid(labels * out.logits_per_image).sum() / 2
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = gradients()
    model.set_gradient_checkpointing(True)
    recomputed = gradients()
    assert plain.keys() == recomputed.keys()
    assert len(plain) == len(list(model.parameters()))
    for name, grad in plain.items():
        torch.testing.assert_close(recomputed[name], grad, atol=1e-6, rtol=1e-5, msg=name)


def test_bfloat16_inference_stays_close_to_float32() -> None:
    torch.manual_seed(0)
    model = SiglipModel("tiny-test").eval()
    pixels = torch.rand(4, 3, 32, 32) * 2 - 1
    token_ids = torch.randint(0, 100, (4, 16))
    with torch.no_grad():
        reference = model(pixels, token_ids)
        model.to_inference_dtype(torch.bfloat16)
        assert model.vision_model.encoder.layers[0].mlp.fc1.weight.dtype == torch.bfloat16
        assert model.vision_model.embeddings.patch_embedding.weight.dtype == torch.float32
        low = model(pixels, token_ids)
    assert low.image_emb.dtype == torch.float32
    cosine = (low.image_emb * reference.image_emb).sum(dim=1)
    assert cosine.min() > 0.99
    cosine = (low.text_emb * reference.text_emb).sum(dim=1)
    assert cosine.min() > 0.99


def test_resize_position_embedding_changes_grid_and_config() -> None:
    model = SiglipModel("tiny-test")
    before = model.vision_model.embeddings.position_embedding.weight.detach().clone()
    model.resize_position_embedding(64)
    after = model.vision_model.embeddings.position_embedding.weight
    assert after.shape == (64, 32)
    assert model.config.vision.image_size == 64
    # bilinear with aligned corners keeps the four corner embeddings exactly
    for old, new in ((0, 0), (3, 7), (12, 56), (15, 63)):
        torch.testing.assert_close(after[new], before[old], atol=1e-6, rtol=0)
    assert model.encode_image(torch.zeros(1, 3, 64, 64)).shape == (1, 32)


@pytest.mark.parametrize("shape", [(4, 4, 7, 7), (3, 3, 8, 5), (5, 5, 2, 3)])
def test_bicubic_equals_torch_interpolate(shape: tuple[int, int, int, int]) -> None:
    from siglip_models import resample_position_embedding

    rows, columns, new_rows, new_columns = shape
    grid = torch.randn(rows, columns, 6, dtype=torch.float64)
    expected = torch.nn.functional.interpolate(
        grid.permute(2, 0, 1)[None],
        size=(new_rows, new_columns),
        mode="bicubic",
        align_corners=False,
    )[0].permute(1, 2, 0)
    got = resample_position_embedding(
        grid.reshape(-1, 6).numpy(),
        (new_rows, new_columns),
        method="bicubic",
        source_grid=(rows, columns),
    )
    torch.testing.assert_close(torch.from_numpy(got), expected.reshape(-1, 6), atol=1e-12, rtol=0)


def test_bilinear_equals_torch_align_corners() -> None:
    from siglip_models import resample_position_embedding

    grid = torch.randn(5, 5, 3, dtype=torch.float64)
    expected = torch.nn.functional.interpolate(
        grid.permute(2, 0, 1)[None], size=(9, 3), mode="bilinear", align_corners=True
    )[0].permute(1, 2, 0)
    got = resample_position_embedding(grid.reshape(-1, 3).numpy(), (9, 3))
    torch.testing.assert_close(torch.from_numpy(got), expected.reshape(-1, 3), atol=1e-12, rtol=0)


def test_prepacked_weights_follow_in_place_updates() -> None:
    torch.manual_seed(0)
    model = SiglipModel("tiny-test").optimize_for_cpu_inference()
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    token_ids = torch.randint(0, 100, (2, 16))
    with torch.no_grad():
        model(pixels, token_ids)  # builds the packs
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    out = model.train()(pixels, token_ids)  # grad enabled: plain path
    out.logits_per_image.sum().backward()
    optimizer.step()  # in-place updates: every pack is now stale
    model.eval()
    with torch.no_grad():
        packed = model(pixels, token_ids)
        model.optimize_for_cpu_inference(False)
        plain = model(pixels, token_ids)
    torch.testing.assert_close(packed.logits_per_image, plain.logits_per_image, atol=1e-5, rtol=0)
    with pytest.raises(RuntimeError, match="float32"):
        SiglipModel("tiny-test").to(torch.float64).optimize_for_cpu_inference()


_ONEDNN_BF16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


@pytest.mark.skipif(not _ONEDNN_BF16, reason="this CPU has no oneDNN bfloat16 GEMMs")
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**16), batch=st.integers(1, 5))
def test_prepacked_bfloat16_is_as_close_to_float32_as_plain_bfloat16(seed: int, batch: int) -> None:
    # Oracle: the float32 model. The packed bfloat16 towers round once per fused GEMM where the
    # plain ones round per op, so they must not stray further from float32 than plain bfloat16.
    torch.manual_seed(seed)
    reference = SiglipModel("tiny-test").eval()
    plain = SiglipModel("tiny-test").eval()
    plain.load_state_dict(reference.state_dict())
    plain.to_inference_dtype(torch.bfloat16)
    packed = SiglipModel("tiny-test").eval()
    packed.load_state_dict(reference.state_dict())
    packed.to_inference_dtype(torch.bfloat16).optimize_for_cpu_inference()
    assert any(type(module).__name__ == "PackedMLP" for module in packed.modules())
    pixels = torch.rand(batch, 3, 32, 32) * 2 - 1
    token_ids = torch.randint(0, 100, (batch, 16))

    def unit(embeddings: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(embeddings.float(), dim=-1)

    with torch.inference_mode():
        for encode, inputs in (("encode_image", pixels), ("encode_text", token_ids)):
            exact = unit(getattr(reference, encode)(inputs))
            plain_error = (unit(getattr(plain, encode)(inputs)) - exact).abs().max().item()
            packed_error = (unit(getattr(packed, encode)(inputs)) - exact).abs().max().item()
            assert 0 < packed_error <= 2 * plain_error + 1e-3, (encode, packed_error, plain_error)
            assert packed_error < 3e-2, (encode, packed_error)


def test_prepacking_refuses_float16_and_mixed_dtypes_by_name() -> None:
    with pytest.raises(RuntimeError, match=r"float32 or bfloat16 .* torch.float16 on cpu"):
        SiglipModel("tiny-test").to(torch.float16).optimize_for_cpu_inference()
    model = SiglipModel("tiny-test")
    model.vision_model.encoder.layers[0].mlp.fc1.to(torch.bfloat16)
    with pytest.raises(RuntimeError, match="mixes"):
        model.optimize_for_cpu_inference()


def test_cpu_inference_swaps_modules_without_touching_parameters_and_swaps_back() -> None:
    from siglip_models.torch._layers import MLP
    from siglip_models.torch._layers import SelfAttention

    model = SiglipModel("tiny-test").eval()
    plain_types = {name: type(module) for name, module in model.named_modules()}
    parameters = dict(model.named_parameters())
    model.optimize_for_cpu_inference()
    packed_types = {name: type(module) for name, module in model.named_modules()}
    assert packed_types.keys() == plain_types.keys()
    swapped = {name for name in plain_types if packed_types[name] is not plain_types[name]}
    assert swapped == {name for name, kind in plain_types.items() if kind in (MLP, SelfAttention)}
    assert swapped  # every encoder block and the MAP head's MLP
    assert {name: id(p) for name, p in model.named_parameters()} == {
        name: id(p) for name, p in parameters.items()
    }
    model.optimize_for_cpu_inference(False)
    assert {name: type(module) for name, module in model.named_modules()} == plain_types


def test_save_pretrained_writes_through_the_atomic_helper_and_leaves_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import siglip_models._atomic

    synced: list[str] = []
    real_fsync = siglip_models._atomic._fsync_file

    def recording_fsync(path: Path) -> None:
        synced.append(Path(path).name)
        real_fsync(path)

    monkeypatch.setattr(siglip_models._atomic, "_fsync_file", recording_fsync)
    model = SiglipModel("tiny-test")
    model.save_pretrained(tmp_path / "out")
    arrays = {k: v.numpy() for k, v in model.hf_state_dict().items()}
    siglip_models.save_big_vision_npz(tmp_path / "out" / "bv.npz", arrays, model.config)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "bv.npz",
        "config.json",
        "model.safetensors",
    ]
    # Every file was fsynced under its temporary name before the rename.
    assert len(synced) == 3
    assert all(name.startswith(".") and name.endswith(".tmp") for name in synced)


def test_l2_normalize_maps_a_zero_row_to_zeros_with_finite_gradient_and_keeps_dtype() -> None:
    from siglip_models.torch._layers import l2_normalize

    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]], requires_grad=True)
    out = l2_normalize(x)
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.8], [0.0, 0.0]]))
    out.sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    for dtype in (torch.bfloat16, torch.float16, torch.float32, torch.float64):
        assert l2_normalize(torch.ones(2, 3, dtype=dtype)).dtype == dtype
    for dtype in (torch.int64, torch.bool):
        with pytest.raises(TypeError, match=r"l2_normalize: x must be a floating-point"):
            l2_normalize(torch.ones(2, 3, dtype=dtype))


def test_a_zero_embedding_gives_a_zero_normalised_row_and_bias_logits() -> None:
    torch.manual_seed(0)
    model = SiglipModel("tiny-test").eval()
    with torch.no_grad():  # every text embedding is exactly zero
        model.text_model.head.weight.zero_()
        model.text_model.head.bias.zero_()
        out = model(torch.rand(2, 3, 32, 32) * 2 - 1, torch.randint(0, 100, (3, 16)))
    assert torch.equal(out.text_emb, torch.zeros(3, 32))
    assert torch.equal(out.logits_per_image, torch.full((2, 3), -10.0))
