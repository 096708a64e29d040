"""SigmoidLoss (nn.Module) owns log_scale and bias and calls the functional loss."""

from __future__ import annotations

import math

import pytest
import torch

from siglip_loss.numpy import sigmoid_loss_and_grads
from siglip_loss.torch import SigmoidLoss
from siglip_loss.torch import l2_normalize
from siglip_loss.torch import sigmoid_loss


def test_defaults_are_the_papers_log_10_and_minus_10() -> None:
    module = SigmoidLoss()
    assert module.log_scale.item() == pytest.approx(math.log(10.0))
    assert module.bias.item() == -10.0
    assert module.scale.item() == pytest.approx(10.0)
    assert module.log_scale.shape == ()
    assert module.bias.shape == ()
    assert module.log_scale.dtype == torch.float32
    assert sorted(name for name, _ in module.named_parameters()) == ["bias", "log_scale"]
    assert sorted(module.state_dict()) == ["bias", "log_scale"]


def test_init_values_are_configurable_and_restored_by_reset_parameters() -> None:
    module = SigmoidLoss(log_scale_init=0.0, bias_init=-math.log(63))
    assert module.scale.item() == pytest.approx(1.0)
    assert module.bias.item() == pytest.approx(-math.log(63))
    with torch.no_grad():
        module.log_scale.add_(1.0)
        module.bias.zero_()
    module.reset_parameters()
    assert module.log_scale.item() == 0.0
    assert module.bias.item() == pytest.approx(-math.log(63))
    assert "bias_init=-4.14313" in repr(module)


def test_forward_equals_functional_loss_and_gradients_follow_the_chain_rule() -> None:
    generator = torch.Generator().manual_seed(0)
    image = l2_normalize(torch.randn(7, 5, generator=generator, dtype=torch.float64))
    text = l2_normalize(torch.randn(7, 5, generator=generator, dtype=torch.float64))
    module = SigmoidLoss(log_scale_init=1.5, bias_init=-2.0).double()
    loss = module(image, text)
    loss.backward()
    scale = math.exp(1.5)
    oracle = sigmoid_loss_and_grads(image.numpy(), text.numpy(), scale=scale, bias=-2.0)
    assert loss.item() == pytest.approx(oracle.loss, rel=1e-12)
    torch.testing.assert_close(
        loss, sigmoid_loss(image, text, scale=scale, bias=-2.0), rtol=1e-12, atol=0.0
    )
    # d L / d log_scale = t * dL/dt
    assert module.log_scale.grad is not None
    assert module.bias.grad is not None
    assert module.log_scale.grad.item() == pytest.approx(scale * oracle.grad_scale, rel=1e-9)
    assert module.bias.grad.item() == pytest.approx(oracle.grad_bias, rel=1e-9)


def test_one_optimizer_step_moves_the_bias_towards_balance() -> None:
    # At zero similarity and b = -10 with N = 8, d/db = 8 sigmoid(-10) - 1 < 0: SGD raises b.
    module = SigmoidLoss()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    zeros = torch.zeros(8, 4)
    module(zeros, zeros).backward()
    optimizer.step()
    assert module.bias.item() == pytest.approx(-10.0 + 0.1 * (1 - 8 / (1 + math.exp(10))), rel=1e-6)


def test_a_log_scale_init_that_looks_like_a_scale_warns_with_the_scale_it_means() -> None:
    with pytest.warns(
        UserWarning, match=r"log_scale_init=10 means a scale t = exp\(10\) = 2.203e\+04"
    ):
        SigmoidLoss(log_scale_init=10)
