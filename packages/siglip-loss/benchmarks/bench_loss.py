"""Time and peak memory of the sigmoid loss (forward + backward) against the three-matmul limit.

For every framework (torch, jax), dtype (float32; bfloat16 for torch), batch N and method, one
forward + backward of the loss alone on ready ``[N, dim]`` embeddings (gradients of both
embeddings, the scale and the bias) is measured in a FRESH subprocess:

- ``limit``: the three ``N x N x dim`` matmuls every exact implementation must do (logits, then
  ``G @ Y`` and ``G.T @ X``), with nothing else: no loss, no autograd. The floor for time.
- ``fused`` / ``chunked`` / ``reference``: ``siglip_loss``'s ``sigmoid_loss(implementation=...)``.
- ``naive``: the textbook formula with autograd, as in Hugging Face's ``SiglipModel`` or
  big_vision: dense logits, a dense ``2 I - 1`` label matrix, ``-logsigmoid(labels * logits)``
  summed over columns and averaged over rows.
- ``open_clip`` (torch): open_clip's ``SigLipLoss`` when ``open_clip_torch`` is installed (only its
  ``loss.py`` is loaded, by path: ``pip install --no-deps open_clip_torch`` is enough).
- ``fused_groups`` / ``fused_groups_inverse_count``: the fused loss with group ids (several
  positives per row), ``positive_weighting="uniform"`` / ``"inverse_count"``. At N = M the ids
  are random with about 5 per group on each side, so every tile holds positives; with
  ``--text-batch M`` (rectangular, groups only) each image gets M / N captions, dealt at random.

Time is the median of ``--repeats`` runs (torch: after one warm-up run up to N = 4096; JAX:
after compilation). Peak extra memory is measured on the first of those runs: the process's resident-set
high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``) minus its resident set just
before, after ``malloc_trim`` has handed freed heap memory back to the system (so the run cannot
reuse it unseen). It includes everything the step allocates: for every method the two
``[N, dim]`` gradients (2 x 48 MiB at N = 16384, dim = 768, float32), for the limit its ``N x N``
matrix.

Configurations whose estimated memory exceeds what the machine has free are skipped (and listed).

    nox -s bench-loss                                   # the table in docs/performance.md
    nox -s bench-loss -- --sizes 1024 2048 --repeats 1  # a quick run
    nox -s bench-loss -- --merge a/bench_loss.json b/bench_loss.json --out merged
    python packages/siglip-loss/benchmarks/bench_loss.py --frameworks torch --methods limit fused
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MIB = 2**20
WARM_UP_UP_TO = 4096
METHODS = (
    "limit",
    "fused",
    "fused_groups",
    "fused_groups_inverse_count",
    "chunked",
    "reference",
    "naive",
    "open_clip",
)
GROUP_METHODS = {"fused_groups": "uniform", "fused_groups_inverse_count": "inverse_count"}
DEFAULT_SIZES = (1024, 4096, 8192, 16384, 32768)
# Bytes per logit that each method keeps alive at its peak (float32), for skipping what cannot fit.
DENSE_BYTES_PER_PAIR = {
    ("torch", "limit"): 4.5,
    ("torch", "naive"): 22.0,
    ("torch", "reference"): 22.0,
    ("torch", "open_clip"): 22.0,
    ("jax", "limit"): 4.5,
    ("jax", "naive"): 12.0,
    ("jax", "reference"): 12.0,
}
METHOD_COLORS = {
    "limit": "black",
    "fused": "tab:green",
    "fused_groups": "tab:olive",
    "fused_groups_inverse_count": "tab:cyan",
    "chunked": "tab:blue",
    "reference": "tab:orange",
    "naive": "tab:red",
    "open_clip": "tab:purple",
}
TARGETS = (
    # framework, dtype, N, method, time ratio to the limit, peak extra MiB
    ("torch", "float32", 16384, "fused", 1.2, 160 * 10**6 / MIB),
    ("jax", "float32", 16384, "fused", 1.3, 200 * 10**6 / MIB),
)
GROUP_TARGETS = (
    # framework, dtype, N, method: time <= 1.1x fused without groups, and extra memory over it
    # O(N + M): the ids, weights and sort orders are a few hundred KiB at N = 16384; 8 MiB allows
    # for the resident-set measurement's noise.
    ("torch", "float32", 16384, "fused_groups", 1.1, 8.0),
    ("torch", "float32", 16384, "fused_groups_inverse_count", 1.1, 8.0),
    ("jax", "float32", 16384, "fused_groups", 1.1, 8.0),
    ("jax", "float32", 16384, "fused_groups_inverse_count", 1.1, 8.0),
)


# --------------------------------------------------------------------------------------------
# Worker: one configuration, in its own process.
# --------------------------------------------------------------------------------------------


def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> None:
    # Writing 5 resets VmHWM to the current resident set (Linux >= 4.0).
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def load_open_clip_siglip_loss() -> Any | None:
    """open_clip's ``SigLipLoss`` class from its ``loss.py`` (loaded by path), or None."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "loss.py"
    if not path.exists():
        return None
    loss_spec = importlib.util.spec_from_file_location("open_clip_loss_by_path", path)
    if loss_spec is None or loss_spec.loader is None:
        return None
    module = importlib.util.module_from_spec(loss_spec)
    loss_spec.loader.exec_module(module)
    return getattr(module, "SigLipLoss", None)


