"""docs/models.md and the package README: every python block runs, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2]
REPOSITORY = PACKAGE.parents[1]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _run_python_blocks(page: Path) -> int:
    namespace: dict[str, object] = {"__name__": "__docs__"}
    blocks = _BLOCK.findall(page.read_text(encoding="utf-8"))
    for index, block in enumerate(blocks):
        try:
            exec(compile(block, f"{page.name}[block {index}]", "exec"), namespace)
        except Exception as error:
            raise AssertionError(f"{page.name} block {index} failed:\n{block}") from error
    return len(blocks)


def test_every_python_block_of_the_models_page_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _run_python_blocks(REPOSITORY / "docs" / "models.md") >= 8


def test_the_package_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert _run_python_blocks(PACKAGE / "README.md") == 1
