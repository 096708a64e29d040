"""The integration session must exercise this checkout, not a published release."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import tomllib
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("SIGLIP_REPO_ROOT", Path(__file__).resolve().parents[2]))
PACKAGE_DIRS = sorted(p for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").exists())


@pytest.mark.parametrize("package_dir", PACKAGE_DIRS, ids=[p.name for p in PACKAGE_DIRS])
def test_installed_distribution_is_the_local_checkout(package_dir: Path) -> None:
    project = tomllib.loads((package_dir / "pyproject.toml").read_text())["project"]
    distribution = importlib.metadata.distribution(project["name"])
    assert distribution.version == project["version"]
    direct_url = json.loads(distribution.read_text("direct_url.json") or "{}")
    assert Path(direct_url["url"].removeprefix("file://")).resolve() == package_dir.resolve()
    import_name = project["name"].replace("-", "_")
    module = importlib.import_module(import_name)
    assert module.__version__ == project["version"]
