"""The rules of the house that span packages, checked on the source tree.

- one atomic-write implementation: every package that writes files carries the same ``_atomic.py``;
- library code never installs system packages;
- no package imports a sibling's private module;
- public surfaces stay small and hold only public names;
- every package declares the Python it is tested on.
"""

from __future__ import annotations

import ast
import importlib
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").is_file())
IMPORT_NAMES = {p.name.replace("-", "_"): p for p in PACKAGES}
MAX_ROOT_NAMES = 25


def _sources(package_dir: Path) -> list[Path]:
    return sorted((package_dir / "src").rglob("*.py"))


def test_every_atomic_write_module_is_the_same_file() -> None:
    copies = {p.name: (p / "src" / p.name.replace("-", "_") / "_atomic.py") for p in PACKAGES}
    present = {name: path.read_bytes() for name, path in copies.items() if path.is_file()}
    assert len(present) >= 4, f"expected the helper in models, data, eval, train; got {present}"
    reference = present["siglip-models"]
    different = [name for name, text in present.items() if text != reference]
    assert not different, f"_atomic.py differs from siglip-models' copy in {different}"


@pytest.mark.parametrize("package_dir", PACKAGES, ids=[p.name for p in PACKAGES])
def test_library_code_never_runs_a_system_package_manager(package_dir: Path) -> None:
    # The library prints the command a person runs (`apt install ...`, the interactive front
    # end); `apt-get` (for scripts) appears only in .ci/run and the noxfile, which install.
    offenders = []
    for path in _sources(package_dir):
        text = path.read_text()
        if "apt-get" in text:
            offenders.append(f"{path.relative_to(ROOT)}: mentions apt-get")
        runs = any(call in text for call in ("subprocess", "os.system", "os.exec", "os.spawn"))
        if runs and "apt " in text:
            offenders.append(f"{path.relative_to(ROOT)}: mentions apt and runs processes")
    assert not offenders, offenders


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


@pytest.mark.parametrize("package_dir", PACKAGES, ids=[p.name for p in PACKAGES])
def test_no_package_imports_a_private_module_of_a_sibling(package_dir: Path) -> None:
    own = package_dir.name.replace("-", "_")
    offenders = []
    for path in _sources(package_dir):
        for line, module in _imported_modules(path):
            parts = module.split(".")
            if (
                parts[0] in IMPORT_NAMES
                and parts[0] != own
                and any(part.startswith("_") for part in parts[1:])
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {module}")
    assert not offenders, f"imports of a sibling's private module: {offenders}"


@pytest.mark.parametrize("import_name", sorted(IMPORT_NAMES))
def test_public_surface_is_small_and_public(import_name: str) -> None:
    module = importlib.import_module(import_name)
    names = [name for name in module.__all__ if name != "__version__"]
    assert len(names) <= MAX_ROOT_NAMES, f"{import_name}.__all__ has {len(names)} names: {names}"
    assert not [name for name in names if name.startswith("_")]
    assert all(hasattr(module, name) for name in names)


@pytest.mark.parametrize("package_dir", PACKAGES, ids=[p.name for p in PACKAGES])
def test_declared_python_is_the_tested_one(package_dir: Path) -> None:
    project = tomllib.loads((package_dir / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
