"""Dense features and localisation (what SigLIP 2's decoder and self-distillation claim to help).

``dense_linear_probe`` (a linear classifier on frozen patch tokens, scored per pixel: pixel
accuracy and mIoU, a ``DenseProbeResult``), ``patch_labels``, ``segmentation_metrics`` and
``referring_expression_accuracy`` (IoU >= 0.5). Numpy only; the decoder-side box generation is
``siglip_eval.torch.generate_boxes``. Scenes: ``siglip-data build emoji-scenes``. See
docs/siglip2-recipe.md.
"""

from siglip_eval._grounding import DenseProbeResult
from siglip_eval._grounding import dense_linear_probe
from siglip_eval._grounding import patch_labels
from siglip_eval._grounding import referring_expression_accuracy
from siglip_eval._grounding import segmentation_metrics

__all__ = [
    "DenseProbeResult",
    "dense_linear_probe",
    "patch_labels",
    "referring_expression_accuracy",
    "segmentation_metrics",
]
