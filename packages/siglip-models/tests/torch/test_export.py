"""ONNX export: onnxruntime on CPU equals eager within 1e-5 (float32) for any batch size, and the
float16 export stays finite where a float16 LayerNorm overflows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from siglip_models.onnx import OnnxTower
from siglip_models.torch import ONNX_OPSET
from siglip_models.torch import SiglipModel
from siglip_models.torch import export_onnx


@pytest.fixture(scope="module")
def tiny_model(hf_reference: Callable[[str], tuple[Path, Any]]) -> SiglipModel:
    return SiglipModel.from_pretrained(hf_reference("tiny-test")[0])


@pytest.fixture(scope="module")
def exported(tiny_model: SiglipModel, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    # Each export takes seconds, so the module exports four towers in all: these two in float32
    # (the text tower with its weights in a separate file, as a > 2 GB tower must), and the two
    # float16 towers of ``exported_float16``.
    directory = tmp_path_factory.mktemp("onnx")
    return {
        "image": export_onnx(tiny_model, directory / "image.onnx", tower="image"),
        "text": export_onnx(
            tiny_model, directory / "text" / "text.onnx", tower="text", external_data=True
        ),
    }


def _session(path: Path) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_onnxruntime_image_tower_equals_eager_within_1e5_for_any_batch(
    tiny_model: SiglipModel, exported: dict[str, Path], batch: int
) -> None:
    pixels = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch)) * 2 - 1
    (image_emb,) = _session(exported["image"]).run(None, {"pixels": pixels.numpy()})
    with torch.inference_mode():
        eager = tiny_model.encode_image(pixels).numpy()
    assert image_emb.dtype == np.float32
    assert image_emb.shape == eager.shape
    np.testing.assert_allclose(image_emb, eager, atol=1e-5, rtol=0)


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_onnxruntime_text_tower_equals_eager_within_1e5_for_any_batch(
    tiny_model: SiglipModel, exported: dict[str, Path], batch: int
) -> None:
    token_ids = torch.randint(0, 100, (batch, 16), generator=torch.Generator().manual_seed(batch))
    (text_emb,) = _session(exported["text"]).run(None, {"token_ids": token_ids.numpy()})
    with torch.inference_mode():
        eager = tiny_model.encode_text(token_ids).numpy()
    np.testing.assert_allclose(text_emb, eager, atol=1e-5, rtol=0)


def test_graph_declares_opset_and_a_symbolic_batch_axis(exported: dict[str, Path]) -> None:
    for tower, path in exported.items():
        graph = onnx.load(str(path))
        assert {entry.domain: entry.version for entry in graph.opset_import}[""] == ONNX_OPSET
        (graph_input,) = graph.graph.input
        batch_axis = graph_input.type.tensor_type.shape.dim[0]
        assert batch_axis.dim_param, tower
        assert not batch_axis.HasField("dim_value"), tower


def test_onnx_tower_reads_the_metadata_and_checks_inputs(
    tiny_model: SiglipModel, exported: dict[str, Path]
) -> None:
    image = OnnxTower(exported["image"], threads=1)
    text = OnnxTower(exported["text"], threads=1)
    assert (image.tower, image.embed_dim, image.dtype) == ("image", 32, "float32")
    assert (text.tower, text.embed_dim) == ("text", 32)
    assert image.config == tiny_model.config
    token_ids = np.ones((2, 16), np.int32)  # any integer dtype; the graph takes int64
    with torch.inference_mode():
        eager = tiny_model.encode_text(torch.from_numpy(token_ids).long()).numpy()
    np.testing.assert_allclose(text(token_ids), eager, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="32x32"):
        image(np.zeros((1, 3, 48, 48), np.float32))
    with pytest.raises(ValueError, match="padded"):
        text(np.ones((2, 8), np.int64))


def test_export_writes_external_data_on_request(exported: dict[str, Path]) -> None:
    path = exported["text"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["text.onnx", "text.onnx.data"]
    graph = onnx.load(str(path), load_external_data=False).graph
    external = [t for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert external  # the weights live in text.onnx.data; onnxruntime reads them (tests above)


def test_export_rejects_bad_arguments(tiny_model: SiglipModel, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tower"):
        export_onnx(tiny_model, tmp_path / "x.onnx", tower="audio")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bfloat16"):
        export_onnx(tiny_model, tmp_path / "x.onnx", tower="text", dtype=torch.bfloat16)
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------ float16
def _naive_float16_layer_norm(tokens: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """LayerNorm written out in float16, as a runtime that keeps every op in half precision
    computes it: the squares of activations above ~256 exceed float16's 65504, the variance
    becomes inf and every output collapses to 0."""
    half = tokens.half()
    centred = half - half.mean(dim=-1, keepdim=True)
    variance = (centred * centred).mean(dim=-1, keepdim=True)
    return centred / torch.sqrt(variance + eps)


def _overflows_float16_layer_norm(tokens: torch.Tensor) -> bool:
    exact = torch.nn.functional.layer_norm(tokens.float(), tokens.shape[-1:], eps=1e-6)
    naive = _naive_float16_layer_norm(tokens).float()
    return bool((naive - exact).abs().max() > 0.5)


@pytest.fixture(scope="module")
def loud_model(tiny_model: SiglipModel) -> SiglipModel:
    """The tiny model with residual-stream activations of several hundred in both towers (large
    embeddings, as trained ViTs grow in a few channels)."""
    model = SiglipModel(tiny_model.config).eval()
    model.load_state_dict(tiny_model.state_dict())
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        width = model.config.vision.width
        model.vision_model.embeddings.patch_embedding.bias.copy_(
            torch.randn(width, generator=generator) * 600
        )
        model.text_model.embeddings.token_embedding.weight.mul_(1500)
    return model


@pytest.fixture(scope="module")
def exported_float16(
    loud_model: SiglipModel, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Both towers of ``loud_model`` exported in float16, and its state before the export."""
    directory = tmp_path_factory.mktemp("onnx-float16")
    before = {key: value.clone() for key, value in loud_model.state_dict().items()}
    paths = {
        tower: export_onnx(
            loud_model, directory / f"{tower}.onnx", tower=tower, dtype=torch.float16
        )
        for tower in ("image", "text")
    }
    return {"paths": paths, "before": before}


