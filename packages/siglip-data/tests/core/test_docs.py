"""Every ```python block of docs/data.md runs, in order, in one namespace, in a temp directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS_PAGE = Path(__file__).resolve().parents[4] / "docs" / "data.md"


def test_docs_page_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not DOCS_PAGE.is_file():
        pytest.skip(f"{DOCS_PAGE} not found (package tested outside the monorepo)")
    blocks = re.findall(r"```python\n(.*?)```", DOCS_PAGE.read_text(encoding="utf-8"), re.S)
    assert blocks, "docs/data.md has no python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "docs_data"}
    for index, block in enumerate(blocks):
        exec(compile(block, f"{DOCS_PAGE}:block{index}", "exec"), namespace)
