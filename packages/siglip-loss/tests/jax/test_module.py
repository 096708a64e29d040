"""SigmoidLoss (Flax NNX, siglip_loss.jax.nnx) owns log_scale and bias and calls the functional
loss; siglip_loss.jax.SigmoidLoss is the same class."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax
import pytest
from flax import nnx

from siglip_loss.jax import l2_normalize
from siglip_loss.jax import sigmoid_loss
from siglip_loss.jax.nnx import SigmoidLoss
from siglip_loss.numpy import sigmoid_loss_and_grads


def test_defaults_are_the_papers_log_10_and_minus_10() -> None:
    module = SigmoidLoss()
    assert float(module.log_scale[...]) == pytest.approx(math.log(10.0))
    assert float(module.bias[...]) == -10.0
    assert float(module.scale) == pytest.approx(10.0)
    assert module.log_scale[...].shape == ()
    assert module.bias[...].dtype == jnp.float32
    assert sorted(nnx.to_pure_dict(nnx.state(module, nnx.Param))) == ["bias", "log_scale"]


def test_init_values_and_param_dtype_are_configurable() -> None:
    module = SigmoidLoss(log_scale_init=0.0, bias_init=-math.log(63), param_dtype=jnp.bfloat16)
    assert float(module.scale) == 1.0
    assert module.bias[...].dtype == jnp.bfloat16
    assert float(module.bias[...]) == pytest.approx(-math.log(63), rel=1e-2)


def test_call_equals_functional_loss_and_gradients_follow_the_chain_rule() -> None:
    image = l2_normalize(jax.random.normal(jax.random.key(0), (7, 5)))
    text = l2_normalize(jax.random.normal(jax.random.key(1), (7, 5)))
    module = SigmoidLoss(log_scale_init=1.5, bias_init=-2.0)
    loss, grads = nnx.value_and_grad(lambda m: m(image, text))(module)
    scale = math.exp(1.5)
    oracle = sigmoid_loss_and_grads(
        jax.device_get(image),
        jax.device_get(text),
        scale=float(jnp.exp(jnp.float32(1.5))),
        bias=-2.0,
    )
    assert float(loss) == pytest.approx(oracle.loss, rel=1e-5)
    assert float(loss) == pytest.approx(
        float(sigmoid_loss(image, text, scale=scale, bias=-2.0)), rel=1e-6
    )
    pure = nnx.to_pure_dict(grads)
    assert float(pure["log_scale"]) == pytest.approx(scale * oracle.grad_scale, rel=1e-4)
    assert float(pure["bias"]) == pytest.approx(oracle.grad_bias, rel=1e-4, abs=1e-6)


def test_jitted_optimizer_steps_move_the_bias_towards_balance() -> None:
    # At zero similarity with N = 8 and b = -10, d/db = 8 sigmoid(-10) - 1 < 0: SGD raises b.
    module = SigmoidLoss()
    optimizer = nnx.Optimizer(module, optax.sgd(0.1), wrt=nnx.Param)
    zeros = jnp.zeros((8, 4))

    @nnx.jit
    def step(module: SigmoidLoss, optimizer: nnx.Optimizer) -> jax.Array:
        loss, grads = nnx.value_and_grad(lambda m: m(zeros, zeros))(module)
        optimizer.update(module, grads)
        return loss

    step(module, optimizer)
    expected = -10.0 + 0.1 * (1 - 8 / (1 + math.exp(10)))
    assert float(module.bias[...]) == pytest.approx(expected, rel=1e-6)


def test_siglip_loss_jax_sigmoid_loss_is_the_nnx_module() -> None:
    import siglip_loss.jax

    assert siglip_loss.jax.SigmoidLoss is SigmoidLoss
    assert "SigmoidLoss" not in siglip_loss.jax.__all__  # listing it would import Flax


def test_a_log_scale_init_that_looks_like_a_scale_warns_with_the_scale_it_means() -> None:
    with pytest.warns(
        UserWarning, match=r"log_scale_init=10 means a scale t = exp\(10\) = 2.203e\+04"
    ):
        SigmoidLoss(log_scale_init=10)
