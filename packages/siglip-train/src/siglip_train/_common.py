"""What both trainers share and neither framework needs: torch- and JAX-free.

``siglip_train.jax`` imports these without importing torch; the torch modules re-export them.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

# Parameters whose name matches never get weight decay, whatever their rank: position embeddings
# (learned tables that define geometry, not capacity) and the loss's scalars.
NO_DECAY_NAME_PATTERNS: tuple[str, ...] = (
    r"(^|\.)pos(ition)?(al)?_?emb",
    r"position_embedding",
    r"(^|\.)pos_embed",
    r"(^|\.)log_scale$",
    r"(^|\.)logit_scale$",
    r"(^|\.)bias$",
    r"(^|\.)logit_bias$",
    r"probe$",
)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, corrupt, or does not fit the model or run."""


@dataclasses.dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns.

    Attributes:
        step: optimizer steps completed (counting resumed ones).
        interrupted: stopped early by SIGTERM/SIGINT, ``max_seconds`` or ``fit(max_steps=...)``.
        train_seconds: wall time spent in training steps, over every resume of the run (no
            setup, eval, saving).
        last_loss: the global loss of the last step.
        checkpoint: the last checkpoint written, if any.
        eval: the last evaluation results, if any.
    """

    step: int
    interrupted: bool
    train_seconds: float
    last_loss: float
    checkpoint: Path | None
    eval: dict[str, float]


def warmup_cosine_multiplier(
    step: int, *, total_steps: int, warmup_steps: int, min_lr_ratio: float = 0.0
) -> float:
    r"""The lr multiplier at ``step``: linear warmup, then cosine decay to ``min_lr_ratio``.

    .. math::
        m(s) = \begin{cases} (s + 1) / w & s < w \\
        r + (1 - r) \tfrac{1}{2}\big(1 + \cos(\pi \tfrac{s - w}{T - w})\big) & s \ge w \end{cases}

    Args:
        step: 0-based index of the optimizer step about to be taken.
        total_steps: ``T``, the number of steps of the run.
        warmup_steps: ``w``; 0 disables warmup.
        min_lr_ratio: ``r``, the final multiplier.

    Returns:
        The multiplier in ``[0, 1]``.

    Examples:
        >>> warmup_cosine_multiplier(0, total_steps=100, warmup_steps=10)
        0.1
        >>> warmup_cosine_multiplier(100, total_steps=100, warmup_steps=10)
        0.0
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
