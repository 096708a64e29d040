"""Grounding helpers for SigLIP 2's LocCa decoder tasks: boxes as quantised integer text.

``box_to_text`` / ``text_to_box`` (``"x0 y0 x1 y1"``, ``bins`` per axis, default
``DEFAULT_BOX_BINS``), ``check_box`` (a clear error for a box outside the canvas), ``box_iou``,
the task prefixes ``TASK_PREFIXES`` (``Cap:``, ``ARef:``, ``GCap:``) and ``locca_prompts``
(the three ``(prefix, target)`` pairs of one scene). The scenes themselves come from
``siglip_data.builders.build_emoji_scenes``. See docs/siglip2-recipe.md.
"""

from siglip_data._grounding import DEFAULT_BOX_BINS
from siglip_data._grounding import TASK_PREFIXES
from siglip_data._grounding import box_iou
from siglip_data._grounding import box_to_text
from siglip_data._grounding import check_box
from siglip_data._grounding import locca_prompts
from siglip_data._grounding import text_to_box

__all__ = [
    "DEFAULT_BOX_BINS",
    "TASK_PREFIXES",
    "box_iou",
    "box_to_text",
    "check_box",
    "locca_prompts",
    "text_to_box",
]
