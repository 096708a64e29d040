"""The fault-injection suite (``nox -s chaos``): kill, starve and corrupt real training runs.

    python packages/siglip-train/scripts/chaos.py --out /tmp/chaos --kills 21

Trains a tiny model on generated shards with ``siglip-train train`` (one process, CPU), first
uninterrupted (the reference), then under faults, resuming each faulted run with
``--resume auto`` until it finishes, and compares its final weights (bytes of
``model.safetensors``), optimizer state (every tensor) and ``metrics.jsonl`` (every record but its
timings and run id) with the reference. Faults:

- random SIGKILLs: a random moment after a random step, several per run;
- SIGKILL at named points (``SIGLIP_TRAIN_FAULTS``): while a checkpoint is being written, between
  its rename and the pruning, right after a metrics record;
- a full disk: a small tmpfs as ``output_dir`` when root (else skipped), and a simulated
  ``ENOSPC``: the run must stop with one message naming the path, leave no temp directory and
  keep its last good checkpoint, and finish exactly once the space is back;
- a corrupt newest checkpoint: ``--resume auto`` falls back to the older one and still finishes
  exactly; a truncated shard: the run stops (exit 2) unless ``data.max_bad_shards`` tolerates it;
- a stopped rank (SIGSTOP, 2 processes under torchrun): the job ends within the step watchdog and
  the collective timeout instead of hanging for 30 minutes.

Prints a markdown table (also ``OUT/chaos.md``) and exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

STEPS = 40
TIMING = {"samples_per_second", "train_seconds", "run"}


@dataclasses.dataclass
class Case:
    name: str
    faults: int
    passed: bool
    detail: str
    seconds: float


def make_data(root: Path) -> Path:
    import siglip_data

    rng = np.random.default_rng(0)
    words = ["red", "green", "blue", "cat", "dog", "car", "big", "small"]
    samples = [
        (
            rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
            f"a {words[i % 8]} {words[(i // 8) % 8]}",
        )
        for i in range(96)
    ]
    siglip_data.write_shards(samples, root / "shards", samples_per_shard=24)
    siglip_data.train_sentencepiece(
        [caption for _, caption in samples] * 3, root / "tok.model", vocab_size=24
    )
    return root


def command(data: Path, run: Path, *overrides: str, shards: Path | None = None) -> list[str]:
    fields = [
        "model.name=tiny-test",
        f"data.shards={json.dumps([str(shards or data / 'shards')])}",
        f"data.tokenizer={data / 'tok.model'}",
        "data.batch_size=8",
        f"output_dir={run}",
        f"steps={STEPS}",
        "device=cpu",
        "num_threads=1",
        "optimizer.warmup_steps=4",
        "logging.every_steps=1",
        "logging.progress_bar=false",
        "logging.tensorboard=false",
        "checkpoint.every_steps=4",
        "checkpoint.keep_last=2",
        *overrides,
    ]
    return [sys.executable, "-m", "siglip_train", "train"] + [
        item for field in fields for item in ("--set", field)
    ]


def environment(faults: str = "") -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "SIGLIP_TRAIN_FAULTS": faults}


def run_to_end(
    data: Path, run: Path, *overrides: str, faults: str = "", shards: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command(data, run, *overrides, shards=shards), "--resume", "auto"],
        env=environment(faults),
        capture_output=True,
        text=True,
        timeout=1800,
    )


def metrics_of(run: Path) -> list[dict[str, Any]]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def final(run: Path) -> tuple[bytes, dict[str, Any], list[dict[str, Any]]]:
    steps = sorted((run / "checkpoints").glob("step_*"))
    last = steps[-1]
    weights = (last / "model" / "model.safetensors").read_bytes()
    optimizer = torch.load(last / "training_state.pt", weights_only=False)["optimizer"]
    metrics = [{k: v for k, v in r.items() if k not in TIMING} for r in metrics_of(run)]
    return weights, optimizer, metrics


def differences(reference: Path, run: Path) -> list[str]:
    """What differs from the reference run: weights, optimizer state, metrics."""
    weights_a, optimizer_a, metrics_a = final(reference)
    weights_b, optimizer_b, metrics_b = final(run)
    found = []
    if weights_a != weights_b:
        found.append("weights")
    for key, value in optimizer_a["state"].items():
        other = optimizer_b["state"].get(key, {})
        if any(not torch.equal(t, other.get(n, torch.empty(0))) for n, t in value.items()):
            found.append("optimizer state")
            break
    if metrics_a != metrics_b:
        found.append(f"metrics ({len(metrics_a)} vs {len(metrics_b)} records)")
    return found


def random_kills(data: Path, reference: Path, run: Path, kills: int, rng: random.Random) -> Case:
    """SIGKILL ``kills`` times at random moments, resuming with --resume auto each time."""
    started = time.monotonic()
    done = 0
    while done < kills:
        before = len(metrics_of(run))
        process = subprocess.Popen(
            [*command(data, run), "--resume", "auto"],
            env=environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        target = before + rng.randint(1, 6)  # let it train a few steps first
        while len(metrics_of(run)) < target and process.poll() is None:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.4))  # then a random moment (mid-step, mid-write, ...)
        if process.poll() is not None:
            break  # it finished first
        process.send_signal(signal.SIGKILL)
        process.wait()
        done += 1
    finished = run_to_end(data, run)
    ok = finished.returncode == 0
    diff = differences(reference, run) if ok else [f"exit {finished.returncode}"]
    return Case(
        f"random SIGKILL x{done}", done, ok and not diff, ", ".join(diff) or "identical",
        time.monotonic() - started,
    )  # fmt: skip


def point_kill(data: Path, reference: Path, run: Path, point: str) -> Case:
    started = time.monotonic()
    killed = run_to_end(data, run, faults=point)
    ok = killed.returncode == -signal.SIGKILL
    finished = run_to_end(data, run)
    ok = ok and finished.returncode == 0
    diff = (
        differences(reference, run) if finished.returncode == 0 else [f"exit {finished.returncode}"]
    )
    return Case(
        f"SIGKILL at {point}", 1, ok and not diff, ", ".join(diff) or "identical",
        time.monotonic() - started,
    )  # fmt: skip


def disk_full_checks(run: Path, result: subprocess.CompletedProcess[str]) -> list[str]:
    problems = []
    lines = [line for line in result.stderr.splitlines() if line.startswith("siglip-train")]
    if result.returncode != 1:
        problems.append(f"exit {result.returncode}")
    if len(lines) != 1 or "No space left on device" not in lines[0] or str(run) not in lines[0]:
        problems.append(f"message {lines!r}")
    root = run / "checkpoints"
    if root.is_dir() and any(p.name.startswith(".") for p in root.iterdir()):
        problems.append("temp directory left")
    return problems


def simulated_enospc(data: Path, reference: Path, run: Path) -> Case:
    started = time.monotonic()
    failed = run_to_end(data, run, faults="checkpoint.files_written@3:enospc")
    problems = disk_full_checks(run, failed)
    finished = run_to_end(data, run)
    problems += differences(reference, run) if finished.returncode == 0 else ["no finish"]
    return Case(
        "ENOSPC (simulated) in a checkpoint write", 1, not problems,
        ", ".join(problems) or "one message with path and cause; resumed identical",
        time.monotonic() - started,
    )  # fmt: skip


def tmpfs_full(data: Path, reference: Path, work: Path) -> Case:
    started = time.monotonic()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return Case("full tmpfs", 0, True, "skipped: needs root", 0.0)
    mount = work / "tmpfs"
    mount.mkdir(parents=True, exist_ok=True)
    checkpoint = sorted((reference / "checkpoints").glob("step_*"))[-1]
    one = sum(f.stat().st_size for f in checkpoint.rglob("*") if f.is_file())
    size = int(2.5 * one) // 4096 * 4096  # two checkpoints fit, the third does not
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True)
    try:
        run = mount / "run"
        failed = run_to_end(data, run)
        problems = disk_full_checks(run, failed)
        kept = sorted(p.name for p in (run / "checkpoints").glob("step_*"))
        moved = work / "tmpfs-run"
        shutil.copytree(run, moved)
    finally:
        subprocess.run(["umount", str(mount)], check=False)
    finished = run_to_end(data, moved)
    problems += differences(reference, moved) if finished.returncode == 0 else ["no finish"]
    return Case(
        f"full disk ({size // 1024} KiB tmpfs; kept {', '.join(kept)})", 1, not problems,
        ", ".join(problems) or "one message with path and cause; resumed elsewhere identical",
        time.monotonic() - started,
    )  # fmt: skip


def corrupt_newest(data: Path, reference: Path, run: Path) -> Case:
    started = time.monotonic()
    run_to_end(data, run, faults="step.end@19")  # killed at step 19: checkpoints 12, 16
    newest = sorted((run / "checkpoints").glob("step_*"))[-1]
    weights = newest / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-16] + b"\xff" * 16)
    finished = run_to_end(data, run)
    problems = [] if "RESUMING FROM THE OLDER" in finished.stderr else ["no loud warning"]
    problems += differences(reference, run) if finished.returncode == 0 else ["no finish"]
    return Case(
        f"corrupt newest checkpoint ({newest.name})", 1, not problems,
        ", ".join(problems) or "fell back to the older one with a warning; identical",
        time.monotonic() - started,
    )  # fmt: skip


def corrupt_shard(data: Path, work: Path) -> Case:
    started = time.monotonic()
    shards = work / "damaged-shards"
    shutil.copytree(data / "shards", shards)
    victim = sorted(shards.glob("*.tar"))[1]
    victim.write_bytes(victim.read_bytes()[:5000])
    strict = run_to_end(data, work / "strict", shards=shards)
    tolerant = run_to_end(data, work / "tolerant", "data.max_bad_shards=1", shards=shards)
    skipped = (metrics_of(work / "tolerant") or [{}])[-1].get("skipped", {})
    ok = strict.returncode == 2 and tolerant.returncode == 0 and skipped.get("unreadable_shard")
    return Case(
        "truncated shard", 1, bool(ok),
        f"default: exit {strict.returncode}; max_bad_shards=1: exit {tolerant.returncode}, "
        f"skipped {skipped}",
        time.monotonic() - started,
    )  # fmt: skip


def stopped_rank(data: Path, work: Path) -> Case:
    started = time.monotonic()
    run = work / "stopped"
    torchrun = [
        sys.executable,
        "-m",
        "siglip_train",
        "torchrun",
        "--standalone",
        "--nproc_per_node=2",
    ]
    train = command(data, run, "collective_timeout_seconds=30", "step_timeout_seconds=20")[2:]
    process = subprocess.run(
        [*torchrun, "-m", *train],
        env=environment("step.end@6:stop:1"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    elapsed = time.monotonic() - started
    ok = process.returncode != 0 and elapsed < 240
    return Case(
        "stopped rank (SIGSTOP, 2 processes)", 1, ok,
        f"job ended with exit {process.returncode} after {elapsed:.0f} s (watchdog 20 s, "
        "collective timeout 30 s)",
        elapsed,
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/chaos")
    parser.add_argument("--kills", type=int, default=21, help="random SIGKILLs in total")
    parser.add_argument("--per-run", type=int, default=3, help="random SIGKILLs per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cases",
        default="random,points,enospc,tmpfs,corrupt,shard,stopped",
        help="which groups of faults to inject (comma-separated; default: all)",
    )
    args = parser.parse_args()
    work = Path(args.out)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data = make_data(work / "data")
    rng = random.Random(args.seed)
    started = time.monotonic()
    reference = work / "reference"
    done = run_to_end(data, reference)
    if done.returncode != 0:
        print(done.stderr[-3000:])
        return 1
    cases: list[Case] = []

    def report(case: Case) -> None:
        cases.append(case)
        print(
            f"{'PASS' if case.passed else 'FAIL'} {case.name}: {case.detail} ({case.seconds:.0f} s)",
            flush=True,
        )

    wanted = set(args.cases.split(","))
    remaining, index = (args.kills if "random" in wanted else 0), 0
    while remaining > 0:
        count = min(args.per_run, remaining)
        report(random_kills(data, reference, work / f"random-{index}", count, rng))
        remaining -= max(1, cases[-1].faults)
        index += 1
    for point in () if "points" not in wanted else (
        "checkpoint.files_written@2", "checkpoint.files_written@5", "checkpoint.renamed@3",
        "checkpoint.renamed@7", "checkpoint.pruned@4", "metrics.written@9", "metrics.written@24",
    ):  # fmt: skip
        report(point_kill(data, reference, work / point.replace("@", "-"), point))
    if "enospc" in wanted:
        report(simulated_enospc(data, reference, work / "enospc"))
    if "tmpfs" in wanted:
        report(tmpfs_full(data, reference, work))
    if "corrupt" in wanted:
        report(corrupt_newest(data, reference, work / "corrupt"))
    if "shard" in wanted:
        report(corrupt_shard(data, work))
    if "stopped" in wanted:
        report(stopped_rank(data, work))
    kills = sum(c.faults for c in cases if c.name.startswith("random"))
    lines = [
        "| fault | injected | result | seconds |",
        "|---|---|---|---|",
        *[
            f"| {c.name} | {c.faults} | {'pass' if c.passed else 'FAIL'}: {c.detail} | {c.seconds:.0f} |"
            for c in cases
        ],
        "",
        f"{kills} random SIGKILLs and {len(cases) - sum(c.name.startswith('random') for c in cases)} "
        f"targeted faults; {sum(not c.passed for c in cases)} failed; "
        f"{time.monotonic() - started:.0f} s in all ({STEPS} steps per run, tiny-test, CPU).",
    ]
    table = "\n".join(lines)
    (work / "chaos.md").write_text(table + "\n")
    print(table)
    return 0 if all(c.passed for c in cases) else 1


if __name__ == "__main__":
    sys.exit(main())
