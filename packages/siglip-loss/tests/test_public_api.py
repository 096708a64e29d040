"""Every public module's __all__ holds existing, public, sorted names; importing a module pulls in
no framework it does not need (the package and its numpy adapter none, the JAX adapter no Flax)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import siglip_loss

CORE_MODULES = ["siglip_loss", "siglip_loss.numpy", "siglip_loss.testing"]
BACKEND_MODULES = {
    "torch": ["siglip_loss.torch"],
    "jax": ["siglip_loss.jax", "siglip_loss.jax.nnx"],
}
# The frameworks each module may import (besides numpy and hypothesis).
ALLOWED_FRAMEWORKS = {
    "siglip_loss": set(),
    "siglip_loss.numpy": set(),
    "siglip_loss.testing": set(),
    "siglip_loss.torch": {"torch"},
    "siglip_loss.jax": {"jax"},
    "siglip_loss.jax.nnx": {"jax", "flax"},
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # The core modules in every session; a backend's modules in the session that installs it.
    if "module_name" in metafunc.fixturenames:
        backend = metafunc.config.getoption("backend")
        metafunc.parametrize("module_name", CORE_MODULES + BACKEND_MODULES.get(backend, []))


def test_version_is_the_one_in_pyproject() -> None:
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    version = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"]
    assert siglip_loss.__version__ == version


def test_all_lists_existing_public_names_in_sorted_order(module_name: str) -> None:
    module = importlib.import_module(module_name)
    names = list(module.__all__)
    assert names == sorted(names), f"{module_name}.__all__ is not sorted"
    assert len(set(names)) == len(names), f"{module_name}.__all__ has duplicates"
    for name in names:
        assert hasattr(module, name), f"{module_name}.{name}"
        assert not name.startswith("_") or name == "__version__", f"{module_name}.{name}"


def test_import_pulls_in_no_framework_it_does_not_need(module_name: str) -> None:
    unwanted = {"torch", "jax", "flax"} - ALLOWED_FRAMEWORKS[module_name]
    code = (
        "import sys\n"
        f"import {module_name}\n"
        f"loaded = sorted(m for m in {sorted(unwanted)!r} if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
