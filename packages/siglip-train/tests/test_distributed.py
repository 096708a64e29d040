"""torchrun with 2 processes (gloo, CPU) at global batch B == one process at batch B, for the
sigmoid loss, the softmax loss and the sigmoid loss with ``loss.positives=caption`` (repeated
captions on both ranks: their hashed ids must agree across processes).

Tolerance (float32): loss curves to 1e-5 relative, every parameter after 4 AdamW steps (lr 1e-2)
to 2e-5 absolute. The distributed losses sum their blocks in another order than the
single-process loss, so they agree to rounding, not bit for bit; the worker uses Adam eps 1e-3 so
that parameters with an exactly zero true gradient (attention key biases) are not moved by
rounding noise (see distributed_worker.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from siglip_train import read_metrics

WORKER = Path(__file__).with_name("distributed_worker.py")


def run_worker(out: Path, processes: int) -> None:
    out.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if processes == 1:
        command = [sys.executable, str(WORKER), str(out)]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            str(WORKER),
            str(out),
        ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]


def results(out: Path) -> tuple[list[float], dict[str, torch.Tensor]]:
    losses = [r["loss"] for r in read_metrics(out / "run" / "metrics.jsonl")]
    return losses, torch.load(out / "parameters.pt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("distributed")
    run_worker(root / "single", 1)
    run_worker(root / "ddp", 2)
    return root


@pytest.mark.multiprocess
@pytest.mark.parametrize("loss", ["sigmoid", "softmax", "sigmoid-caption"])
def test_two_processes_at_global_batch_b_equal_one_process_at_b(runs: Path, loss: str) -> None:
    single_losses, single = results(runs / "single" / loss)
    ddp_losses, ddp = results(runs / "ddp" / loss)
    assert len(single_losses) == len(ddp_losses) == 4
    assert ddp_losses == pytest.approx(single_losses, rel=1e-5)
    assert single_losses[-1] < single_losses[0]  # it did train
    for name, parameter in single.items():
        torch.testing.assert_close(ddp[name], parameter, rtol=0, atol=2e-5, msg=name)
