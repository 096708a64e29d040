"""Docs pages: every python block imports at most one framework (so that the torch or the JAX
session runs it), and the framework-free blocks run here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

PAGES = ("README.md", "packages/siglip-loss/README.md", "docs/loss.md", "docs/testing.md")


@pytest.mark.parametrize("page", PAGES)
def test_every_python_block_needs_at_most_one_framework(
    page: str, repo_root: Path, markdown_block_frameworks: Callable[[Path], list[set[str]]]
) -> None:
    frameworks = markdown_block_frameworks(repo_root / page)
    assert frameworks, f"{page} has no python block"
    for index, names in enumerate(frameworks):
        if "sibling" not in names:
            assert len(names) <= 1, f"{page} python block {index} imports {sorted(names)}"


def test_framework_free_blocks_of_the_loss_page_run(
    repo_root: Path, run_markdown_blocks: Callable[[Path, str | None], int]
) -> None:
    assert run_markdown_blocks(repo_root / "docs" / "loss.md", None) >= 1
