"""Test harness for siglip-train: one torch thread, hypothesis profiles, tiny models and batches."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck
from hypothesis import settings

# Two threads on a 2-core machine shared with other jobs make tiny ops 10-100x slower.
torch.set_num_threads(1)

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=15,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "dev",
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO_ROOT = Path(__file__).resolve().parents[3]
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def random_batches(count: int, *, batch_size: int = 8, seed: int = 0) -> list[dict]:
    """``count`` batches for the ``tiny-test`` model (32 px, 16 tokens, vocab 100)."""
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            "pixels": torch.rand(batch_size, 3, 32, 32, generator=generator) * 2 - 1,
            "token_ids": torch.randint(0, 100, (batch_size, 16), generator=generator),
        }
        for _ in range(count)
    ]


@pytest.fixture
def make_batches() -> Callable[..., list[dict]]:
    """The :func:`random_batches` factory."""
    return random_batches


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def run_markdown_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], int]:
    """Execute a page's ```python blocks in order, in one namespace, inside a temp directory."""

    def run(path: Path) -> int:
        monkeypatch.chdir(tmp_path)
        namespace: dict[str, object] = {"__name__": f"docs_{path.stem}"}
        blocks = PYTHON_BLOCK.findall(path.read_text(encoding="utf-8"))
        for index, block in enumerate(blocks):
            exec(compile(block, f"{path.name}[python block {index}]", "exec"), namespace)
        return len(blocks)

    return run
