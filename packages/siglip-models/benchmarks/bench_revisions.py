"""Tower throughput of this checkout against another git revision, in one process, CPU fp32.

    python packages/siglip-models/benchmarks/bench_revisions.py --baseline <git-rev>
    python packages/siglip-models/benchmarks/bench_revisions.py --baseline HEAD~1 --repeats 21

A refactoring must not slow the towers, and on a shared machine two separate runs differ by more
than the change being measured. So both versions run in the same process on the same weights and
inputs, timed round by round in rotating order: the baseline's ``src/siglip_models`` is extracted
with ``git archive`` and imported as ``siglip_models_baseline``. A second instance of the baseline
("baseline again") measures the noise floor: a difference smaller than the baseline's difference
with itself is not a difference. Only public API is used (``SiglipModel``, ``encode_image``,
``encode_text``, ``hf_state_dict``, ``load_hf_state_dict``), so any revision with it works.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parents[1]


def _extract_baseline(revision: str, target: Path) -> None:
    """``src/siglip_models`` at ``revision`` -> ``target/siglip_models_baseline``, imports renamed."""
    root = subprocess.run(
        ["git", "-C", str(PACKAGE), "rev-parse", "--show-toplevel"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    source = PACKAGE.relative_to(root) / "src" / "siglip_models"
    archive = subprocess.run(
        ["git", "-C", root, "archive", revision, str(source)], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            relative = Path(member.name).relative_to(source)
            destination = target / "siglip_models_baseline" / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            content = tar.extractfile(member)
            assert content is not None
            text = content.read().decode("utf-8")
            destination.write_text(text.replace("siglip_models", "siglip_models_baseline"))


def _interleaved(runs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds per call; the order rotates every round so no variant always goes first."""
    for run in runs.values():
        run()  # warm-up (and compile, for jit)
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for index in range(repeats):
        for name in names[index % len(names) :] + names[: index % len(names)]:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="git revision to compare against")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--image-batch", type=int, default=8)
    parser.add_argument("--text-batch", type=int, default=32)
    parser.add_argument("--model", default="siglip-base-patch16-224")
    parser.add_argument("--skip", nargs="*", default=[], choices=["torch", "prepacked", "flax"])
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = (
        f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={args.threads}"
    )
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    directory = tempfile.mkdtemp(prefix="bench-revisions-")
    _extract_baseline(args.baseline, Path(directory))
    sys.path.insert(0, directory)

    import jax
    import jax.numpy as jnp
    import numpy as np
    import siglip_models_baseline.flax  # type: ignore[import-not-found]
    import siglip_models_baseline.torch  # type: ignore[import-not-found]
    import torch
    from flax import nnx

    import siglip_models.flax
    import siglip_models.torch

    torch.set_num_threads(args.threads)

    def load() -> str:
        return " ".join(open("/proc/loadavg").read().split()[:3])

    print(
        f"# bench-revisions: {args.model}, this checkout vs {args.baseline}, fp32 CPU, "
        f"{args.threads} threads, torch {torch.__version__}, jax {jax.__version__}, "
        f"load average at start {load()}",
        flush=True,
    )
    config = siglip_models.get_config(args.model)
    reference = siglip_models.torch.SiglipModel(config)  # random from-scratch init, seed 0
    torch.manual_seed(0)
    with torch.no_grad():  # perturb biases and norms too, so nothing is at its init value
        for parameter in reference.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    weights = {key: value.detach().numpy() for key, value in reference.hf_state_dict().items()}
    versions = {
        "baseline": siglip_models_baseline,
        "baseline again": siglip_models_baseline,
        "this checkout": siglip_models,
    }

    rng = np.random.default_rng(0)
    size = config.vision.image_size
    pixels = rng.uniform(-1, 1, (args.image_batch, size, size, 3)).astype(np.float32)
    token_ids = rng.integers(0, config.text.vocab_size, (args.text_batch, config.text.max_length))
    pixels_nchw = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    ids_torch = torch.from_numpy(token_ids).long()
    pixels_jax, ids_jax = jnp.asarray(pixels), jnp.asarray(token_ids, jnp.int32)
    rows: list[tuple[str, dict[str, float]]] = []

    def measure(label: str, runs: dict[str, Callable[[], Any]], items: int) -> None:
        per_second = {name: items / t for name, t in _interleaved(runs, args.repeats).items()}
        rows.append((label, per_second))
        shown = ", ".join(f"{name} {rate:.3f}/s" for name, rate in per_second.items())
        print(f"  {label}: {shown}", flush=True)

    for variant in ("torch", "prepacked"):
        if variant in args.skip:
            continue
        models = {}
        for name, package in versions.items():
            model = package.torch.SiglipModel(
                args.model
            ).eval()  # by name: each has its own config class
            model.load_hf_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
            models[name] = model.optimize_for_cpu_inference() if variant == "prepacked" else model
        with torch.inference_mode():
            outputs = [m.encode_image(pixels_nchw[:1]) for m in models.values()]
            assert all(torch.allclose(o, outputs[0], atol=1e-4) for o in outputs), variant
            measure(
                f"torch{' prepacked' if variant == 'prepacked' else ''} image (images/s)",
                {name: lambda m=m: m.encode_image(pixels_nchw) for name, m in models.items()},
                args.image_batch,
            )
            measure(
                f"torch{' prepacked' if variant == 'prepacked' else ''} text (texts/s)",
                {name: lambda m=m: m.encode_text(ids_torch) for name, m in models.items()},
                args.text_batch,
            )
    if "flax" not in args.skip:
        image_runs, text_runs = {}, {}
        for name, package in versions.items():
            model = package.flax.SiglipModel(args.model, rngs=nnx.Rngs(0))
            model.load_hf_state_dict(weights)
            graphdef, state = nnx.split(model)
            image = jax.jit(lambda s, x, g=graphdef: nnx.merge(g, s).encode_image(x))
            text = jax.jit(lambda s, t, g=graphdef: nnx.merge(g, s).encode_text(t))
            image_runs[name] = lambda f=image, s=state: f(s, pixels_jax).block_until_ready()
            text_runs[name] = lambda f=text, s=state: f(s, ids_jax).block_until_ready()
        measure("flax jit image (images/s)", image_runs, args.image_batch)
        measure("flax jit text (texts/s)", text_runs, args.text_batch)

    print()
    print(f"Load average at end {load()}; medians of {args.repeats} interleaved rounds.")
    print()
    print(
        "| tower | baseline | baseline again | this checkout | this / baseline "
        "| noise floor (again / baseline) |"
    )
    print("|---|---|---|---|---|---|")
    for label, rate in rows:
        base, again, this = rate["baseline"], rate["baseline again"], rate["this checkout"]
        print(
            f"| {label} | {base:.3f} | {again:.3f} | {this:.3f} | {this / base:.3f} "
            f"| {again / base:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
