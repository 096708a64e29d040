"""Run exported towers with onnxruntime (install ``siglip-models[onnx]``; no torch needed).

Export with :func:`siglip_models.torch.export_onnx` (``siglip-models[torch,onnx]``).
"""

from siglip_models.onnx._runtime import OnnxTower

__all__ = [
    "OnnxTower",
]