def group_ids(batch: int, text_batch: int) -> tuple[Any, Any]:
    """int64 ids: random with ~5 per group at N = M; M / N captions per image when rectangular."""
    import numpy as np

    rng = np.random.default_rng(0)
    if text_batch == batch:
        groups = max(1, batch // 5)
        return rng.integers(0, groups, batch), rng.integers(0, groups, text_batch)
    images = np.arange(batch)
    return images, rng.permutation(np.resize(images, text_batch))


def _torch_step(
    method: str, batch: int, dim: int, dtype_name: str, block_size: int | None, text_batch: int
) -> Any:
    import torch
    import torch.nn.functional as F

    from siglip_loss.torch import sigmoid_loss

    dtype = getattr(torch, dtype_name)
    generator = torch.Generator().manual_seed(0)
    image = F.normalize(torch.randn(batch, dim, generator=generator), dim=-1).to(dtype)
    text = F.normalize(torch.randn(text_batch, dim, generator=generator), dim=-1).to(dtype)
    image.requires_grad_()
    text.requires_grad_()
    scale = torch.tensor(10.0, requires_grad=True)
    bias = torch.tensor(-10.0, requires_grad=True)
    leaves = (image, text, scale, bias)

    if method == "limit":
        plain_image, plain_text = image.detach(), text.detach()

        def step() -> Any:
            with torch.no_grad():
                logits = plain_image @ plain_text.T
                return logits @ plain_text, logits.T @ plain_image

        return step

    if method == "naive":

        def loss_fn() -> torch.Tensor:
            logits = scale * image.float() @ text.float().T + bias
            labels = 2 * torch.eye(batch) - torch.ones(batch, batch)
            return -F.logsigmoid(labels * logits).sum(dim=-1).mean()

    elif method == "open_clip":
        siglip_loss_class = load_open_clip_siglip_loss()
        if siglip_loss_class is None:
            raise RuntimeError("open_clip is not installed")
        open_clip_loss = siglip_loss_class()

        def loss_fn() -> torch.Tensor:
            loss: torch.Tensor = open_clip_loss(image, text, scale, bias)
            return loss

    elif method in GROUP_METHODS:
        image_ids, text_ids = (torch.from_numpy(ids) for ids in group_ids(batch, text_batch))

        def loss_fn() -> torch.Tensor:
            return sigmoid_loss(
                image,
                text,
                scale=scale,
                bias=bias,
                image_groups=image_ids,
                text_groups=text_ids,
                positive_weighting=GROUP_METHODS[method],  # type: ignore[arg-type]
                implementation="fused",
                block_size=block_size,
            )

    else:

        def loss_fn() -> torch.Tensor:
            options: dict[str, Any] = {"implementation": method}
            if method != "reference":
                options["block_size"] = block_size
            return sigmoid_loss(image, text, scale=scale, bias=bias, **options)

    def step() -> Any:
        loss = loss_fn()
        loss.backward()
        # Free the gradients now: a later run must not reuse their memory unseen.
        for leaf in leaves:
            leaf.grad = None
        return loss.detach()

    return step


def _jax_step(
    method: str, batch: int, dim: int, dtype_name: str, block_size: int | None, text_batch: int
) -> Any:
    import jax
    import jax.numpy as jnp

    from siglip_loss.jax import l2_normalize
    from siglip_loss.jax import sigmoid_loss

    dtype = jnp.dtype(dtype_name)
    image = l2_normalize(jax.random.normal(jax.random.key(0), (batch, dim))).astype(dtype)
    text = l2_normalize(jax.random.normal(jax.random.key(1), (text_batch, dim))).astype(dtype)
    scale, bias = jnp.float32(10.0), jnp.float32(-10.0)

    if method == "limit":

        @jax.jit
        def matmuls(image: jax.Array, text: jax.Array) -> Any:
            logits = image @ text.T
            return logits @ text, logits.T @ image

        compiled = matmuls.lower(image, text).compile()
        return lambda: jax.block_until_ready(compiled(image, text))

    if method == "naive":

        def loss_fn(image: jax.Array, text: jax.Array, scale: jax.Array, bias: jax.Array) -> Any:
            logits = scale * image.astype(jnp.float32) @ text.astype(jnp.float32).T + bias
            labels = 2 * jnp.eye(batch) - jnp.ones((batch, batch))
            return -jnp.mean(jnp.sum(jax.nn.log_sigmoid(labels * logits), axis=-1))

    elif method in GROUP_METHODS:
        image_ids, text_ids = (jnp.asarray(ids) for ids in group_ids(batch, text_batch))

        def loss_fn(image: jax.Array, text: jax.Array, scale: jax.Array, bias: jax.Array) -> Any:
            return sigmoid_loss(
                image,
                text,
                scale=scale,
                bias=bias,
                image_groups=image_ids,
                text_groups=text_ids,
                positive_weighting=GROUP_METHODS[method],  # type: ignore[arg-type]
                implementation="fused",
                block_size=block_size,
            )

    else:

        def loss_fn(image: jax.Array, text: jax.Array, scale: jax.Array, bias: jax.Array) -> Any:
            options: dict[str, Any] = {"implementation": method}
            if method != "reference":
                options["block_size"] = block_size
            return sigmoid_loss(image, text, scale=scale, bias=bias, **options)

    value_and_grad = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1, 2, 3)))
    compiled = value_and_grad.lower(image, text, scale, bias).compile()
    return lambda: jax.block_until_ready(compiled(image, text, scale, bias))


