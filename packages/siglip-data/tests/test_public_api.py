"""Every public name exists and is meant for users; importing the core pulls in no backend."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from types import ModuleType

import pytest

import siglip_data

# Each adapter runs in the nox variant that installs its backend; elsewhere it is not installed.
PUBLIC_MODULES = {
    "siglip_data": None,
    "siglip_data.augment": None,
    "siglip_data.builders": None,
    "siglip_data.grounding": None,
    "siglip_data.naflex": None,
    "siglip_data.torch": "torch",
    "siglip_data.jax": "jax",
}


def public_module(name: str) -> ModuleType:
    backend = PUBLIC_MODULES[name]
    if backend is not None and importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed in this environment")
    return importlib.import_module(name)  # installed but broken: fails, never skips


def _isort_key(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: CONSTANTS, then Classes, then everything else, each alphabetical.
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_version_is_a_string() -> None:
    assert isinstance(siglip_data.__version__, str)


@pytest.mark.parametrize("module_name", sorted(PUBLIC_MODULES))
def test_all_is_sorted_public_and_complete(module_name: str) -> None:
    module = public_module(module_name)
    names = list(module.__all__)
    assert names == sorted(names, key=_isort_key)
    for name in names:
        assert hasattr(module, name), f"{module_name}.{name}"
        assert name == "__version__" or not name.startswith("_"), f"{module_name}.{name}"


def test_core_surface_holds_no_debian_paths_apt_lines_or_helpers() -> None:
    assert len(siglip_data.__all__) <= 28
    leaked = [name for name in siglip_data.__all__ if name.isupper() or "APT" in name]
    assert not leaked, leaked  # constants (paths, apt lines, presets) are not API
    for private_helper in ("expand_braces", "read_idx", "read_emoji_test", "emoji_split"):
        assert not hasattr(siglip_data, private_helper), private_helper


def test_core_import_does_not_import_torch_jax_or_numba() -> None:
    # numba too: it loads on the first compiled resize, not on import.
    code = (
        "import sys\n"
        "import siglip_data\n"
        "heavy = ('torch', 'jax', 'flax', 'tensorflow', 'numba')\n"
        "loaded = sorted(m for m in heavy if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
