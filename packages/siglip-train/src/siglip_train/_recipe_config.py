"""The SigLIP 2 recipe's flags: LocCa decoder, SILC + TIPS self-distillation, ACID curation."""

from __future__ import annotations

import dataclasses
from typing import Any

from siglip_train._config import ConfigError


@dataclasses.dataclass
class RecipeConfig:
    """What the recipe adds to the sigmoid loss; every component is off or on by a flag.

    ``L = L_sigmoid + locca_weight * (L_cap + L_aref + L_gcap)
    + size_factor * (silc_weight * L_silc + tips_weight * L_tips)`` (SILC/TIPS from
    ``distillation_start``); with ``acid`` each step trains on the most learnable
    ``acid_keep_fraction`` of a larger super-batch. See docs/siglip2-recipe.md.

    Attributes:
        locca: train the text decoder on the three LocCa tasks (Cap, ARef, GCap).
        locca_weight: weight of the summed decoder losses (SigLIP 2: 1, "equal weight").
        parallel_probability: probability that a Cap example uses parallel prediction (all
            decoder inputs masked, no causal mask); SigLIP 2: 0.5.
        decoder_length: tokens per decoder sequence (task prefix + target + EOS, padded).
        box_bins: box quantisation bins per axis (``siglip_data.grounding``).
        vocab_chunk_size: 0 computes the decoder loss from full ``[batch, length, vocab]``
            logits; ``n > 0`` uses ``chunked_token_cross_entropy`` over vocabulary chunks of
            ``n`` rows (SigLIP 2 chunks its 256k vocabulary), never holding all the logits.
        distillation: switch SILC + TIPS on at ``distillation_start``.
        distillation_start: fraction of ``steps`` at which distillation starts (SigLIP 2: 0.8).
        size_factor: multiplies the SILC and TIPS weights (SigLIP 2: 0.25 for B, 0.5 for L and
            g, 1.0 for So400m).
        silc_weight: SILC's weight before the size factor (SigLIP 2: 1).
        tips_weight: TIPS's weight before the size factor (SigLIP 2: 0.25).
        local_crops: local views per image for SILC (SigLIP 2: 8).
        local_crop_size: side in pixels of a local view (fewer patches; the position
            embedding is resized); 0 = half the image side.
        global_crop_scale: (min, max) area fraction of the global view.
        local_crop_scale: (min, max) area fraction of the local views.
        tips_mask_ratio: fraction of the global view's patch embeddings replaced by the mask
            token in the student (TIPS: 0.5).
        head_hidden: hidden width of the projection heads' MLP.
        head_bottleneck: width before the L2 normalisation and the prototype layer.
        prototypes: prototypes ``K`` (the softmax size) of each head.
        teacher_momentum: EMA momentum ``m`` of the teacher, fixed (SILC: it must not reach 1).
        student_temperature: ``tau_s`` (DINO: 0.1).
        teacher_temperature: ``tau_t`` (DINO: 0.04).
        center_momentum: momentum of the teacher centres (DINO: 0.9).
        distillation_lr_multiplier: lr of the new parameter group (heads, mask token) relative
            to the peak lr.
        acid: active data curation: train on the top ``acid_keep_fraction`` of each
            super-batch by learnability (learner loss - reference loss per example).
        acid_keep_fraction: kept fraction (SigLIP 2: 0.5 for B/16, 0.75 for B/32); the
            batches must hold ``batch_size / acid_keep_fraction`` examples.
    """

    locca: bool = True
    locca_weight: float = 1.0
    parallel_probability: float = 0.5
    decoder_length: int = 24
    box_bins: int = 100
    vocab_chunk_size: int = 0
    distillation: bool = False
    distillation_start: float = 0.8
    size_factor: float = 0.25
    silc_weight: float = 1.0
    tips_weight: float = 0.25
    local_crops: int = 4
    local_crop_size: int = 0
    global_crop_scale: tuple[float, float] = (0.4, 1.0)
    local_crop_scale: tuple[float, float] = (0.05, 0.4)
    tips_mask_ratio: float = 0.5
    head_hidden: int = 256
    head_bottleneck: int = 64
    prototypes: int = 256
    teacher_momentum: float = 0.99
    student_temperature: float = 0.1
    teacher_temperature: float = 0.04
    center_momentum: float = 0.9
    distillation_lr_multiplier: float = 1.0
    acid: bool = False
    acid_keep_fraction: float = 0.5

    def __post_init__(self) -> None:
        checks: list[tuple[str, bool, str]] = [
            ("locca_weight", self.locca_weight >= 0, ">= 0"),
            ("parallel_probability", 0 <= self.parallel_probability <= 1, "in [0, 1]"),
            ("decoder_length", self.decoder_length >= 4, ">= 4"),
            ("box_bins", self.box_bins >= 2, ">= 2"),
            ("vocab_chunk_size", self.vocab_chunk_size >= 0, ">= 0"),
            ("distillation_start", 0 <= self.distillation_start < 1, "in [0, 1)"),
            ("size_factor", self.size_factor >= 0, ">= 0"),
            ("silc_weight", self.silc_weight >= 0, ">= 0"),
            ("tips_weight", self.tips_weight >= 0, ">= 0"),
            ("local_crops", self.local_crops >= 1, ">= 1"),
            ("local_crop_size", self.local_crop_size >= 0, ">= 0"),
            ("tips_mask_ratio", 0 < self.tips_mask_ratio < 1, "in (0, 1)"),
            ("head_hidden", self.head_hidden >= 1, ">= 1"),
            ("head_bottleneck", self.head_bottleneck >= 1, ">= 1"),
            ("prototypes", self.prototypes >= 2, ">= 2"),
            ("teacher_momentum", 0 <= self.teacher_momentum < 1, "in [0, 1)"),
            ("student_temperature", self.student_temperature > 0, "> 0"),
            ("teacher_temperature", self.teacher_temperature > 0, "> 0"),
            ("center_momentum", 0 <= self.center_momentum < 1, "in [0, 1)"),
            ("distillation_lr_multiplier", self.distillation_lr_multiplier > 0, "> 0"),
            ("acid_keep_fraction", 0 < self.acid_keep_fraction <= 1, "in (0, 1]"),
        ]
        for scale_name in ("global_crop_scale", "local_crop_scale"):
            low, high = getattr(self, scale_name)
            checks.append((scale_name, 0 < low <= high <= 1, "0 < min <= max <= 1"))
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(
                    f"recipe.{name}: expected {expected}, got {getattr(self, name)!r}"
                )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RecipeConfig:
        """Build from a mapping (a YAML ``recipe:`` section); unknown keys are a ConfigError.

        Examples:
            >>> RecipeConfig.from_dict({"distillation": True, "size_factor": 0.5}).size_factor
            0.5
        """
        fields = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ConfigError(f"recipe: unknown field {unknown[0]!r}; known: {sorted(fields)}")
        converted = dict(values)
        for name in ("global_crop_scale", "local_crop_scale"):
            if name in converted:
                converted[name] = tuple(float(value) for value in converted[name])
        return cls(**converted)
