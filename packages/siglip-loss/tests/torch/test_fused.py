"""The torch fused and chunked losses: equal to each other and to the dense reference for any tiling,
gradients only where needed, no gradient work without autograd, linear memory, clear errors."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

import siglip_loss.torch._fused as fused_module
from siglip_loss.numpy import sigmoid_loss_and_grads
from siglip_loss.testing import biases
from siglip_loss.testing import scales
from siglip_loss.torch import sigmoid_loss

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Gradients come back in the input dtype: implementations may differ by a rounding of that dtype.
GRAD_RTOL = {torch.float32: 2e-5, torch.bfloat16: 1.6e-2, torch.float16: 2e-3}


def _loss_and_grads(
    implementation: str,
    image: torch.Tensor,
    text: torch.Tensor,
    scale: float,
    bias: float,
    block_size: int | None,
) -> list[torch.Tensor]:
    image = image.detach().clone().requires_grad_()
    text = text.detach().clone().requires_grad_()
    scale_t = torch.tensor(scale, requires_grad=True)
    bias_t = torch.tensor(bias, requires_grad=True)
    kwargs: dict[str, Any] = {"implementation": implementation}
    if implementation != "reference":
        kwargs["block_size"] = block_size
    loss = sigmoid_loss(image, text, scale=scale_t, bias=bias_t, **kwargs)
    loss.backward()
    grads = [image.grad, text.grad, scale_t.grad, bias_t.grad]
    assert all(grad is not None for grad in grads)
    return [loss.detach(), *(grad for grad in grads if grad is not None)]


def _assert_same(got: list[torch.Tensor], want: list[torch.Tensor], dtype: torch.dtype) -> None:
    names = ("loss", "image_emb", "text_emb", "scale", "bias")
    for name, got_value, want_value in zip(names, got, want, strict=True):
        assert got_value.dtype == want_value.dtype, name
        scale_of = want_value.float().abs().max().item() + 1e-6
        rtol = 2e-5 if name in ("loss", "scale", "bias") else GRAD_RTOL[dtype]
        torch.testing.assert_close(
            got_value.float(), want_value.float(), rtol=rtol, atol=rtol * scale_of, msg=name
        )


@given(
    batch=st.integers(1, 40),
    dim=st.integers(1, 12),
    block_size=st.integers(1, 48),
    dtype=st.sampled_from(sorted(DTYPES)),
    scale=scales(max_value=50.0),
    bias=biases(),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=25)
def test_fused_equals_chunked_equals_reference_for_any_block_size_and_dtype(
    batch: int, dim: int, block_size: int, dtype: str, scale: float, bias: float, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    image = torch.nn.functional.normalize(torch.randn(batch, dim, generator=generator), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(batch, dim, generator=generator), dim=-1)
    image, text = image.to(DTYPES[dtype]), text.to(DTYPES[dtype])
    reference = _loss_and_grads("reference", image, text, scale, bias, None)
    for implementation in ("fused", "chunked"):
        got = _loss_and_grads(implementation, image, text, scale, bias, block_size)
        _assert_same(got, reference, DTYPES[dtype])


def test_fused_equals_numpy_oracle_with_ragged_tiles() -> None:
    rng = np.random.default_rng(0)
    image, text = rng.normal(size=(37, 9)) / 3, rng.normal(size=(37, 9)) / 3
    oracle = sigmoid_loss_and_grads(image, text, scale=12.0, bias=-4.0)
    got = _loss_and_grads(
        "fused", torch.tensor(image), torch.tensor(text).float(), 12.0, -4.0, block_size=8
    )
    want = [
        oracle.loss,
        oracle.grad_image_emb,
        oracle.grad_text_emb,
        oracle.grad_scale,
        oracle.grad_bias,
    ]
    for got_value, want_value in zip(got, want, strict=True):
        np.testing.assert_allclose(got_value.double().numpy(), want_value, rtol=1e-5, atol=1e-6)


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
