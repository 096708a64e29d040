"""One process of the two-process test: ``python multiprocess_worker.py PORT PROCESS_ID OUT``.

Two CPU devices per process, gloo collectives, ``jax.distributed.initialize`` on 127.0.0.1; each
process feeds its half of every global batch.
"""

from __future__ import annotations

import sys

import jax

jax.config.update("jax_num_cpu_devices", 2)
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_numpy_dtype_promotion", "strict")


def main() -> None:
    port, process_id, output_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=2,
        process_id=process_id,
        initialization_timeout=120,
    )
    from pathlib import Path

    from siglip_models.flax import SiglipModel
    from siglip_train.jax import JaxTrainer
    from siglip_train.jax import make_mesh

    sys.path.insert(0, str(Path(__file__).parent))
    from helpers import numpy_batches
    from helpers import tiny_config

    rows = 8 // 2
    halves = [
        {name: value[process_id * rows : (process_id + 1) * rows] for name, value in batch.items()}
        for batch in numpy_batches(3, batch_size=8, seed=3)
    ]
    config = tiny_config(Path(output_dir), "checkpoint.every_steps=2")
    trainer = JaxTrainer(SiglipModel("tiny-test"), halves, config, mesh=make_mesh(fsdp=2))
    result = trainer.fit(max_steps=3)
    print(f"process {process_id}: step {result.step} loss {result.last_loss:.6f}", flush=True)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
