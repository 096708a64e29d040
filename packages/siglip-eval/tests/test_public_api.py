"""Every public name exists; importing the package pulls in no framework."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import siglip_eval


def test_version_is_a_string() -> None:
    assert isinstance(siglip_eval.__version__, str)


def test_every_name_in_all_exists() -> None:
    for name in siglip_eval.__all__:
        assert hasattr(siglip_eval, name), name


@pytest.mark.parametrize("module_name", ["siglip_eval", "siglip_eval._cli"])
def test_import_does_not_import_torch_jax_or_matplotlib(module_name: str) -> None:
    code = (
        "import sys\n"
        f"import {module_name}\n"
        "loaded = sorted(m for m in ('torch', 'jax', 'flax', 'matplotlib', 'sklearn') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_contract_names_from_contracts_md() -> None:
    module = importlib.import_module("siglip_eval")
    assert callable(module.zeroshot_metrics)
    assert callable(module.retrieval_metrics)
