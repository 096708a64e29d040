"""The JAX blocks of docs/distributed.md run and their assertions hold."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def test_distributed_page_jax_blocks_run(
    repo_root: Path, run_markdown_blocks: Callable[[Path, str | None], int]
) -> None:
    assert run_markdown_blocks(repo_root / "docs" / "distributed.md", "jax") == 2