def _release_free_memory() -> None:
    # Hand freed heap memory back to the system, so the next run's resident-set growth is its own.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def run_worker(arguments: argparse.Namespace) -> None:
    """Measure one configuration and print one JSON line."""
    make_step = _torch_step if arguments.framework == "torch" else _jax_step
    step = make_step(
        arguments.method,
        arguments.batch,
        arguments.dim,
        arguments.dtype,
        arguments.block_size,
        arguments.text_batch or arguments.batch,
    )
    if arguments.framework == "torch" and arguments.batch <= WARM_UP_UP_TO:
        # First-call overheads matter only at small batch; JAX has compiled already.
        step()
    times = []
    for repeat in range(arguments.repeats):
        if repeat == 0:
            _release_free_memory()
            _reset_peak_rss()
            before = _rss_bytes("VmRSS")
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        if repeat == 0:
            peak_extra_mib = (_rss_bytes("VmHWM") - before) / MIB
    result = {
        "times_s": times,
        "median_s": statistics.median(times),
        "peak_extra_mib": peak_extra_mib,
    }
    print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------
# Driver: every configuration in fresh subprocesses, then the table, JSON and plot.
# --------------------------------------------------------------------------------------------


def _available_bytes() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _estimated_bytes(framework: str, method: str, batch: int, text_batch: int, dim: int) -> float:
    pairs = DENSE_BYTES_PER_PAIR.get((framework, method), 0.0) * batch * text_batch
    return pairs + 4.0 * (batch + text_batch) * dim * 4  # inputs, gradients, temporaries


