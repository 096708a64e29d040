"""Every public name exists and is public; importing the package pulls in no framework."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys

import pytest

import siglip_eval

# siglip_eval.torch and siglip_eval.flax import their framework: checked where it is installed.
PUBLIC_MODULES = [
    "siglip_eval",
    "siglip_eval.datasets",
    "siglip_eval.grounding",
    "siglip_eval.torch",
    "siglip_eval.flax",
]


def _installed(module_name: str) -> bool:
    framework = {"siglip_eval.torch": "torch", "siglip_eval.flax": "flax"}.get(module_name)
    return framework is None or importlib.util.find_spec(framework) is not None


def _isort_key(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: CONSTANTS, then Classes, then everything else, each alphabetical.
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_version_is_a_string() -> None:
    assert isinstance(siglip_eval.__version__, str)


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_all_lists_existing_public_names_in_sorted_order(module_name: str) -> None:
    if not _installed(module_name):
        pytest.skip(f"{module_name} needs its framework, not installed in this variant")
    module = importlib.import_module(module_name)
    names = list(module.__all__)
    assert names, module_name
    missing = [name for name in names if not hasattr(module, name)]
    assert not missing, f"{module_name}.__all__ names missing attributes: {missing}"
    private = [name for name in names if name.startswith("_") and name != "__version__"]
    assert not private, f"{module_name}.__all__ exports private names: {private}"
    assert names == sorted(names, key=_isort_key), f"{module_name}.__all__ is not sorted"
    assert len(set(names)) == len(names), f"{module_name}.__all__ repeats a name"


def test_root_surface_stays_small() -> None:
    # What a user calls: protocols, metrics, results, templates (the readers are in
    # siglip_eval.datasets); no plumbing (rank parts, resize helpers, embedding loops,
    # normalisation).
    assert len(siglip_eval.__all__) <= 28
    for plumbing in ("RankParts", "retrieval_rank_parts", "squash_resize", "l2_normalize"):
        assert plumbing not in siglip_eval.__all__


@pytest.mark.parametrize("module_name", ["siglip_eval", "siglip_eval._cli", "siglip_eval.__main__"])
def test_import_does_not_import_torch_jax_or_matplotlib(module_name: str) -> None:
    code = (
        "import sys\n"
        f"import {module_name}\n"
        "loaded = sorted(m for m in ('torch', 'jax', 'flax', 'matplotlib', 'sklearn') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_python_dash_m_runs_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "siglip_eval", "--help"], capture_output=True, text=True, check=True
    )
    assert "zeroshot" in done.stdout
    assert "retrieval" in done.stdout
    assert "linear-probe" in done.stdout
