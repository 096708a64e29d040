"""docs/train.md: every python block runs (in order, one namespace, in a temp directory)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def test_every_python_block_of_the_train_page_runs(
    repo_root: Path, run_markdown_blocks: Callable[[Path], int]
) -> None:
    assert run_markdown_blocks(repo_root / "docs" / "train.md") >= 5


def test_the_package_readme_example_runs(
    repo_root: Path, run_markdown_blocks: Callable[[Path], int]
) -> None:
    assert run_markdown_blocks(repo_root / "packages" / "siglip-train" / "README.md") == 1
