"""Every public name exists; importing the package or its numpy adapter pulls in no framework."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import siglip_loss


def test_version_is_a_string() -> None:
    assert isinstance(siglip_loss.__version__, str)


@pytest.mark.parametrize("module_name", ["siglip_loss", "siglip_loss.numpy", "siglip_loss.testing"])
def test_every_name_in_all_exists(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name in module.__all__:
        assert hasattr(module, name), f"{module_name}.{name}"


@pytest.mark.parametrize("module_name", ["siglip_loss", "siglip_loss.numpy", "siglip_loss.testing"])
def test_import_does_not_import_torch_or_jax(module_name: str) -> None:
    code = (
        "import sys\n"
        f"import {module_name}\n"
        "loaded = sorted(m for m in ('torch', 'jax', 'flax') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
