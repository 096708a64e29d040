"""torch-only properties of the fused and chunked losses: gradients only where needed, no gradient
work without autograd, linear memory, clear errors for what the fused loss does not support,
double backward through the chunked loss, torch.compile. (Equality with the reference and the
oracle for any tiling and dtype: tests/backends/test_fused.py.)"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import siglip_loss.torch._fused as fused_module
from siglip_loss.torch import sigmoid_loss


class _CallRecorder:
    """Wraps ``block_sums`` and records which gradients each call was asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, bool, bool]] = []
        self.original = fused_module.block_sums

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((kwargs["need_image"], kwargs["need_text"], kwargs["need_scalars"]))
        return self.original(*args, **kwargs)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> _CallRecorder:
    spy = _CallRecorder()
    monkeypatch.setattr(fused_module, "block_sums", spy)
    return spy


@pytest.mark.parametrize("requires", list(itertools.product([False, True], repeat=4))[1:])
def test_gradients_flow_only_to_and_are_computed_only_for_inputs_that_require_them(
    requires: tuple[bool, bool, bool, bool], recorder: _CallRecorder
) -> None:
    generator = torch.Generator().manual_seed(1)
    inputs = [torch.randn(11, 5, generator=generator), torch.randn(11, 5, generator=generator)]
    inputs += [torch.tensor(3.0), torch.tensor(-2.0)]
    fused_inputs = [x.clone().requires_grad_(r) for x, r in zip(inputs, requires, strict=True)]
    dense_inputs = [x.clone().requires_grad_(r) for x, r in zip(inputs, requires, strict=True)]
    image, text, scale, bias = fused_inputs
    sigmoid_loss(
        image, text, scale=scale, bias=bias, implementation="fused", block_size=4
    ).backward()
    image, text, scale, bias = dense_inputs
    sigmoid_loss(image, text, scale=scale, bias=bias, implementation="reference").backward()
    assert recorder.calls == [(requires[0], requires[1], requires[2] or requires[3])]
    for fused_input, dense_input in zip(fused_inputs, dense_inputs, strict=True):
        if dense_input.grad is None:
            assert fused_input.grad is None
        else:
            assert fused_input.grad is not None
            torch.testing.assert_close(fused_input.grad, dense_input.grad, rtol=1e-5, atol=1e-6)


