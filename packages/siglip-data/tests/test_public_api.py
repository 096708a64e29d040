"""Every public name exists; importing the core pulls in neither torch nor jax."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import siglip_data


def test_version_is_a_string() -> None:
    assert isinstance(siglip_data.__version__, str)


def test_every_name_in_all_exists() -> None:
    for name in siglip_data.__all__:
        assert hasattr(siglip_data, name), name


@pytest.mark.parametrize("module_name", ["siglip_data.torch", "siglip_data.jax"])
def test_every_adapter_name_in_all_exists(module_name: str) -> None:
    pytest.importorskip(module_name.rsplit(".", 1)[1])
    module = importlib.import_module(module_name)
    for name in module.__all__:
        assert hasattr(module, name), f"{module_name}.{name}"


def test_core_import_does_not_import_torch_or_jax() -> None:
    # numba too: it loads on the first compiled resize, not on import.
    code = (
        "import sys\n"
        "import siglip_data\n"
        "heavy = ('torch', 'jax', 'flax', 'tensorflow', 'numba')\n"
        "loaded = sorted(m for m in heavy if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
