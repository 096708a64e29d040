"""Every public name exists; the version is a string; the console script is declared."""

from __future__ import annotations

from pathlib import Path

import tomllib

import siglip_train


def test_version_is_a_string() -> None:
    assert isinstance(siglip_train.__version__, str)


def test_every_name_in_all_exists() -> None:
    for name in siglip_train.__all__:
        assert hasattr(siglip_train, name), name


def test_console_script_points_at_main() -> None:
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    module, _, function = project["scripts"]["siglip-train"].partition(":")
    imported = __import__(module, fromlist=[function])
    assert callable(getattr(imported, function))