class _MatmulCounter(TorchDispatchMode):
    """Counts the matmuls (mm/addmm, in or out of place) that reach the kernels."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.addmm_):
            self.count += 1
        return func(*args, **(kwargs or {}))


def _count_matmuls(grad_mode: bool, requires_grad: bool) -> tuple[int, bool]:
    image = torch.randn(10, 4).requires_grad_(requires_grad)
    text = torch.randn(10, 4).requires_grad_(requires_grad)
    with torch.set_grad_enabled(grad_mode), _MatmulCounter() as counter:
        loss = sigmoid_loss(image, text, scale=2.0, bias=-1.0, implementation="fused", block_size=4)
    return counter.count, loss.requires_grad


def test_no_gradient_work_under_no_grad_or_when_nothing_requires_grad() -> None:
    tiles = 3 * 3  # ceil(10 / 4) ** 2
    assert _count_matmuls(grad_mode=False, requires_grad=True) == (tiles, False)
    assert _count_matmuls(grad_mode=True, requires_grad=False) == (tiles, False)
    # With gradients: the logits and the two gradient matmuls of every tile, all in forward.
    assert _count_matmuls(grad_mode=True, requires_grad=True) == (3 * tiles, True)


def test_autograd_keeps_nothing_larger_than_the_inputs() -> None:
    batch, dim = 64, 8
    saved: list[int] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor.numel())
        return tensor

    image = torch.randn(batch, dim, requires_grad=True)
    text = torch.randn(batch, dim, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = sigmoid_loss(image, text, scale=5.0, bias=-3.0, implementation="fused", block_size=8)
    assert max(saved) <= batch * dim
    stored = loss.grad_fn._raw_saved_tensors if loss.grad_fn is not None else ()
    assert len(stored) == 4  # the four inputs, only to anchor the double-backward error
    loss.backward()


def test_double_backward_raises_a_clear_error() -> None:
    image = torch.randn(6, 3, requires_grad=True)
    loss = sigmoid_loss(image, torch.randn(6, 3), scale=2.0, bias=-1.0, implementation="fused")
    (grad,) = torch.autograd.grad(loss, image, create_graph=True)
    with pytest.raises(RuntimeError, match=r"does not support double backward.*'chunked'"):
        grad.square().sum().backward()


def test_backward_twice_with_retain_graph_raises_a_clear_error() -> None:
    image = torch.randn(6, 3, requires_grad=True)
    loss = sigmoid_loss(image, torch.randn(6, 3), scale=2.0, bias=-1.0, implementation="fused")
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match=r"twice.*retain_graph=True"):
        loss.backward()


def test_chunked_supports_double_backward_like_the_reference() -> None:
    generator = torch.Generator().manual_seed(2)
    image = torch.randn(9, 4, generator=generator, dtype=torch.float64)
    text = torch.randn(9, 4, generator=generator, dtype=torch.float64)
    penalties = []
    for implementation, options in (("chunked", {"block_size": 4}), ("reference", {})):
        leaf = image.clone().requires_grad_()
        loss = sigmoid_loss(
            leaf, text, scale=3.0, bias=-1.0, implementation=implementation, **options
        )
        (grad,) = torch.autograd.grad(loss, leaf, create_graph=True)
        grad.square().sum().backward()
        assert leaf.grad is not None
        penalties.append(leaf.grad)
    torch.testing.assert_close(penalties[0], penalties[1])


def test_upstream_gradient_scales_every_fused_gradient() -> None:
    image = torch.randn(7, 3, requires_grad=True)
    bias = torch.tensor(-1.0, requires_grad=True)
    (
        2.5 * sigmoid_loss(image, image.detach(), scale=2.0, bias=bias, implementation="fused")
    ).backward()
    assert image.grad is not None
    assert bias.grad is not None
    expected_image, expected_bias = image.grad.clone(), bias.grad.clone()
    image.grad, bias.grad = None, None
    sigmoid_loss(image, image.detach(), scale=2.0, bias=bias, implementation="reference").backward()
    torch.testing.assert_close(expected_image, 2.5 * image.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(expected_bias, 2.5 * bias.grad, rtol=1e-5, atol=1e-6)


def test_auto_is_fused_when_a_gradient_is_needed_and_dense_otherwise(
    recorder: _CallRecorder,
) -> None:
    image = torch.randn(5, 3, requires_grad=True)
    sigmoid_loss(image, image.detach(), scale=2.0, bias=-1.0)
    assert recorder.calls == [(True, False, False)]
    with torch.no_grad():
        sigmoid_loss(image, image, scale=2.0, bias=-1.0)
    assert len(recorder.calls) == 1  # small batch without gradients: the dense reference


# Dynamo re-enters sigmoid_loss as its own frame after the break and probes the non-leaf input's
# .grad; it hides that warning from ordinary filters, but not from pytest's warnings-as-errors.
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
def test_torch_compile_graph_breaks_around_the_fused_loss_and_matches_eager() -> None:
    import torch._dynamo

    torch._dynamo.reset()
    graphs: list[torch.fx.GraphModule] = []

    def counting_backend(graph: torch.fx.GraphModule, example_inputs: Any) -> Any:
        graphs.append(graph)
        return graph.forward

    def step(image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        image = torch.nn.functional.normalize(image, dim=-1)
        return 2.0 * sigmoid_loss(image, text, scale=10.0, bias=-10.0, implementation="fused")

    image = torch.randn(12, 6, requires_grad=True)
    text = torch.randn(12, 6)
    compiled_image = image.detach().clone().requires_grad_()
    compiled = torch.compile(step, backend=counting_backend)(compiled_image, text)
    compiled.backward()
    # The fused loss runs eagerly between two compiled graphs (before and after the break).
    assert len(graphs) == 2
    assert not any("sigmoid" in str(node.target) for graph in graphs for node in graph.graph.nodes)
    eager = step(image, text)
    eager.backward()
    torch.testing.assert_close(compiled, eager)
    assert compiled_image.grad is not None
    assert image.grad is not None
    torch.testing.assert_close(compiled_image.grad, image.grad)


class _StorageSizes(TorchDispatchMode):
    """Records the storage (data pointer -> bytes) of every tensor an operator returns."""

    def __init__(self) -> None:
        super().__init__()
        self.storages: dict[int, int] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        result = func(*args, **(kwargs or {}))
        for value in result if isinstance(result, tuple | list) else (result,):
            if isinstance(value, torch.Tensor):
                storage = value.untyped_storage()
                self.storages[storage.data_ptr()] = storage.nbytes()
        return result


def _grouped_run(grouped: bool, weighting: str) -> tuple[int, list[int]]:
    """Matmuls and tile-sized storages of one fused forward + backward at N = M = 96, tile 32."""
    generator = torch.Generator().manual_seed(5)
    image = torch.randn(96, 4, generator=generator).requires_grad_()
    text = torch.randn(96, 4, generator=generator).requires_grad_()
    options: dict[str, Any] = {}
    if grouped:  # several captions per image, ids scattered over all tiles
        ids = torch.randint(0, 24, (96,), generator=generator)
        options = {"image_groups": ids, "text_groups": ids.roll(7), "positive_weighting": weighting}
    with _MatmulCounter() as counter, _StorageSizes() as sizes:
        loss = sigmoid_loss(
            image, text, scale=5.0, bias=-2.0, implementation="fused", block_size=32, **options
        )
        loss.backward()
    tile_bytes = 32 * 32 * 4
    return counter.count, sorted(size for size in sizes.storages.values() if size >= tile_bytes)


@pytest.mark.parametrize("weighting", ["uniform", "inverse_count"])
def test_groups_add_no_matmul_and_no_tile_or_batch_squared_buffer(weighting: str) -> None:
    # The positives of a tile are listed from sorted ids: O(N + M) ids and weights and one
    # tile's positive index, never an N x M or block x block mask next to the one tile buffer.
    plain_matmuls, plain_large = _grouped_run(False, weighting)
    grouped_matmuls, grouped_large = _grouped_run(True, weighting)
    assert grouped_matmuls == plain_matmuls == 3 * 3 * 3
    assert grouped_large == plain_large == [32 * 32 * 4], (plain_large, grouped_large)
