"""Test harness for siglip-loss: hypothesis profiles, the session's backend, JAX settings.

Hypothesis profiles, chosen by the environment variable ``HYPOTHESIS_PROFILE`` (default ``ci``):

- ``ci``: derandomized (the same examples on every run), no deadline (jit compiles), few examples;
- ``dev``: random, more examples, to hunt for counter-examples locally.

The backend: each nox session installs one framework and says which with ``--backend torch`` or
``--backend jax``. The tests under ``tests/backends/`` are written once and run against that
backend through the ``backend`` fixture; ``tests/torch/`` and ``tests/jax/`` hold what only one
framework has (DDP, ``torch.compile``, ``shard_map``, Flax NNX) and refuse to run under another
backend. The backend's framework is imported, never skipped: a broken install fails the session.
With ``--backend jax`` JAX runs with strict dtype promotion and 8 CPU devices (for the sharded
tests), set here before any device is used.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    max_examples=20,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BACKENDS = ("torch", "jax")
JAX_CPU_DEVICES = 8
TESTS = Path(__file__).resolve().parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="the framework this session tests: runs tests/backends against it, and tests/<it>",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("backend") == "jax":
        import jax

        jax.config.update("jax_numpy_dtype_promotion", "strict")
        jax.config.update("jax_num_cpu_devices", JAX_CPU_DEVICES)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of a framework's own directory need that framework as the session's backend."""
    chosen = config.getoption("backend")
    for item in items:
        path = Path(str(item.path)).resolve()
        if not path.is_relative_to(TESTS):
            continue
        directory = path.relative_to(TESTS).parts[0]
        if directory in BACKENDS and directory != chosen:
            raise pytest.UsageError(
                f"{item.nodeid}: run tests/{directory}/ with --backend {directory}"
            )
        if directory == "backends" and chosen is None:
            raise pytest.UsageError(
                f"{item.nodeid}: run tests/backends/ with --backend torch or --backend jax"
            )


class Backend:
    """What the backend-parametrised tests need from a framework, behind one interface."""

    name: str

    @property
    def module(self) -> Any:
        """``siglip_loss.torch`` or ``siglip_loss.jax``."""
        raise NotImplementedError

    @property
    def sigmoid_loss_module(self) -> Any:
        """The ``SigmoidLoss`` class (``nn.Module`` or Flax NNX)."""
        raise NotImplementedError

    def array(self, values: Any, dtype: str | None = None) -> Any:
        """A backend array of ``values`` (numpy array or nested lists), keeping its dtype unless
        ``dtype`` is given."""
        raise NotImplementedError

    def to_numpy(self, value: Any) -> np.ndarray:
        """A float64 numpy copy of a backend array."""
        raise NotImplementedError

    def dtype_name(self, value: Any) -> str:
        return str(value.dtype).removeprefix("torch.")

    def value_and_grad(self, function: Callable[..., Any], *args: Any) -> tuple[Any, tuple]:
        """The value of ``function(*args)`` and its gradients with respect to every argument."""
        raise NotImplementedError

    def stop_gradient(self, value: Any) -> Any:
        raise NotImplementedError

    def jit(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """``jax.jit(function)`` in JAX (one compilation per shape); ``function`` in torch."""
        return function

    def x64(self) -> contextlib.AbstractContextManager[None]:
        """Where float64 arrays exist: always in torch, inside this context in JAX."""
        return contextlib.nullcontext()

    def examples(self, **per_backend: int) -> settings:
        """Hypothesis settings with this backend's example count (JAX compiles every new shape,
        so its property tests draw fewer examples); the profile's count when not given."""
        count = per_backend.get(self.name)
        return settings() if count is None else settings(max_examples=count)


class TorchBackend(Backend):
    name = "torch"

    def __init__(self) -> None:
        import torch

        import siglip_loss.torch

        self._torch = torch
        self._module = siglip_loss.torch

    @property
    def module(self) -> Any:
        return self._module

    @property
    def sigmoid_loss_module(self) -> Any:
        return self._module.SigmoidLoss

    def array(self, values: Any, dtype: str | None = None) -> Any:
        tensor = self._torch.from_numpy(np.array(values))
        return tensor if dtype is None else tensor.to(getattr(self._torch, dtype))

    def to_numpy(self, value: Any) -> np.ndarray:
        return np.asarray(value.detach().to(self._torch.float64).numpy())

    def value_and_grad(self, function: Callable[..., Any], *args: Any) -> tuple[Any, tuple]:
        leaves = [arg.detach().clone().requires_grad_() for arg in args]
        value = function(*leaves)
        grads = self._torch.autograd.grad(value, leaves)
        return value.detach(), tuple(grads)

    def stop_gradient(self, value: Any) -> Any:
        return value.detach()


class JaxBackend(Backend):
    name = "jax"

    def __init__(self) -> None:
        import jax

        import siglip_loss.jax

        self._jax = jax
        self._module = siglip_loss.jax

    @property
    def module(self) -> Any:
        return self._module

    @property
    def sigmoid_loss_module(self) -> Any:
        from siglip_loss.jax.nnx import SigmoidLoss

        return SigmoidLoss

    def array(self, values: Any, dtype: str | None = None) -> Any:
        import jax.numpy as jnp

        # Without a dtype, JAX's own default: float64 numpy values become float32 unless x64 is on.
        return jnp.asarray(np.array(values), dtype=dtype)

    def to_numpy(self, value: Any) -> np.ndarray:
        return np.asarray(value).astype(np.float64)

    def dtype_name(self, value: Any) -> str:
        return np.dtype(value.dtype).name

    def value_and_grad(self, function: Callable[..., Any], *args: Any) -> tuple[Any, tuple]:
        argnums = tuple(range(len(args)))
        value, grads = self._jax.jit(self._jax.value_and_grad(function, argnums=argnums))(*args)
        return value, tuple(grads)

    def stop_gradient(self, value: Any) -> Any:
        return self._jax.lax.stop_gradient(value)

    def jit(self, function: Callable[..., Any]) -> Callable[..., Any]:
        return self._jax.jit(function)  # type: ignore[no-any-return]

    def x64(self) -> contextlib.AbstractContextManager[None]:
        return self._jax.enable_x64(True)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> Backend:
    """The framework this session tests (``--backend``), imported: a broken install fails."""
    name = request.config.getoption("backend")
    return TorchBackend() if name == "torch" else JaxBackend()


@pytest.fixture
def repo_root() -> Path:
    """The monorepo root (the docs live there)."""
    return TESTS.parents[2]
