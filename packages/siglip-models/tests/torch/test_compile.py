"""Compiled towers (torch.compile): eager's numbers, one graph for every batch size >= 2 (and,
for a NaFlex tower, per sequence length L).

Inductor generates and compiles C++ for each graph, so each tower compiles once here (tiny
config) and the three batch sizes reuse it; ``error_on_recompile`` turns any recompilation into a
failure.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch._dynamo

from siglip_models.torch import SiglipModel
from siglip_models.torch import compile_towers


@pytest.fixture
def tiny_model(hf_reference: Callable[[str], tuple[Path, Any]]) -> SiglipModel:
    # Random non-default weights (biases, LayerNorm affines): zero-initialised parts would hide a
    # compiled graph that dropped them.
    return SiglipModel.from_pretrained(hf_reference("tiny-test")[0])


@pytest.fixture
def no_recompiles() -> Any:
    """Any recompilation raises; dynamo's caches are reset before and after."""
    torch._dynamo.reset()
    try:
        yield
    finally:
        torch._dynamo.config.error_on_recompile = False
        torch._dynamo.reset()


def test_inductor_towers_equal_eager_within_1e5_over_three_batch_sizes_without_recompiling(
    tiny_model: SiglipModel, no_recompiles: None
) -> None:
    towers = compile_towers(tiny_model)
    generator = torch.Generator().manual_seed(0)
    for index, batch in enumerate((2, 3, 5)):
        pixels = torch.rand(batch, 3, 32, 32, generator=generator) * 2 - 1
        token_ids = torch.randint(0, 100, (batch, 16), generator=generator)
        compiled_image = towers.encode_image(pixels)
        compiled_text = towers.encode_text(token_ids)
        with torch.inference_mode():
            eager_image = tiny_model.encode_image(pixels)
            eager_text = tiny_model.encode_text(token_ids)
        torch.testing.assert_close(compiled_image, eager_image, atol=1e-5, rtol=0)
        torch.testing.assert_close(compiled_text, eager_text, atol=1e-5, rtol=0)
        if index == 0:  # both towers compiled: from here on, a recompile is an error
            torch._dynamo.config.error_on_recompile = True
    assert set(towers.compiled_functions) == {"image", "text"}


def test_batch_of_one_adds_one_graph_and_later_sizes_reuse_the_dynamic_one(
    tiny_model: SiglipModel, no_recompiles: None
) -> None:
    # aot_eager: dynamo's guards and graphs without code generation (fast); the graph count is
    # decided by dynamo, whatever the backend.
    graphs: list[torch.fx.GraphModule] = []

    def counting_backend(graph: torch.fx.GraphModule, inputs: list[Any]) -> Any:
        graphs.append(graph)
        return graph.forward

    towers = compile_towers(tiny_model, backend=counting_backend)  # type: ignore[arg-type]
    generator = torch.Generator().manual_seed(1)
    for batch in (1, 4, 1, 7, 2):
        pixels = torch.rand(batch, 3, 32, 32, generator=generator) * 2 - 1
        with torch.inference_mode():
            eager = tiny_model.encode_image(pixels)
        torch.testing.assert_close(towers.encode_image(pixels), eager, atol=1e-6, rtol=0)
    assert len(graphs) == 2  # batch 1, then one dynamic graph for 4, 7 and 2


@pytest.fixture
def tiny_naflex_model(hf_reference: Callable[[str], tuple[Path, Any]]) -> SiglipModel:
    return SiglipModel.from_pretrained(hf_reference("tiny-test-naflex")[0])


def test_inductor_naflex_tower_equals_eager_within_1e5_one_graph_per_length(
    tiny_naflex_model: SiglipModel,
    naflex_batch: Callable[..., tuple[Any, Any, Any]],
    no_recompiles: None,
) -> None:
    # Three batch sizes, each with other grids (aspect ratios shrinking and enlarging the 4x4
    # position grid): the resize is computed in the graph, so L = 24 compiles once.
    towers = compile_towers(tiny_naflex_model)
    batches = [
        [(2, 7), (4, 4)],
        [(1, 24), (3, 5), (6, 4)],
        [(24, 1), (1, 1), (5, 3), (2, 2), (4, 6)],
    ]
    for index, shapes in enumerate(batches):
        patches, mask, spatial_shapes = (
            torch.from_numpy(array) for array in naflex_batch(shapes, length=24, seed=index)
        )
        compiled = towers.encode_image_naflex(patches, mask, spatial_shapes.int())
        with torch.inference_mode():
            eager = tiny_naflex_model.encode_image_naflex(patches, mask, spatial_shapes)
        torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=0)
        if index == 0:
            torch._dynamo.config.error_on_recompile = True
    assert set(towers.compiled_functions) == {"image_naflex_24"}
    with pytest.raises(ValueError, match="spatial_shapes"):  # checked as eager checks it
        towers.encode_image_naflex(patches, mask, spatial_shapes[:, :1])
    with pytest.raises(ValueError, match="NaFlex model"):
        towers.encode_image(torch.zeros(2, 3, 32, 32))


def test_compiled_towers_check_inputs_like_eager(tiny_model: SiglipModel) -> None:
    towers = compile_towers(tiny_model, backend="eager")
    with pytest.raises(ValueError, match="32x32"):
        towers.encode_image(torch.zeros(2, 3, 48, 48))
    with pytest.raises(ValueError, match="padded"):
        towers.encode_text(torch.ones(2, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="fixed-resolution model"):
        towers.encode_image_naflex(
            torch.zeros(2, 4, 48), torch.ones(2, 4, dtype=torch.bool), torch.tensor([[2, 2]] * 2)
        )
    with pytest.raises(TypeError, match="SiglipModel"):
        compile_towers(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
