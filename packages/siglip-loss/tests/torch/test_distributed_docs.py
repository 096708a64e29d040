"""The torchrun script of docs/distributed.md runs under torch.distributed.run with 2 processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import siglip_loss

pytestmark = pytest.mark.multiprocess


def import_path() -> str:
    """PYTHONPATH under which the children import the siglip_loss this test imported."""
    source = str(Path(siglip_loss.__file__).resolve().parents[1])
    return os.pathsep.join([source, *filter(None, [os.environ.get("PYTHONPATH")])])


def test_distributed_page_torchrun_script_runs_on_two_processes(
    repo_root: Path, tmp_path: Path
) -> None:
    page = (repo_root / "docs" / "distributed.md").read_text(encoding="utf-8")
    blocks = page.split("```python\n")[1:]
    scripts = [block.split("```")[0] for block in blocks if block.startswith("# train_ddp.py")]
    assert len(scripts) == 1, "docs/distributed.md: expected one python block '# train_ddp.py'"
    script = tmp_path / "train_ddp.py"
    script.write_text(scripts[0], encoding="utf-8")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node=2", str(script)]
    result = subprocess.run(
        command,
        cwd=tmp_path,
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=import_path()),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "distributed gradients equal one device's" in result.stdout
