"""The torch examples of both READMEs, docs/loss.md and docs/testing.md run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    "page", ["README.md", "packages/siglip-loss/README.md", "docs/loss.md", "docs/testing.md"]
)
def test_torch_and_framework_free_python_blocks_run(
    page: str, repo_root: Path, run_markdown_blocks: Callable[[Path, str | None], int]
) -> None:
    assert run_markdown_blocks(repo_root / page, "torch") >= 1
