"""Every public name exists, is public and sorted; importing the package pulls in neither torch
nor jax."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from types import ModuleType

import pytest

import siglip_models

# The Flax module needs the [flax] extra, which only the flax test variant installs. Where flax is
# installed it must import: a broken install fails here instead of skipping.
_FLAX_INSTALLED = importlib.util.find_spec("flax") is not None
PUBLIC_MODULES = [
    "siglip_models",
    "siglip_models.torch",
    "siglip_models.onnx",  # the models(all) variant installs the [onnx] extra
    pytest.param(
        "siglip_models.flax",
        marks=pytest.mark.skipif(
            not _FLAX_INSTALLED, reason="flax is not installed (the flax variant checks it)"
        ),
    ),
]


def _isort_key(name: str) -> tuple[int, str]:
    # ruff RUF022's order: SCREAMING_CASE constants, then CamelCase classes, then functions.
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def _public(module_name: str) -> ModuleType:
    return importlib.import_module(module_name)


def test_version_is_a_string() -> None:
    assert isinstance(siglip_models.__version__, str)
    assert siglip_models.__version__.count(".") == 2


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_name_in_all_exists_is_public_and_sorted(module_name: str) -> None:
    module = _public(module_name)
    names = list(module.__all__)
    assert names, module_name
    for name in names:
        assert hasattr(module, name), f"{module_name}.{name}"
        assert not name.startswith("_") or name == "__version__", f"{module_name}.{name}"
    assert names == sorted(names, key=_isort_key), module_name
    assert len(set(names)) == len(names), module_name


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_names_are_defined_in_the_package(module_name: str) -> None:
    module = _public(module_name)
    for name in module.__all__:
        value = getattr(module, name)
        owner = getattr(value, "__module__", "siglip_models")
        assert owner.startswith("siglip_models"), f"{module_name}.{name} comes from {owner}"


def test_import_does_not_import_torch_or_jax() -> None:
    code = (
        "import sys\n"
        "import siglip_models\n"
        "siglip_models.get_config('siglip-base-patch16-224')\n"
        "loaded = sorted(m for m in ('torch', 'jax', 'flax', 'safetensors') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
