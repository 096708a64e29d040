"""Two processes under ``jax.distributed.initialize`` (CPU, gloo) train like one process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

from siglip_models.flax import SiglipModel
from siglip_train import read_metrics
from siglip_train.jax import JaxTrainer
from siglip_train.jax import make_mesh

from .helpers import numpy_batches
from .helpers import tiny_config


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_two_processes_of_two_devices_equal_one_process_of_four(tmp_path):
    worker = Path(__file__).with_name("multiprocess_worker.py")
    port = free_port()
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    environment.pop("XLA_FLAGS", None)
    processes = [
        subprocess.Popen(
            [sys.executable, str(worker), str(port), str(index), str(tmp_path / "two")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment,
        )
        for index in range(2)
    ]
    outputs = [process.communicate(timeout=400)[0] for process in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]

    config = tiny_config(tmp_path / "one", "steps=3")
    mesh = make_mesh(fsdp=2, devices=jax.devices()[:4])
    JaxTrainer(
        SiglipModel("tiny-test"), numpy_batches(3, batch_size=8, seed=3), config, mesh=mesh
    ).fit()

    two = read_metrics(tmp_path / "two" / "metrics.jsonl")  # process 0 writes the records
    one = read_metrics(tmp_path / "one" / "metrics.jsonl")
    assert [r["step"] for r in two] == [1, 2, 3]
    np.testing.assert_allclose([r["loss"] for r in two], [r["loss"] for r in one], rtol=1e-5)
    # Both processes wrote their shards of the step-2 and step-3 checkpoints (orbax commit).
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir()) == [
        "step_000000002",
        "step_000000003",
    ]
