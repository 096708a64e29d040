"""ONNX export: onnxruntime on CPU equals eager within 1e-5 (float32) for any batch size (and, for
a NaFlex tower exported at one L, any aspect ratios), and the float16 export stays finite where a
float16 LayerNorm overflows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

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
    with pytest.raises(ValueError, match="max_num_patches applies to NaFlex image towers only"):
        export_onnx(tiny_model, tmp_path / "x.onnx", tower="image", max_num_patches=16)
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------- NaFlex
NAFLEX_LENGTH = 24


@pytest.fixture(scope="module")
def naflex_model(hf_reference: Callable[[str], tuple[Path, Any]]) -> SiglipModel:
    return SiglipModel.from_pretrained(hf_reference("tiny-test-naflex")[0])


@pytest.fixture(scope="module")
def loud_naflex_model(naflex_model: SiglipModel) -> SiglipModel:
    """``naflex_model`` with patch-embedding activations of several hundred (see ``loud_model``)."""
    model = SiglipModel(naflex_model.config).eval()
    model.load_state_dict(naflex_model.state_dict())
    with torch.no_grad():
        model.vision_model.embeddings.patch_embedding.bias.copy_(
            torch.randn(model.config.vision.width, generator=torch.Generator().manual_seed(7)) * 600
        )
    return model


@pytest.fixture(scope="module")
def exported_naflex(
    naflex_model: SiglipModel,
    loud_naflex_model: SiglipModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, OnnxTower]:
    directory = tmp_path_factory.mktemp("onnx-naflex")
    float32 = export_onnx(
        naflex_model, directory / "image.onnx", tower="image", max_num_patches=NAFLEX_LENGTH
    )
    float16 = export_onnx(
        loud_naflex_model,
        directory / "image-float16.onnx",
        tower="image",
        dtype=torch.float16,
        max_num_patches=NAFLEX_LENGTH,
    )
    return {"float32": OnnxTower(float32, threads=1), "float16": OnnxTower(float16, threads=1)}


# (rows, cols) grids that fit L = 24: shrinking and enlarging the 4x4 position grid, one row or
# one column of 24, a single patch.
_grids = st.integers(1, NAFLEX_LENGTH).flatmap(
    lambda rows: st.tuples(st.just(rows), st.integers(1, NAFLEX_LENGTH // rows))
)


@given(shapes=st.lists(_grids, min_size=1, max_size=6), seed=st.integers(0, 2**16))
def test_onnxruntime_naflex_tower_equals_eager_within_1e5_for_any_batch_and_grids(
    naflex_model: SiglipModel,
    exported_naflex: dict[str, OnnxTower],
    naflex_batch: Callable[..., tuple[Any, Any, Any]],
    shapes: list[tuple[int, int]],
    seed: int,
) -> None:
    patches, mask, spatial_shapes = naflex_batch(shapes, length=NAFLEX_LENGTH, seed=seed)
    got = exported_naflex["float32"](patches, mask, spatial_shapes.astype(np.int32))
    with torch.inference_mode():
        eager = naflex_model.encode_image_naflex(
            *(torch.from_numpy(array) for array in (patches, mask, spatial_shapes))
        ).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, eager, atol=1e-5, rtol=0)


def test_naflex_graph_has_no_resize_a_symbolic_batch_and_a_fixed_length(
    exported_naflex: dict[str, OnnxTower],
) -> None:
    tower = exported_naflex["float32"]
    assert (tower.tower, tower.max_num_patches, tower.embed_dim) == ("image", NAFLEX_LENGTH, 32)
    graph = onnx.load(tower.path).graph
    assert not {node.op_type for node in graph.node} & {"Resize", "Upsample"}
    inputs = {value.name: value.type.tensor_type for value in graph.input}
    assert list(inputs) == ["patches", "patch_mask", "spatial_shapes"]
    assert [inputs[name].elem_type for name in inputs] == [
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.BOOL,
        onnx.TensorProto.INT64,
    ]
    for name, tensor_type in inputs.items():
        batch_axis = tensor_type.shape.dim[0]
        assert batch_axis.dim_param, name
        assert not batch_axis.HasField("dim_value"), name
    assert inputs["patches"].shape.dim[1].dim_value == NAFLEX_LENGTH


def test_naflex_tower_checks_its_inputs(
    exported: dict[str, Path],
    exported_naflex: dict[str, OnnxTower],
    naflex_batch: Callable[..., tuple[Any, Any, Any]],
    naflex_model: SiglipModel,
    tmp_path: Path,
) -> None:
    tower = exported_naflex["float32"]
    patches, mask, shapes = naflex_batch([(2, 3), (4, 4)], length=NAFLEX_LENGTH, seed=0)
    with pytest.raises(ValueError, match="patch_mask, spatial_shapes"):
        tower(patches)
    with pytest.raises(ValueError, match="exported for L = 24"):
        tower(patches[:, :16], mask[:, :16], shapes)
    with pytest.raises(ValueError, match=r"spatial_shapes \[3, 5\] gives 15"):
        tower(patches, mask, np.array([[2, 3], [3, 5]]))
    wrong = mask.copy()
    wrong[1, 15] = False
    with pytest.raises(ValueError, match="patch_mask"):
        tower(patches, wrong, shapes)
    with pytest.raises(ValueError, match="max_num_patches=L"):
        export_onnx(naflex_model, tmp_path / "x.onnx", tower="image")
    with pytest.raises(ValueError, match="positive int"):
        export_onnx(naflex_model, tmp_path / "x.onnx", tower="image", max_num_patches=0)
    with pytest.raises(ValueError, match="fixed-resolution image tower"):
        OnnxTower(exported["image"], threads=1)(np.zeros((2, 3, 32, 32), np.float32), mask, shapes)
    assert not list(tmp_path.iterdir())


def test_naflex_float16_export_stays_finite_where_a_float16_layer_norm_overflows(
    loud_naflex_model: SiglipModel,
    exported_naflex: dict[str, OnnxTower],
    naflex_batch: Callable[..., tuple[Any, Any, Any]],
) -> None:
    patches, mask, shapes = naflex_batch([(2, 9), (4, 4), (1, 24)], length=NAFLEX_LENGTH, seed=3)
    inputs = [torch.from_numpy(array) for array in (patches, mask, shapes)]
    with torch.inference_mode():
        tokens = loud_naflex_model.vision_model.embeddings(inputs[0], inputs[2])
        eager = loud_naflex_model.encode_image_naflex(*inputs).numpy()
    assert tokens.abs().max() < 65504
    assert _overflows_float16_layer_norm(tokens)
    tower = exported_naflex["float16"]
    got = tower(patches, mask, shapes)
    assert tower.dtype == "float16"
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, eager, atol=5e-3 * np.abs(eager).max(), rtol=0)
    cosine = np.sum(got * eager, axis=1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(eager, axis=1)
    )
    assert cosine.min() > 0.9999


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
