"""Test harness for siglip-loss: hypothesis profiles and the runner for docs' python blocks.

Profiles, chosen by the environment variable ``HYPOTHESIS_PROFILE`` (default ``ci``):

- ``ci``: derandomized (the same examples on every run), no deadline (jit compiles), few examples;
- ``dev``: random, more examples, to hunt for counter-examples locally.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=20,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO_ROOT = Path(__file__).resolve().parents[3]
FRAMEWORK_IMPORT = re.compile(
    r"^\s*(?:import|from)\s+(torch|jax|flax|siglip_loss\.(?:torch|jax))\b", re.M
)
# Blocks of the shared pages (the root README) that use sibling packages are their tests' job.
SIBLING_IMPORT = re.compile(r"^\s*(?:import|from)\s+siglip_(?:models|data|eval|train)\b", re.M)
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def markdown_python_blocks(path: Path) -> list[str]:
    """The ```python blocks of a markdown page, in order."""
    return PYTHON_BLOCK.findall(path.read_text(encoding="utf-8"))


def frameworks_of(block: str) -> set[str]:
    """The frameworks a block imports: a subset of {"torch", "jax"}, plus "sibling" when it
    imports another package of the monorepo (then siglip-loss's tests leave it alone)."""
    names = {match.split(".")[-1] for match in FRAMEWORK_IMPORT.findall(block)}
    names = {"jax" if name == "flax" else name for name in names}
    return names | {"sibling"} if SIBLING_IMPORT.search(block) else names


@pytest.fixture
def repo_root() -> Path:
    """The monorepo root (the docs and README live there)."""
    return REPO_ROOT


@pytest.fixture
def markdown_block_frameworks() -> Callable[[Path], list[set[str]]]:
    """For each python block of a page, the frameworks it imports."""
    return lambda path: [frameworks_of(block) for block in markdown_python_blocks(path)]


@pytest.fixture
def run_markdown_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[Path, str | None], int]:
    """Execute a page's python blocks in order, in one namespace, inside a temp directory.

    Called as ``run(path, framework)``: runs the blocks that import no framework or only
    ``framework`` ("torch" or "jax"; None runs only framework-free blocks). Returns how many ran.
    """

    def run(path: Path, framework: str | None) -> int:
        monkeypatch.chdir(tmp_path)
        namespace: dict[str, object] = {"__name__": f"docs_{path.stem}"}
        executed = 0
        for index, block in enumerate(markdown_python_blocks(path)):
            if not frameworks_of(block) <= ({framework} if framework else set()):
                continue
            code = compile(block, f"{path.name}[python block {index}]", "exec")
            exec(code, namespace)
            executed += 1
        return executed

    return run
