"""Weight decay hits weights only; the schedule is warmup + cosine; AdamW decay is decoupled."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from siglip_models.torch import SiglipModel
from siglip_train import decay_parameter_names
from siglip_train._common import warmup_cosine_multiplier
from siglip_train._optim import build_optimizer
from siglip_train._optim import build_parameter_groups


def test_decay_mask_on_a_siglip_model_is_exactly_the_kernels() -> None:
    model = SiglipModel("tiny-test")
    decay = decay_parameter_names(model)
    for name, parameter in model.named_parameters():
        is_kernel = parameter.ndim >= 2 and not any(
            marker in name for marker in ("position_embedding", "token_embedding", "probe")
        )
        assert (name in decay) == is_kernel, name
    assert "log_scale" not in decay
    assert "bias" not in decay
    assert not any("norm" in name or name.endswith(".bias") for name in decay)


@given(
    total=st.integers(1, 500),
    warmup=st.integers(0, 100),
    ratio=st.floats(0.0, 1.0),
    step=st.integers(0, 600),
)
def test_schedule_matches_the_closed_form(total: int, warmup: int, ratio: float, step: int) -> None:
    value = warmup_cosine_multiplier(
        step, total_steps=total, warmup_steps=warmup, min_lr_ratio=ratio
    )
    if step < warmup:
        expected = (step + 1) / warmup
    else:
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        expected = ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    assert value == pytest.approx(expected, abs=1e-12)
    assert -1e-12 <= value <= 1 + 1e-12


def test_weight_decay_is_decoupled_and_skips_norms_and_scalars() -> None:
    model = SiglipModel("tiny-test")
    groups = build_parameter_groups(model, lr=0.1, weight_decay=0.5)
    optimizer = build_optimizer(groups, betas=(0.9, 0.95), eps=1e-8)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)  # no gradient: only decay can move weights
    optimizer.step()
    decay = decay_parameter_names(model)
    for name, parameter in model.named_parameters():
        expected = before[name] * (1 - 0.1 * 0.5) if name in decay else before[name]
        torch.testing.assert_close(parameter.detach(), expected, rtol=0, atol=1e-7, msg=name)


def test_tower_multipliers_scale_each_group_lr() -> None:
    model = SiglipModel("tiny-test")
    image = {n for n, _ in model.named_parameters() if n.startswith("vision_model.")}
    text = {n for n, _ in model.named_parameters() if n.startswith("text_model.")}
    groups = build_parameter_groups(
        model,
        lr=1.0,
        weight_decay=0.1,
        image_parameter_names=image,
        text_parameter_names=text,
        image_lr_multiplier=0.1,
        text_lr_multiplier=2.0,
        logit_lr_multiplier=5.0,
    )
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    for name, parameter in model.named_parameters():
        expected = 0.1 if name in image else 2.0 if name in text else 5.0
        assert lr_of[id(parameter)] == expected, name