def _run_subprocess(arguments: argparse.Namespace, config: dict[str, Any]) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--framework",
        config["framework"],
        "--method",
        config["method"],
        "--batch",
        str(config["batch"]),
        "--dim",
        str(arguments.dim),
        "--dtype",
        config["dtype"],
        "--repeats",
        str(arguments.repeats),
        "--text-batch",
        str(config["text_batch"]),
    ]
    if arguments.block_size is not None:
        command += ["--block-size", str(arguments.block_size)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=arguments.timeout)
    for line in completed.stdout.splitlines():
        if line.startswith("RESULT "):
            parsed: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
            return parsed
    tail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
    return {"error": f"exit {completed.returncode}: " + " | ".join(tail)}


def _configurations(arguments: argparse.Namespace) -> list[dict[str, Any]]:
    configs = []
    for framework in arguments.frameworks:
        dtypes = ["float32", "bfloat16"] if framework == "torch" else ["float32"]
        for dtype in dtypes:
            if dtype not in arguments.dtypes:
                continue
            for batch in arguments.sizes:
                text_batch = arguments.text_batch or batch
                for method in arguments.methods:
                    if framework == "jax" and method == "open_clip":
                        continue
                    if text_batch != batch and method not in ("limit", *GROUP_METHODS):
                        continue  # without groups the batches must agree
                    configs.append(
                        {
                            "framework": framework,
                            "dtype": dtype,
                            "batch": batch,
                            "text_batch": text_batch,
                            "method": method,
                        }
                    )
    return configs


def _format_time(record: dict[str, Any], limit: dict[str, Any] | None) -> str:
    if "median_s" not in record:
        return record.get("skipped", record.get("error", "n/a")).split(":")[0]
    text = f"{record['median_s']:.3g} s"
    if limit is not None and "median_s" in limit and record["method"] != "limit":
        text += f" ({record['median_s'] / limit['median_s']:.2f}x)"
    return text


def _format_memory(record: dict[str, Any], limit: dict[str, Any] | None) -> str:
    if "peak_extra_mib" not in record:
        return "n/a" if "median_s" in record else ""
    mib = record["peak_extra_mib"]
    text = f"{mib / 1024:.2f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"
    if limit is not None and limit.get("peak_extra_mib") and record["method"] != "limit":
        text += f" ({mib / limit['peak_extra_mib']:.2f}x)"
    return text


def _sizes(record: dict[str, Any]) -> tuple[int, int]:
    """(N, M) of a record; older records have no text batch (N = M)."""
    return record["batch"], record.get("text_batch", record["batch"])


def markdown_tables(records: list[dict[str, Any]], methods: list[str]) -> str:
    """One table per framework and dtype: time and peak extra memory, ratios to the limit."""
    lines: list[str] = []
    groups = sorted({(r["framework"], r["dtype"]) for r in records})
    for framework, dtype in groups:
        group = [r for r in records if r["framework"] == framework and r["dtype"] == dtype]
        present = [m for m in methods if any(r["method"] == m for r in group)]
        lines.append(f"**{framework}, {dtype}** (ratio to the three-matmul limit in brackets)")
        lines.append("")
        lines.append("| N | | " + " | ".join(present) + " |")
        lines.append("|---|---|" + "---|" * len(present))
        for batch, text_batch in sorted({_sizes(r) for r in group}):
            by_method = {r["method"]: r for r in group if _sizes(r) == (batch, text_batch)}
            limit = by_method.get("limit")
            times = [_format_time(by_method[m], limit) if m in by_method else "" for m in present]
            memory = [
                _format_memory(by_method[m], limit) if m in by_method else "" for m in present
            ]
            size = str(batch) if text_batch == batch else f"{batch} x {text_batch}"
            lines.append(f"| {size} | time | " + " | ".join(times) + " |")
            lines.append("| | peak extra memory | " + " | ".join(memory) + " |")
        lines.append("")
    return "\n".join(lines)


