"""Every public name exists; importing the package pulls in neither torch nor jax."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import siglip_models


def test_version_is_a_string() -> None:
    assert isinstance(siglip_models.__version__, str)


@pytest.mark.parametrize("module_name", ["siglip_models"])
def test_every_name_in_all_exists(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name in module.__all__:
        assert hasattr(module, name), f"{module_name}.{name}"


def test_import_does_not_import_torch_or_jax() -> None:
    code = (
        "import sys\n"
        "import siglip_models\n"
        "siglip_models.get_config('siglip-base-patch16-224')\n"
        "loaded = sorted(m for m in ('torch', 'jax', 'flax', 'safetensors') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