def test_float16_export_leaves_the_model_alone(
    loud_model: SiglipModel, exported_float16: dict[str, Any]
) -> None:
    before, after = exported_float16["before"], loud_model.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)
    assert all(value.dtype == torch.float32 for value in after.values())


def test_float16_export_stays_finite_where_a_float16_layer_norm_overflows(
    loud_model: SiglipModel, exported_float16: dict[str, Any]
) -> None:
    pixels = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    token_ids = torch.randint(0, 100, (4, 16), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        image_tokens = loud_model.vision_model.embeddings(pixels)
        text_tokens = loud_model.text_model.embeddings(token_ids)
        eager_image = loud_model.encode_image(pixels).numpy()
        eager_text = loud_model.encode_text(token_ids).numpy()
    # The inputs are adversarial: the first LayerNorm's input overflows a float16 LayerNorm.
    assert image_tokens.abs().max() < 65504
    assert text_tokens.abs().max() < 65504
    assert _overflows_float16_layer_norm(image_tokens)
    assert _overflows_float16_layer_norm(text_tokens)
    assert not _overflows_float16_layer_norm(image_tokens / 100)  # the check can tell

    image = OnnxTower(exported_float16["paths"]["image"], threads=1)
    text = OnnxTower(exported_float16["paths"]["text"], threads=1)
    assert image.dtype == text.dtype == "float16"
    for got, expected in ((image(pixels.numpy()), eager_image), (text(token_ids), eager_text)):
        assert np.isfinite(got).all()
        # float16 matmuls: about 3 significant digits of the float32 result.
        scale = np.abs(expected).max()
        np.testing.assert_allclose(got, expected, atol=5e-3 * scale, rtol=0)
        cosine = np.sum(got * expected, axis=1) / (
            np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1)
        )
        assert cosine.min() > 0.9999


def test_float16_graph_runs_every_layer_norm_in_float32_and_matmuls_in_float16(
    tiny_model: SiglipModel, exported_float16: dict[str, Any]
) -> None:
    path = exported_float16["paths"]["image"]
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    types = {value.name: value.type.tensor_type.elem_type for value in graph.value_info}
    types.update({value.name: value.type.tensor_type.elem_type for value in graph.input})
    types.update({tensor.name: tensor.data_type for tensor in graph.initializer})
    layer_norms = [node for node in graph.node if node.op_type == "LayerNormalization"]
    matmuls = [node for node in graph.node if node.op_type in ("MatMul", "Gemm")]
    depth = tiny_model.config.vision.depth
    assert len(layer_norms) == 2 * depth + 2  # two per block, the final one, the MAP head's
    assert {types[node.input[0]] for node in layer_norms} == {onnx.TensorProto.FLOAT}
    assert {types[node.input[1]] for node in matmuls} == {onnx.TensorProto.FLOAT16}
