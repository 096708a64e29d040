"""Every public name exists and is public; the version is a string; the entry points work."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

import siglip_train
import siglip_train.demo
import siglip_train.distributed
import siglip_train.recipe


@pytest.mark.parametrize(
    "module",
    [siglip_train, siglip_train.demo, siglip_train.distributed, siglip_train.recipe],
    ids=lambda m: m.__name__,
)
def test_every_name_in_all_exists_is_public_and_sorted(module: ModuleType) -> None:
    names = [name for name in module.__all__ if name != "__version__"]
    # ruff's RUF022 order: CONSTANTS, then Classes, then everything else, each alphabetical.
    assert names == sorted(
        names, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n)
    )
    for name in names:
        assert hasattr(module, name), name
        assert not name.startswith("_"), name


def test_version_is_a_string() -> None:
    assert isinstance(siglip_train.__version__, str)
    assert "__version__" in siglip_train.__all__


def test_the_library_surface_holds_no_demo_cli_or_file_utilities() -> None:
    exported = set(siglip_train.__all__)
    assert len(exported) <= 25
    for name in ("main", "atomic_write_text", "run_demo", "DemoData", "batch_to_tensors"):
        assert name not in exported, name


def test_console_script_points_at_main() -> None:
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    module, _, function = project["scripts"]["siglip-train"].partition(":")
    imported = __import__(module, fromlist=[function])
    assert callable(getattr(imported, function))


@pytest.mark.parametrize(
    ("module", "expected"), [("siglip_train", "{train,demo,"), ("siglip_train.demo", "--data-root")]
)
def test_python_dash_m_runs_the_command_line(module: str, expected: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    assert expected in completed.stdout
