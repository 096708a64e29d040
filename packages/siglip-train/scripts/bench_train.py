"""`nox -s bench-train [-- --steps N --skip-b16]`: the JAX trainer against the torch trainer.

1. Steps per second, fp32 on CPU, batch 16, of the demo model and of a ViT-B/16 two-tower
   (``siglip-base-patch16-224``), each trained by ``siglip_train.Trainer`` and by
   ``siglip_train.jax.JaxTrainer`` (one JAX CPU device, jit) in the same run, from the same weights
   on the same batches. The first step (compilation, warm-up) is not timed.
2. Parameter + Adam-moment bytes per device of the ViT-B/16 two-tower on 1/2/4/8 devices, FSDP
   (``mesh.fsdp`` = devices, threshold 4 MiB) vs replicated (``mesh.fsdp=1``): the shard shapes
   of the shardings the trainer assigns (``parameter_shardings``), computed without allocating.

Prints a markdown table (docs/performance.md) and writes ``--out`` JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import torch

from siglip_train import Trainer
from siglip_train import apply_overrides
from siglip_train import read_metrics
from siglip_train.demo import demo_config


def _config(output_dir: str, steps: int) -> object:
    return apply_overrides(
        demo_config(),
        [
            f"output_dir={output_dir}",
            f"steps={steps}",
            "optimizer.warmup_steps=1",
            "data.batch_size=16",
            "logging.every_steps=1",
            "logging.progress_bar=false",
            "logging.tensorboard=false",
            "checkpoint.every_steps=0",
        ],
    )


def _batches(config: object, image_size: int, length: int, vocab: int) -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {
            "pixels": rng.integers(0, 256, (16, image_size, image_size, 3), dtype=np.uint8),
            "token_ids": rng.integers(0, vocab, (16, length)).astype(np.int32),
        }
        for _ in range(4)
    ]


def _steps_per_second(output_dir: Path) -> float:
    records = [r for r in read_metrics(output_dir / "metrics.jsonl") if r["kind"] == "train"]
    timed = records[1:]  # the first step compiles (JAX) / warms up (torch)
    seconds = timed[-1]["train_seconds"] - records[0]["train_seconds"]
    return len(timed) / seconds


def bench_speed(name: str, siglip_config: object, steps: int) -> dict[str, float]:
    from siglip_models.flax import SiglipModel as FlaxSiglip
    from siglip_models.torch import SiglipModel as TorchSiglip
    from siglip_train.jax import JaxTrainer
    from siglip_train.jax import make_mesh

    torch.manual_seed(0)
    torch_model = TorchSiglip(siglip_config).train()
    flax_model = FlaxSiglip(siglip_config)
    flax_model.load_hf_state_dict(
        {k: v.detach().numpy() for k, v in torch_model.hf_state_dict().items()}
    )
    batches = _batches(
        None,
        siglip_config.vision.image_size,
        siglip_config.text.max_length,
        siglip_config.text.vocab_size,
    )
    result = {}
    with tempfile.TemporaryDirectory() as root:
        torch_dir, jax_dir = Path(root, "torch"), Path(root, "jax")
        Trainer(torch_model, batches, _config(str(torch_dir), steps)).fit()
        result["torch"] = _steps_per_second(torch_dir)
        mesh = make_mesh(devices=jax.devices()[:1])
        JaxTrainer(flax_model, batches, _config(str(jax_dir), steps), mesh=mesh).fit()
        result["jax"] = _steps_per_second(jax_dir)
    print(
        f"{name}: torch {result['torch']:.3f} steps/s, jax {result['jax']:.3f} steps/s", flush=True
    )
    return result


def bench_memory(siglip_config: object) -> dict[str, dict[int, float]]:
    from flax import nnx

    from siglip_models.flax import SiglipModel as FlaxSiglip
    from siglip_train.jax import fsdp_partition_spec

    abstract = nnx.eval_shape(lambda: FlaxSiglip(siglip_config))
    shapes = [
        (tuple(variable.get_value().shape), np.dtype(variable.get_value().dtype).itemsize)
        for _, variable in nnx.to_flat_state(nnx.state(abstract, nnx.Param))
    ]
    modes = {
        "replicated": (False, 4 * 2**20),
        "fsdp": (True, 4 * 2**20),
        "fsdp, min_shard_bytes=0": (True, 0),
    }
    table: dict[str, dict[int, float]] = {mode: {} for mode in modes}
    for devices in (1, 2, 4, 8):
        for mode, (sharded, threshold) in modes.items():
            fsdp = devices if sharded else 1
            per_device = 0
            for shape, itemsize in shapes:
                spec = fsdp_partition_spec(
                    shape, itemsize=itemsize, fsdp_size=fsdp, min_shard_bytes=threshold
                )
                elements = int(np.prod(shape))
                if any(axis is not None for axis in spec):
                    elements //= fsdp
                per_device += 3 * elements * itemsize  # parameter + Adam mu + nu
            table[mode][devices] = per_device / 2**20
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="steps per run (first not timed)")
    parser.add_argument("--skip-b16", action="store_true", help="only the demo model")
    parser.add_argument("--out", default="bench_train.json")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch threads (1: the demo's and tiny-cpu's setting; XLA uses every core)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    from siglip_models import get_config
    from siglip_train.demo._run import demo_model_config

    demo = demo_model_config(vocab_size=1000, image_size=32, text_length=16)
    b16 = get_config("siglip-base-patch16-224")
    report: dict[str, object] = {
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({args.torch_threads} thread(s)), jax {jax.__version__}",
        "load_before": os.getloadavg(),
    }
    started = time.perf_counter()
    speeds = {"demo-tiny": bench_speed("demo-tiny", demo, args.steps)}
    if not args.skip_b16:
        speeds["ViT-B/16"] = bench_speed("ViT-B/16", b16, max(3, args.steps // 2))
    report["steps_per_second"] = speeds
    report["memory_mib_per_device_b16"] = bench_memory(b16)
    report["load_after"] = os.getloadavg()
    report["seconds"] = time.perf_counter() - started
    Path(args.out).write_text(json.dumps(report, indent=2))
    print("\n| model (batch 16, fp32 CPU) | torch steps/s | JAX steps/s | JAX / torch |")
    print("|---|---|---|---|")
    for name, speed in speeds.items():
        print(
            f"| {name} | {speed['torch']:.3f} | {speed['jax']:.3f} | {speed['jax'] / speed['torch']:.2f}x |"
        )
    memory = report["memory_mib_per_device_b16"]
    print("\n| ViT-B/16 param + Adam MiB per device | 1 | 2 | 4 | 8 |")
    print("|---|---|---|---|---|")
    for mode in memory:
        row = " | ".join(f"{memory[mode][d]:.0f}" for d in (1, 2, 4, 8))
        print(f"| {mode} | {row} |")
    print(f"\n{report['machine']}; load {report['load_before']} -> {report['load_after']}")


if __name__ == "__main__":
    main()