def target_report(records: list[dict[str, Any]]) -> str:
    """The speed and memory targets (TARGETS), each met or missed with the measured figure."""
    index = {
        (r["framework"], r["dtype"], r["batch"], r["method"]): r
        for r in records
        if _sizes(r)[0] == _sizes(r)[1]
    }
    lines = ["Targets (dim 768):", ""]
    for framework, dtype, batch, method, ratio_target, memory_target in TARGETS:
        record = index.get((framework, dtype, batch, method))
        limit = index.get((framework, dtype, batch, "limit"))
        if not record or not limit or "median_s" not in record or "median_s" not in limit:
            lines.append(f"- {framework} {method} N={batch}: not measured")
            continue
        ratio = record["median_s"] / limit["median_s"]
        memory = record.get("peak_extra_mib", float("nan"))
        lines.append(
            f"- {framework} {method} N={batch}: time {ratio:.2f}x the limit "
            f"(target <= {ratio_target}x: {'met' if ratio <= ratio_target else 'MISSED'}), "
            f"peak extra memory {memory:.0f} MiB (target <= {memory_target:.0f} MiB: "
            f"{'met' if memory <= memory_target else 'MISSED'})"
        )
    for framework, dtype, batch, method, ratio_target, extra_target in GROUP_TARGETS:
        record = index.get((framework, dtype, batch, method))
        fused = index.get((framework, dtype, batch, "fused"))
        if not record or not fused or "median_s" not in record or "median_s" not in fused:
            continue
        ratio = record["median_s"] / fused["median_s"]
        extra = record.get("peak_extra_mib", float("nan")) - fused.get("peak_extra_mib", 0.0)
        lines.append(
            f"- {framework} {method} N=M={batch}: time {ratio:.2f}x fused without groups "
            f"(target <= {ratio_target}x: {'met' if ratio <= ratio_target else 'MISSED'}), "
            f"peak extra memory {extra:+.0f} MiB over it (target O(N + M), <= {extra_target:.0f}"
            f" MiB: {'met' if extra <= extra_target else 'MISSED'})"
        )
    for framework in ("torch", "jax"):
        fused = index.get((framework, "float32", 1024, "fused"))
        reference = index.get((framework, "float32", 1024, "reference"))
        if fused and reference and "median_s" in fused and "median_s" in reference:
            ratio = fused["median_s"] / reference["median_s"]
            verdict = "met" if ratio <= 1.0 else "MISSED"
            lines.append(
                f"- {framework} fused N=1024: {ratio:.2f}x the reference's time "
                f"(target <= 1.0x: {verdict})"
            )
    return "\n".join(lines)


