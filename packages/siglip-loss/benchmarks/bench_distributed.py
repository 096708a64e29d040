"""Per-rank peak memory and step time of the distributed sigmoid loss on gloo (CPU) ranks.

Compares ``distributed_sigmoid_loss`` (``ring``, ``all_gather``) with open_clip's ``SigLipLoss``
(``bidir``, its default) when open_clip is installed (``pip install --no-deps open_clip_torch``;
only its ``loss.py`` is loaded, by path, so none of open_clip's other dependencies are needed).

Two regimes, each over the world sizes given by ``--worlds``:

- fixed global batch (``--global-batch``): ``n = N / W`` rows per rank;
- fixed local batch (``--local-batch``): ``N = n W``; a memory-flat loss keeps the same per-rank
  peak for every ``W``, an autograd ring grows with it.

A step is one forward + backward of the loss alone on ready embeddings. Peak memory is the peak of
live tensor storage created during the step (a ``TorchDispatchMode`` counts every tensor an
operator returns, until it is freed), per rank, maximum over ranks. Time is the median over
``--repeats`` steps of the slowest rank, after one warm-up step of every method, with the methods
interleaved. All ranks share this machine's cores, so times compare
methods within one row, not across world sizes.

    nox -s bench-distributed                                    # the table in docs/performance.md
    nox -s bench-distributed -- --global-batch 1024 --local-batch 256 --dim 64   # quick
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.util
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as multiprocessing
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from siglip_loss.torch import distributed_sigmoid_loss

MIB = 2**20


class LiveTensorBytes(TorchDispatchMode):
    """Bytes of tensor storage created under the mode and still alive; keeps the peak."""

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._users: dict[int, int] = {}
        self._bytes: dict[int, int] = {}
        self._tracked: set[int] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        result = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(result):
            if isinstance(leaf, torch.Tensor) and id(leaf) not in self._tracked:
                self._track(leaf)
        return result

    def _track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key, size = storage.data_ptr(), storage.nbytes()
        if size == 0:
            return
        self._tracked.add(id(tensor))
        if key not in self._users:
            self._users[key] = 0
            self._bytes[key] = size
            self.current += size
            self.peak = max(self.peak, self.current)
        self._users[key] += 1
        weakref.finalize(tensor, self._release, id(tensor), key)

    def _release(self, tensor_id: int, key: int) -> None:
        self._tracked.discard(tensor_id)
        self._users[key] -= 1
        if self._users[key] == 0:
            del self._users[key]
            self.current -= self._bytes.pop(key)


def load_open_clip_siglip_loss() -> Any | None:
    """open_clip's ``SigLipLoss`` class from its ``loss.py`` (loaded by path), or None."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "loss.py"
    loss_spec = importlib.util.spec_from_file_location("open_clip_loss_by_path", path)
    assert loss_spec is not None
    assert loss_spec.loader is not None
    module = importlib.util.module_from_spec(loss_spec)
    loss_spec.loader.exec_module(module)
    return module.SigLipLoss


def make_step(method: str, rank: int, world_size: int) -> Any:
    """A function (image, text, scale, bias) -> loss for one method."""
    if method == "open_clip":
        siglip_loss_class = load_open_clip_siglip_loss()
        assert siglip_loss_class is not None
        loss_module = siglip_loss_class(rank=rank, world_size=world_size, dist_impl="bidir")
        return lambda image, text, scale, bias: loss_module(image, text, scale, bias)
    return lambda image, text, scale, bias: distributed_sigmoid_loss(
        image, text, scale=scale, bias=bias, strategy=method
    )


def run_rank(rank: int, world_size: int, port: int, config: dict[str, Any], output: str) -> None:
    _run_rank(rank, world_size, port, config, output)
    # Only now, with every step's tensors freed, may the group go: gloo work that outlives it
    # can abort the process at exit.
    gc.collect()
    dist.destroy_process_group()


