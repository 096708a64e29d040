"""Every ```python block of docs/eval.md runs, in order, in one namespace, in a temp directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS_PAGE = Path(__file__).resolve().parents[4] / "docs" / "eval.md"


def test_docs_page_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not DOCS_PAGE.is_file():
        pytest.skip(f"{DOCS_PAGE} not found (package tested outside the monorepo)")
    pytest.importorskip(
        "siglip_models.torch", reason="the page's examples use siglip-models[torch]"
    )
    pytest.importorskip("sklearn", reason="the page's linear-probe example needs scikit-learn")
    blocks = re.findall(r"```python\n(.*?)```", DOCS_PAGE.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 6, "docs/eval.md lost its examples"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "docs_eval"}
    for index, block in enumerate(blocks):
        exec(compile(block, f"{DOCS_PAGE}:block{index}", "exec"), namespace)
    assert (tmp_path / "report" / "confusion_matrix.png").is_file()
