"""Weight-space interpolation of two checkpoints (WiSE-FT), to fine-tune without losing zero-shot."""

from __future__ import annotations

from collections.abc import Mapping

import torch


def interpolate_weights(
    zero_shot: Mapping[str, torch.Tensor],
    fine_tuned: Mapping[str, torch.Tensor],
    *,
    alpha: float,
) -> dict[str, torch.Tensor]:
    r"""WiSE-FT: the element-wise mix of a zero-shot and a fine-tuned state dict.

    .. math::
        \theta_\alpha = (1 - \alpha)\, \theta_\text{zero-shot} + \alpha\, \theta_\text{fine-tuned}

    ``alpha = 0`` gives the zero-shot model back, ``alpha = 1`` the fine-tuned one; intermediate
    values often keep most of the zero-shot robustness while gaining most of the fine-tuning
    (Wortsman et al. 2022, arXiv:2109.01903). Floating tensors are mixed in float32 and cast back;
    integer tensors (buffers such as position ids) must be equal and are copied.

    Args:
        zero_shot: ``model.state_dict()`` of the model before fine-tuning.
        fine_tuned: the state dict after fine-tuning (same names and shapes).
        alpha: mixing weight of the fine-tuned weights, in [0, 1].

    Returns:
        A new state dict (load it with ``model.load_state_dict``).

    Raises:
        ValueError: ``alpha`` outside [0, 1], different names, shapes, or differing integer tensors.

    Examples:
        >>> a, b = {"w": torch.zeros(2)}, {"w": torch.ones(2)}
        >>> interpolate_weights(a, b, alpha=0.25)["w"]
        tensor([0.2500, 0.2500])
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if set(zero_shot) != set(fine_tuned):
        only_zero = sorted(set(zero_shot) - set(fine_tuned))
        only_fine = sorted(set(fine_tuned) - set(zero_shot))
        raise ValueError(
            f"state dicts differ in names: only in zero_shot {only_zero[:5]}, "
            f"only in fine_tuned {only_fine[:5]}"
        )
    mixed = {}
    for name, start in zero_shot.items():
        end = fine_tuned[name]
        if start.shape != end.shape:
            raise ValueError(
                f"{name!r}: zero_shot shape {tuple(start.shape)} != fine_tuned {tuple(end.shape)}"
            )
        if not start.is_floating_point():
            if not torch.equal(start, end):
                raise ValueError(f"{name!r}: non-float tensors differ and cannot be interpolated")
            mixed[name] = start.clone()
            continue
        value = (1.0 - alpha) * start.float() + alpha * end.float()
        mixed[name] = value.to(start.dtype)
    return mixed