def _run_rank(rank: int, world_size: int, port: int, config: dict[str, Any], output: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(max(1, config["threads"] // world_size))
    dist.init_process_group(
        "gloo", rank=rank, world_size=world_size, timeout=datetime.timedelta(minutes=30)
    )
    batch, dim = config["local_batch"], config["dim"]
    generator = torch.Generator().manual_seed(rank)
    image = torch.nn.functional.normalize(torch.randn(batch, dim, generator=generator), dim=1)
    text = torch.nn.functional.normalize(torch.randn(batch, dim, generator=generator), dim=1)
    results: dict[str, Any] = {}
    steps = {method: make_step(method, rank, world_size) for method in config["methods"]}

    def one_step(method: str) -> None:
        image_leaf = image.clone().requires_grad_(True)
        text_leaf = text.clone().requires_grad_(True)
        scale = torch.tensor(10.0, requires_grad=True)
        bias = torch.tensor(-10.0, requires_grad=True)
        steps[method](image_leaf, text_leaf, scale, bias).backward()

    for method in steps:  # warm-up: first-touch page faults, thread pools, gloo pairs
        one_step(method)
    times: dict[str, list[float]] = {method: [] for method in steps}
    for _ in range(config["repeats"]):
        for method in steps:  # interleaved, so that load from other processes hits all alike
            dist.barrier()
            start = time.perf_counter()
            one_step(method)
            elapsed = torch.tensor(time.perf_counter() - start, dtype=torch.float64)
            dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
            times[method].append(float(elapsed))
    for method in steps:
        dist.barrier()
        tracker = LiveTensorBytes()
        with tracker:
            one_step(method)
        peak = torch.tensor(tracker.peak, dtype=torch.float64)
        dist.all_reduce(peak, op=dist.ReduceOp.MAX)
        results[method] = {"seconds": statistics.median(times[method]), "peak_bytes": float(peak)}
    if rank == 0:
        Path(output).write_text(json.dumps(results), encoding="utf-8")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def measure(world_size: int, config: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        output = str(Path(directory) / "result.json")
        multiprocessing.spawn(
            run_rank, args=(world_size, free_port(), config, output), nprocs=world_size
        )
        result: dict[str, Any] = json.loads(Path(output).read_text(encoding="utf-8"))
        return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--global-batch", type=int, default=8192)
    parser.add_argument("--local-batch", type=int, default=2048)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--worlds", default="1,2,4", help="comma-separated world sizes")
    parser.add_argument(
        "--regimes",
        default="global,local",
        help="comma-separated: global (fixed global batch), local (fixed local batch)",
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = parser.parse_args(argv)
    worlds = [int(w) for w in args.worlds.split(",")]
    methods = ["ring", "all_gather"]
    if load_open_clip_siglip_loss() is not None:
        methods.append("open_clip")
    else:
        print("open_clip is not installed: comparing ring and all_gather only", file=sys.stderr)
    rows = []
    regimes = {"global": "fixed global batch", "local": "fixed local batch"}
    for regime in [regimes[name] for name in args.regimes.split(",")]:
        for world_size in worlds:
            if regime == "fixed global batch":
                if args.global_batch % world_size:
                    raise SystemExit(
                        f"--global-batch {args.global_batch} not divisible by {world_size}"
                    )
                local_batch = args.global_batch // world_size
            else:
                local_batch = args.local_batch
            config = {
                "local_batch": local_batch,
                "dim": args.dim,
                "methods": methods,
                "repeats": args.repeats,
                "threads": args.threads,
            }
            result = measure(world_size, config)
            rows.append(
                {
                    "regime": regime,
                    "world_size": world_size,
                    "local_batch": local_batch,
                    "global_batch": local_batch * world_size,
                    **{f"{m}_{k}": v[k] for m, v in result.items() for k in v},
                }
            )
            print(f"done: {regime}, W={world_size}", file=sys.stderr, flush=True)
    header = ["regime", "W", "n (local)", "N (global)"]
    for method in methods:
        header += [f"{method} peak MiB", f"{method} s/step"]
    print(
        f"\nD = {args.dim}, float32, gloo on 127.0.0.1, {args.threads} threads shared by all ranks\n"
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        cells = [row["regime"], str(row["world_size"]), str(row["local_batch"])]
        cells.append(str(row["global_batch"]))
        for method in methods:
            cells.append(f"{row[f'{method}_peak_bytes'] / MIB:.1f}")
            cells.append(f"{row[f'{method}_seconds']:.3f}")
        print("| " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
