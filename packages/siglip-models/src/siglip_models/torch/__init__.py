"""The PyTorch models (install ``siglip-models[torch]``), their compiled towers and ONNX export."""

from siglip_models.torch._compile import CompiledTowers
from siglip_models.torch._compile import compile_towers
from siglip_models.torch._decoder import SiglipTextDecoder
from siglip_models.torch._export import ONNX_OPSET
from siglip_models.torch._export import export_onnx
from siglip_models.torch._model import SiglipModel
from siglip_models.torch._model import SiglipOutput

__all__ = [
    "ONNX_OPSET",
    "CompiledTowers",
    "SiglipModel",
    "SiglipOutput",
    "SiglipTextDecoder",
    "compile_towers",
    "export_onnx",
]