def plot(records: list[dict[str, Any]], path: Path) -> None:
    """Log-log time and peak memory against N, one line per framework, dtype and method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(13, 5))
    records = [r for r in records if _sizes(r)[0] == _sizes(r)[1]]  # N = M only
    series = sorted({(r["framework"], r["dtype"], r["method"]) for r in records})
    for framework, dtype, method in series:
        points = sorted(
            (r["batch"], r.get("median_s"), r.get("peak_extra_mib"))
            for r in records
            if (r["framework"], r["dtype"], r["method"]) == (framework, dtype, method)
        )
        label = f"{framework} {dtype} {method}"
        style = {"torch": "-", "jax": "--"}[framework] if dtype == "float32" else ":"
        color = METHOD_COLORS[method]
        marker = {"torch": "o", "jax": "s"}[framework]
        timed = [(n, t) for n, t, _ in points if t is not None]
        measured = [(n, m) for n, _, m in points if m is not None and m > 0]
        if timed:
            time_axis.plot(
                *zip(*timed, strict=True), style, color=color, marker=marker, label=label
            )
        if measured:
            memory_axis.plot(
                *zip(*measured, strict=True), style, color=color, marker=marker, label=label
            )
    for axis, ylabel in (
        (time_axis, "forward + backward time (s)"),
        (memory_axis, "peak extra memory (MiB)"),
    ):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("batch N")
        axis.set_ylabel(ylabel)
        axis.grid(True, which="both", alpha=0.3)
    memory_axis.legend(fontsize=7, loc="upper left", ncol=2)
    figure.suptitle("SigLIP sigmoid loss, dim 768: siglip_loss vs the three-matmul limit")
    figure.tight_layout()
    temporary = path.with_suffix(".tmp.png")
    figure.savefig(temporary, dpi=120)
    os.replace(temporary, path)


def _write_atomic(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        handle.write(text)
    os.replace(handle.name, path)


def write_outputs(report: dict[str, Any], methods: list[str], out: Path) -> None:
    """Write the JSON report, the markdown tables with the targets, and the plot; print them."""
    records = report["records"]
    _write_atomic(out / "bench_loss.json", json.dumps(report, indent=2))
    tables = markdown_tables(records, methods)
    targets = target_report(records)
    _write_atomic(out / "bench_loss.md", tables + "\n" + targets + "\n")
    plot(records, out / "bench_loss.png")
    print()
    print(tables)
    print(targets)
    print(f"\nwrote {out / 'bench_loss.json'}, {out / 'bench_loss.md'}, {out / 'bench_loss.png'}")


def merge_reports(paths: list[str], out: Path) -> None:
    """Combine the records of several runs (e.g. small N with more repeats, large N with fewer);
    a configuration measured in several runs keeps its last measurement."""
    reports = [json.loads(Path(path).read_text()) for path in paths]
    merged = dict(reports[0])
    merged["runs"] = [{k: v for k, v in r.items() if k != "records"} for r in reports]
    # A configuration measured again in a later run replaces the earlier measurement.
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for report in reports:
        for record in report["records"]:
            key = (record["framework"], record["dtype"], *_sizes(record), record["method"])
            latest.pop(key, None)
            latest[key] = record
    merged["records"] = list(latest.values())
    write_outputs(merged, list(METHODS), out)


def run_driver(arguments: argparse.Namespace) -> None:
    out = Path(arguments.out)
    out.mkdir(parents=True, exist_ok=True)
    if arguments.merge:
        merge_reports(arguments.merge, out)
        return
    started = datetime.datetime.now(datetime.UTC)
    records: list[dict[str, Any]] = []
    for config in _configurations(arguments):
        record = dict(config)
        needed = _estimated_bytes(
            config["framework"],
            config["method"],
            config["batch"],
            config["text_batch"],
            arguments.dim,
        )
        available = _available_bytes()
        if needed > 0.7 * available:
            record["skipped"] = (
                f"skipped: needs ~{needed / 2**30:.1f} GiB, {available / 2**30:.1f} GiB free"
            )
        else:
            record.update(_run_subprocess(arguments, config))
        records.append(record)
        summary = {k: v for k, v in record.items() if k not in ("times_s",)}
        print(json.dumps(summary), flush=True)
    methods = list(arguments.methods)
    report = {
        "started": started.isoformat(),
        "finished": datetime.datetime.now(datetime.UTC).isoformat(),
        "dim": arguments.dim,
        "block_size": arguments.block_size,
        "repeats": arguments.repeats,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average": os.getloadavg(),
        },
        "records": records,
    }
    write_outputs(report, methods, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument(
        "--frameworks", nargs="+", default=["torch", "jax"], choices=["torch", "jax"]
    )
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument(
        "--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"]
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block-size", type=int, default=None)
    parser.add_argument(
        "--text-batch",
        type=int,
        default=None,
        help="M texts per N images (rectangular, groups only; default M = N)",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per subprocess")
    parser.add_argument("--out", default="bench-results/loss")
    parser.add_argument(
        "--merge", nargs="+", metavar="JSON", help="combine earlier runs' bench_loss.json files"
    )
    # Worker mode (internal): one configuration in this process.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--framework", choices=["torch", "jax"], help=argparse.SUPPRESS)
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        run_worker(arguments)
    else:
        run_driver(arguments)


if __name__ == "__main__":
    main()
