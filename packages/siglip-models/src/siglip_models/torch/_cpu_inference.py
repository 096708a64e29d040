"""Optional CPU inference on oneDNN pre-packed weights (float32 or bfloat16), as a transformation
of a model.

:func:`pack_for_cpu_inference` swaps every :class:`~siglip_models.torch._layers.MLP` and
:class:`~siglip_models.torch._layers.SelfAttention` of a model for a packed twin that shares the
same ``nn.Linear`` submodules (so parameters, their names and the state dict do not change);
:func:`unpack` swaps the plain modules back. The layers themselves stay plain: everything that
depends on oneDNN, and on the private torch ops it needs, lives in this module.

Under ``torch.no_grad()`` / ``inference_mode()`` a packed module runs its matmuls on weights
reordered once into oneDNN's blocked layout, with the bias and the tanh GELU fused into the GEMM.
With gradients enabled it runs the plain module, so training is unaffected.

bfloat16 layers (after ``to_inference_dtype(torch.bfloat16)``) pack to oneDNN's bfloat16 GEMMs:
float32 accumulation, one rounding of the GEMM + bias + GELU result instead of one per op.
float16 is refused: oneDNN's float16 CPU GEMMs need AVX512-FP16, which few CPUs have.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from siglip_models.torch._layers import MLP
from siglip_models.torch._layers import SelfAttention
from siglip_models.torch._layers import attend


def onednn_available() -> bool:
    """Whether this PyTorch build has oneDNN and its fused linear op."""
    return bool(torch.backends.mkldnn.is_available()) and hasattr(
        torch.ops.mkldnn, "_linear_pointwise"
    )


class _PackedWeight:
    """Linear weight(s) pre-packed into oneDNN's blocked layout.

    Packing once saves the per-call repacking of the GEMM and lets oneDNN fuse the bias and the
    tanh GELU into the matmul. Several sources (q, k, v) are packed as their row concatenation.
    The pack remembers the sources' version counters: an in-place update (an optimizer step,
    ``load_state_dict``) makes it stale and it is rebuilt on next use.
    """

    def __init__(self, *sources: torch.Tensor) -> None:
        self.sources = sources
        self.versions: tuple[int, ...] = ()
        self.packed = sources[0]

    def get(self) -> torch.Tensor:
        versions = tuple(source._version for source in self.sources)
        if versions != self.versions:
            with torch.no_grad():
                weight = torch.cat([source.detach() for source in self.sources])
                self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, None)
            self.versions = versions
        return self.packed


def _packed_linear(
    tokens: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor, *, gelu: bool = False
) -> torch.Tensor:
    if gelu:
        out: torch.Tensor = torch.ops.mkldnn._linear_pointwise(
            tokens, packed, bias, "gelu", [], "tanh"
        )
    else:
        out = torch.ops.mkldnn._linear_pointwise(tokens, packed, bias, "none", [], "")
    return out


class PackedMLP(nn.Module):
    """:class:`MLP` on packed weights, GELU fused into ``fc1``; the plain MLP with gradients."""

    def __init__(self, plain: MLP) -> None:
        super().__init__()
        self.fc1 = plain.fc1  # shared, not copied: same parameters, same state-dict keys
        self.fc2 = plain.fc2
        self.plain = [plain]  # a list, so that nn.Module does not register it a second time
        self.packs = (_PackedWeight(self.fc1.weight), _PackedWeight(self.fc2.weight))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            out: torch.Tensor = self.plain[0](tokens)
            return out
        fc1, fc2 = self.packs
        hidden = _packed_linear(tokens, fc1.get(), self.fc1.bias, gelu=True)
        return _packed_linear(hidden, fc2.get(), self.fc2.bias)


class PackedSelfAttention(nn.Module):
    """:class:`SelfAttention` on packed q/k/v and output weights; the plain one with gradients."""

    def __init__(self, plain: SelfAttention) -> None:
        super().__init__()
        self.num_heads = plain.num_heads
        self.q_proj = plain.q_proj
        self.k_proj = plain.k_proj
        self.v_proj = plain.v_proj
        self.out_proj = plain.out_proj
        self.plain = [plain]
        self.packs = (
            _PackedWeight(self.q_proj.weight, self.k_proj.weight, self.v_proj.weight),
            _PackedWeight(self.out_proj.weight),
        )

    def forward(self, tokens: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        if torch.is_grad_enabled():
            out: torch.Tensor = self.plain[0](tokens, key_mask)
            return out
        qkv_pack, out_pack = self.packs
        qkv_bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        qkv = _packed_linear(tokens, qkv_pack.get(), qkv_bias)
        attended = attend(qkv, self.num_heads, key_mask)
        return _packed_linear(attended, out_pack.get(), self.out_proj.bias)


def _children(model: nn.Module) -> Iterator[tuple[nn.Module, str, nn.Module]]:
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            yield parent, name, child


_PACKABLE = (torch.float32, torch.bfloat16)


def _check_packable(model: nn.Module) -> None:
    if not onednn_available():
        raise RuntimeError("optimize_for_cpu_inference: this PyTorch build has no oneDNN")
    for name, module in model.named_modules():
        if not isinstance(module, (MLP, SelfAttention, PackedMLP, PackedSelfAttention)):
            continue
        for parameter_name, parameter in module.named_parameters():
            if parameter.device.type != "cpu" or parameter.dtype not in _PACKABLE:
                raise RuntimeError(
                    "optimize_for_cpu_inference needs float32 or bfloat16 encoder parameters on "
                    f"the CPU, got {parameter.dtype} on {parameter.device} for "
                    f"{name}.{parameter_name}"
                )
        dtypes = {parameter.dtype for parameter in module.parameters()}
        if len(dtypes) > 1:
            raise RuntimeError(
                f"optimize_for_cpu_inference: {name} mixes {sorted(map(str, dtypes))}; cast the "
                "model to one dtype first (to_inference_dtype)"
            )
        if torch.bfloat16 in dtypes and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            raise RuntimeError(
                "optimize_for_cpu_inference: this CPU has no oneDNN bfloat16 support "
                "(AVX512-BF16 or AMX); run float32 or the plain bfloat16 model"
            )


def pack_for_cpu_inference(model: nn.Module) -> None:
    """Swap every plain MLP and self-attention of ``model`` for its packed twin, in place.

    Raises:
        RuntimeError: if this PyTorch build has no oneDNN, an encoder parameter is not float32
            or bfloat16 on the CPU (or one module mixes both), or the layers are bfloat16 on a
            CPU without oneDNN bfloat16 support.
    """
    _check_packable(model)
    unpack(model)  # packs of an earlier call may track replaced parameter objects
    for parent, name, child in _children(model):
        if isinstance(child, MLP):
            setattr(parent, name, PackedMLP(child))
        elif isinstance(child, SelfAttention):
            setattr(parent, name, PackedSelfAttention(child))


def unpack(model: nn.Module) -> None:
    """Put the plain modules back wherever :func:`pack_for_cpu_inference` swapped them."""
    for parent, name, child in _children(model):
        if isinstance(child, (PackedMLP, PackedSelfAttention)):
            setattr(parent, name, child.plain[0])
