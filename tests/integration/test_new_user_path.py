"""The new-user path of docs/quickstart-own-data.md, run exactly as the page writes it.

Every ``bash`` block marked ``<!-- run: new-user-path -->`` runs line by line as a user types it
(the console scripts of this environment on PATH), after the page's Python block that makes the
200-image toy folder, and before its Python embedding block; then zero-shot accuracy must be well
above chance. The page's other checks (no inline code fence that would swallow the page) run on
every docs page.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "quickstart-own-data.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def page_blocks(page: Path = PAGE) -> list[tuple[str, str, str]]:
    """``(marker, language, code)`` of each fenced block; marker = the HTML comment just before."""
    text = page.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip().splitlines()
        marker = before[-1].strip() if before and before[-1].strip().startswith("<!--") else ""
        blocks.append((marker, match.group(1), match.group(2)))
    return blocks


def commands(marker: str) -> list[str]:
    """The command lines of the bash blocks marked ``<!-- run: {marker} -->``."""
    lines = []
    for block_marker, language, code in page_blocks():
        if language == "bash" and block_marker == f"<!-- run: {marker} -->":
            lines += [line for line in code.splitlines() if line.strip()]
    return lines


def test_the_quick_start_runs_as_written_and_beats_chance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = page_blocks()
    python_blocks = [(marker, code) for marker, language, code in blocks if language == "python"]
    assert len(python_blocks) == 2, "the page has the toy-folder block and the embedding block"
    (make_toy, embed) = (python_blocks[0][1], python_blocks[1][1])
    environment = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
    }
    # The Python blocks run here, as Sybil runs a page (this process has torch imported already:
    # a fresh interpreter would import it again); the command lines run in bash, as typed.
    monkeypatch.chdir(tmp_path)
    exec(compile(make_toy, f"{PAGE.name} (toy folder)", "exec"), {"__name__": "__quickstart__"})
    lines = commands("new-user-path")
    assert any(line.startswith("siglip-train train") for line in lines)
    for line in lines:
        done = subprocess.run(
            ["bash", "-c", line], cwd=tmp_path, env=environment, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{line}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    zeroshot = json.loads((tmp_path / "results" / "zeroshot" / "results.json").read_text())
    assert zeroshot["metrics"]["top1"] > 0.4  # 12 classes: chance is 0.083
    retrieval = json.loads((tmp_path / "results" / "retrieval" / "results.json").read_text())
    assert retrieval["metrics"]["image_to_text_R@5"] > 0.3  # 48 captions: chance is 0.10
    namespace: dict[str, object] = {"__name__": "__quickstart__"}
    exec(compile(embed, f"{PAGE.name} (embedding)", "exec"), namespace)
    assert tuple(namespace["probabilities"].shape) == (2, 3)  # type: ignore[attr-defined]


def test_the_install_command_names_every_sibling_in_one_pip_call() -> None:
    (line,) = commands("install-from-checkout")
    assert line.startswith("pip install -c constraints.txt ")
    for package in ("loss", "models", "data", "eval", "train"):
        assert f"./packages/siglip-{package}" in line


@pytest.mark.parametrize("page", sorted((ROOT / "docs").glob("*.md")), ids=lambda p: p.name)
def test_no_docs_page_opens_a_code_fence_inside_a_sentence(page: Path) -> None:
    # "Every ```python block" in running text opens a fence that swallows the rest of the page.
    for number, line in enumerate(page.read_text().splitlines(), start=1):
        assert "```" not in line or line.lstrip().startswith("```"), f"{page.name}:{number}"
