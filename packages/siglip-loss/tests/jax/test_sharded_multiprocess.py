"""sharded_sigmoid_loss across 2 JAX processes (jax.distributed on CPU, gloo collectives).

Each process owns 2 CPU devices, so the 4-device ring crosses the process boundary twice per hop
cycle. Each process reports its loss and the gradient of its own rows; the test compares them with
the float64 oracle on the whole batch.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from siglip_loss.numpy import sigmoid_loss_and_grads

pytestmark = pytest.mark.multiprocess

PROCESSES = 2
DEVICES_PER_PROCESS = 2
BATCH, DIM = 12, 5

WORKER = """
import json, sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_num_cpu_devices", DEVICES_PER_PROCESS)
process_id, port = int(sys.argv[1]), int(sys.argv[2])
jax.distributed.initialize(
    coordinator_address=f"127.0.0.1:{port}", num_processes=PROCESSES, process_id=process_id,
    initialization_timeout=120,
)
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from siglip_loss.jax import sharded_sigmoid_loss_on_mesh

rng = np.random.default_rng(0)
image = rng.standard_normal((BATCH, DIM)).astype(np.float32)
text = rng.standard_normal((BATCH, DIM)).astype(np.float32)
mesh = jax.make_mesh((jax.device_count(),), ("batch",))
sharding = NamedSharding(mesh, PartitionSpec("batch"))
rows = BATCH // jax.process_count()
mine = slice(process_id * rows, (process_id + 1) * rows)
image_global = jax.make_array_from_process_local_data(sharding, image[mine], (BATCH, DIM))
text_global = jax.make_array_from_process_local_data(sharding, text[mine], (BATCH, DIM))

def loss(image, text, scale, bias):
    return sharded_sigmoid_loss_on_mesh(
        image, text, scale=scale, bias=bias, mesh=mesh, axis_name="batch", block_size=2
    )

value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))(
    image_global, text_global, jnp.float32(10.0), jnp.float32(-3.0)
)

def local_rows(array):
    shards = sorted(array.addressable_shards, key=lambda shard: shard.index[0].start)
    return np.concatenate([np.asarray(shard.data) for shard in shards]).tolist()

print("RESULT " + json.dumps({
    "devices": jax.device_count(),
    "loss": float(value),
    "grad_image": local_rows(grads[0]),
    "grad_text": local_rows(grads[1]),
    "grad_scale": float(grads[2]),
    "grad_bias": float(grads[3]),
}), flush=True)
jax.distributed.shutdown()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_two_jax_processes_give_the_single_device_loss_and_gradients(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    constants = f"PROCESSES, DEVICES_PER_PROCESS = {PROCESSES}, {DEVICES_PER_PROCESS}\n"
    constants += f"BATCH, DIM = {BATCH}, {DIM}\n"
    script.write_text(constants + WORKER, encoding="utf-8")
    # The device count is set in the worker (jax_num_cpu_devices), not by a flag from outside.
    env = {name: value for name, value in os.environ.items() if name != "XLA_FLAGS"}
    port = str(free_port())
    processes = [
        subprocess.Popen(
            [sys.executable, str(script), str(process_id), port],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for process_id in range(PROCESSES)
    ]
    outputs = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=240)
            assert process.returncode == 0, stderr[-4000:]
            outputs.append(stdout)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    results = [
        json.loads(line.removeprefix("RESULT "))
        for output in outputs
        for line in output.splitlines()
        if line.startswith("RESULT ")
    ]
    assert len(results) == PROCESSES
    assert {result["devices"] for result in results} == {PROCESSES * DEVICES_PER_PROCESS}

    rng = np.random.default_rng(0)
    image = rng.standard_normal((BATCH, DIM)).astype(np.float32)
    text = rng.standard_normal((BATCH, DIM)).astype(np.float32)
    oracle = sigmoid_loss_and_grads(image, text, scale=10.0, bias=-3.0)
    rows = BATCH // PROCESSES
    for process_id, result in enumerate(results):
        mine = slice(process_id * rows, (process_id + 1) * rows)
        np.testing.assert_allclose(result["loss"], oracle.loss, rtol=2e-5)
        np.testing.assert_allclose(
            result["grad_image"], oracle.grad_image_emb[mine], rtol=2e-5, atol=2e-6
        )
        np.testing.assert_allclose(
            result["grad_text"], oracle.grad_text_emb[mine], rtol=2e-5, atol=2e-6
        )
        np.testing.assert_allclose(result["grad_scale"], oracle.grad_scale, rtol=2e-5)
        np.testing.assert_allclose(result["grad_bias"], oracle.grad_bias, rtol=2e-5, atol=2e-6)
