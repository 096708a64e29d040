"""Operating a run (issue 21): run identity, logs that survive, bounded hangs, clear faults, and
the fast subset of the fault-injection suite (kills at fixed points, a full disk, a reused
output directory, a roll-back). The full suite is ``scripts/chaos.py`` (``nox -s chaos``)."""

from __future__ import annotations

import datetime
import json
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch

import siglip_data
from siglip_train import _faults
from siglip_train import read_metrics
from siglip_train._cli import main

# Fields of a metrics record that measure time, which no two runs share.
TIMING = {"samples_per_second", "train_seconds", "run"}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("operating-data")
    rng = np.random.default_rng(0)
    words = ["red", "green", "blue", "cat", "dog", "car"]
    samples = [
        (
            rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
            f"a {words[i % 6]} {words[(i // 6) % 6]}",
        )
        for i in range(48)
    ]
    siglip_data.write_shards(samples, root / "shards", samples_per_shard=12)
    siglip_data.train_sentencepiece(
        [caption for _, caption in samples] * 3, root / "tok.model", vocab_size=20
    )
    return root


def arguments(data: Path, run: Path, *overrides: str) -> list[str]:
    base = [
        "model.name=tiny-test",
        f"data.shards={json.dumps([str(data / 'shards')])}",
        f"data.tokenizer={data / 'tok.model'}",
        "data.batch_size=8",
        f"output_dir={run}",
        "steps=8",
        "device=cpu",
        "num_threads=1",
        "optimizer.warmup_steps=2",
        "logging.every_steps=1",
        "logging.progress_bar=false",
        "logging.tensorboard=false",
        "checkpoint.every_steps=2",
        "checkpoint.keep_last=2",
    ]
    return [item for override in [*base, *overrides] for item in ("--set", override)]


def train(data: Path, run: Path, *overrides: str, flags: tuple[str, ...] = ()) -> int:
    return main(["train", *arguments(data, run, *overrides), *flags])


def fork_main(argv: list[str], output: Path, *, faults: str = "") -> int:
    """Run ``siglip-train ARGV`` in a forked copy of this process; return the child's pid.

    A real process that a fault can SIGKILL, SIGSTOP or hang, like ``python -m siglip_train``,
    but without starting an interpreter and importing torch again (several CPU seconds each, the
    bulk of these tests' cost). The child's stdout, stderr and log lines go to ``output``.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    pid = os.fork()
    if pid:
        return pid
    code = 1  # the child never returns into pytest
    try:
        descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(descriptor, 1)
        os.dup2(descriptor, 2)
        sys.stdout = sys.stderr = open(descriptor, "w", buffering=1)  # noqa: SIM115
        root = logging.getLogger()
        root.handlers = [logging.StreamHandler(sys.stderr)]
        root.setLevel(logging.INFO)
        os.environ[_faults.ENVIRONMENT_VARIABLE] = faults
        _faults._parsed, _faults._counts = None, {}
        code = main(argv)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def wait_for(pid: int, output: Path, *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Reap a :func:`fork_main` child: its exit status (minus the signal that ended it, as
    ``subprocess`` does) and its output in ``stderr``; SIGKILL it after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (waited := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError(f"the forked run did not end in {timeout} s: {output.read_text()}")
        time.sleep(0.05)
    returncode = os.waitstatus_to_exitcode(waited[1])
    return subprocess.CompletedProcess([], returncode, stdout="", stderr=output.read_text())


def forked_train(
    data: Path, run: Path, *overrides: str, faults: str = ""
) -> subprocess.CompletedProcess[str]:
    """``siglip-train train`` with ``faults`` armed, in a forked process, to its end."""
    output = run.parent / f"{run.name}.forked-output.txt"
    pid = fork_main(["train", *arguments(data, run, *overrides)], output, faults=faults)
    return wait_for(pid, output)


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``faults("checkpoint.files_written@2:enospc")`` arms the in-process fault points."""

    def arm(spec: str) -> None:
        monkeypatch.setenv(_faults.ENVIRONMENT_VARIABLE, spec)
        monkeypatch.setattr(_faults, "_parsed", None)
        monkeypatch.setattr(_faults, "_counts", {})

    yield arm
    monkeypatch.setattr(_faults, "_parsed", None)
    monkeypatch.setattr(_faults, "_counts", {})


def steps_of(run: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"]


def checkpoints(run: Path) -> list[str]:
    root = run / "checkpoints"
    return (
        sorted(p.name for p in root.iterdir() if p.name.startswith("step_"))
        if root.is_dir()
        else []
    )


def run_id(run: Path) -> str:
    return str(json.loads((run / "run.json").read_text())["run_id"])


def final_state(run: Path) -> tuple[bytes, dict, list[dict]]:
    last = run / "checkpoints" / checkpoints(run)[-1]
    weights = (last / "model" / "model.safetensors").read_bytes()
    state = torch.load(last / "training_state.pt", weights_only=False)
    metrics = [
        {k: v for k, v in record.items() if k not in TIMING}
        for record in read_metrics(run / "metrics.jsonl")
    ]
    return weights, state["optimizer"], metrics


def assert_same_run(a: Path, b: Path) -> None:
    weights_a, optimizer_a, metrics_a = final_state(a)
    weights_b, optimizer_b, metrics_b = final_state(b)
    assert weights_a == weights_b
    assert metrics_a == metrics_b
    for key, value in optimizer_a["state"].items():
        for name, tensor in value.items():
            assert torch.equal(tensor, optimizer_b["state"][key][name]), (key, name)


# --------------------------------------------------------------------------- 1: run identity
def test_a_fresh_run_over_another_runs_checkpoints_is_refused_naming_them_and_the_choices(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert train(data, run) == 0
    before = checkpoints(run)
    first = run_id(run)
    assert train(data, run, "optimizer.lr=5e-4") == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    for needle in ("step_000000006", "step_000000008", first, "--resume auto", "--overwrite"):
        assert needle in error
    assert checkpoints(run) == before
    assert run_id(run) == first
    assert train(data, run, "optimizer.lr=5e-4", flags=("--overwrite",)) == 0
    assert run_id(run) != first
    records = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 9))
    assert {r["run"] for r in records} == {run_id(run)}


def test_a_roll_back_starts_a_branch_that_keeps_its_origin_and_cuts_the_metrics(
    data: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    assert train(data, run) == 0
    origin_run = run_id(run)
    origin = run / "checkpoints" / "step_000000006"
    assert train(data, run, "steps=10", flags=("--resume", str(origin))) == 0
    branch = run_id(run)
    assert branch != origin_run
    assert json.loads((run / "run.json").read_text())["parent"]["step"] == 6
    # keep_last=2 keeps the branch's 8 and 10; the origin (another run) is never pruned, and the
    # old run's step 8, whose name the branch reused, was moved aside, not deleted.
    assert checkpoints(run) == ["step_000000006", "step_000000008", "step_000000010"]
    assert (run / "checkpoints" / f"superseded-{origin_run}" / "step_000000008").is_dir()
    records = [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["step"] for r in records] == list(range(1, 11))
    assert {r["run"] for r in records[:6]} == {origin_run}
    assert {r["run"] for r in records[6:]} == {branch}
    superseded = read_metrics(run / f"metrics.superseded-{origin_run}.jsonl")
    assert [r["step"] for r in superseded] == [7, 8]
    # --resume auto continues the branch (finished): nothing changes, keep_last still holds.
    assert train(data, run, "steps=10", flags=("--resume", "auto")) == 0
    assert checkpoints(run) == ["step_000000006", "step_000000008", "step_000000010"]


def test_resuming_a_finished_run_leaves_keep_last_checkpoints(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert train(data, run, "checkpoint.keep_last=3") == 0
    assert len(checkpoints(run)) == 3
    assert train(data, run, "checkpoint.keep_last=2", flags=("--resume", "auto")) == 0
    assert checkpoints(run) == ["step_000000006", "step_000000008"]


def test_resuming_with_changed_hyperparameters_prints_them_and_refuses_a_changed_seed(
    data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert forked_train(data, run, faults="step.end@5").returncode == -signal.SIGKILL
    with caplog.at_level(logging.WARNING, logger="siglip_train"):
        assert train(data, run, "seed=1", flags=("--resume", "auto")) == 2
    assert "changed seed would not continue that run exactly" in capsys.readouterr().err
    assert "seed: 0 -> 1" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="siglip_train"):
        assert train(data, run, "optimizer.lr=0.0005", flags=("--resume", "auto")) == 0
    assert "optimizer.lr: 0.001 -> 0.0005" in caplog.text
    assert steps_of(run) == list(range(1, 9))


# ----------------------------------------------------------------------- 2, 3: logs survive
def test_a_garbage_metrics_line_is_skipped_counted_and_repaired_on_resume(
    data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    assert train(data, run, "steps=4") == 0
    with (run / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 5, "kind": "tra')  # a disk-full cut this line
    with caplog.at_level(logging.WARNING, logger="siglip_train"):
        assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3, 4]
    assert "skipped 1 unreadable line(s) (line 5)" in caplog.text
    assert train(data, run, "steps=6", flags=("--resume", "auto")) == 0
    assert steps_of(run) == list(range(1, 7))
    assert all(json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines())


def test_a_kill_before_the_first_checkpoint_then_resume_auto_does_not_mix_records(
    data: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    killed = forked_train(data, run, "checkpoint.every_steps=5", faults="step.end@4")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert steps_of(run) == [1, 2, 3]
    assert not checkpoints(run)
    assert train(data, run, "checkpoint.every_steps=5", flags=("--resume", "auto")) == 0
    assert steps_of(run) == list(range(1, 9))


def test_tensorboard_after_a_resume_holds_each_step_once(data: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing import event_accumulator

    run = tmp_path / "run"
    tensorboard = "logging.tensorboard=true"
    assert forked_train(data, run, tensorboard, faults="step.end@6").returncode == -9
    # TensorBoard reads event files in name order: the time in whole seconds, then the pid. A
    # real restart imports torch for seconds; the forked attempt and this resume may share a
    # second, and this process's lower pid would then sort its file first.
    time.sleep(1.1)
    assert train(data, run, tensorboard, flags=("--resume", "auto")) == 0
    accumulator = event_accumulator.EventAccumulator(str(run / "tensorboard"))
    accumulator.Reload()
    assert [event.step for event in accumulator.Scalars("train/loss")] == list(range(1, 9))


# ------------------------------------------------------------------------ 4: bounded hangs
def test_the_collective_timeout_is_configurable_and_minutes_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from siglip_train import _distributed

    seen: list[datetime.timedelta] = []
    monkeypatch.setattr(_distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(
        _distributed.dist, "init_process_group", lambda **kwargs: seen.append(kwargs["timeout"])
    )
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    _distributed.init_distributed("cpu")
    _distributed.init_distributed("cpu", timeout_seconds=42)
    assert seen == [datetime.timedelta(seconds=300), datetime.timedelta(seconds=42)]


def test_the_watchdog_ends_a_hung_step_with_exit_code_124(data: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    hung = forked_train(data, tmp_path / "run", "step_timeout_seconds=2", faults="step.end@3:hang")
    assert hung.returncode == 124, hung.stderr[-2000:]
    assert "watchdog: rank 0 has spent" in hung.stderr
    assert time.monotonic() - started < 120


# --------------------------------------------------------------------------- 5: a full disk
def test_a_full_disk_during_a_checkpoint_write_is_one_message_and_keeps_the_last_good_one(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], faults
) -> None:
    run = tmp_path / "run"
    faults("checkpoint.files_written@2:enospc")
    assert train(data, run) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "step_000000004" in error
    assert "No space left on device" in error
    assert checkpoints(run) == ["step_000000002"]
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    faults("")
    assert train(data, run, flags=("--resume", "auto")) == 0
    assert steps_of(run) == list(range(1, 9))


def test_a_full_disk_during_a_metrics_write_names_the_file_and_leaves_no_half_line(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], faults
) -> None:
    run = tmp_path / "run"
    faults("metrics.written@3:enospc")
    assert train(data, run) == 1
    error = capsys.readouterr().err
    assert "metrics.jsonl" in error
    assert "No space left on device" in error
    assert steps_of(run) == [1, 2]
    assert (run / "metrics.jsonl").read_text().endswith("\n")


# ----------------------------------------------------------------------------- 6: shards
def test_missing_shards_fail_the_run_unless_tolerated_and_skips_are_reported(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    shards = [str(data / "shards" / f"shard-{i:05d}.tar") for i in range(4)] + ["nope.tar"]
    listed = f"data.shards={json.dumps(shards)}"
    assert train(data, tmp_path / "a", listed) == 2
    assert "1 of the 5 shards data.shards names do not exist" in capsys.readouterr().err
    assert not (tmp_path / "a" / "checkpoints").exists()
    with caplog.at_level(logging.WARNING, logger="siglip_train"):
        assert train(data, tmp_path / "b", listed, "data.max_bad_shards=1") == 0
    last = read_metrics(tmp_path / "b" / "metrics.jsonl")[-1]
    assert last["skipped"]["unreadable_shard"] >= 1
    assert "the batch source skipped" in caplog.text


def test_a_truncated_shard_stops_the_run_by_default(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "shards"
    copy.mkdir()
    for shard in sorted((data / "shards").glob("*.tar")):
        (copy / shard.name).write_bytes(shard.read_bytes())
    damaged = copy / "shard-00001.tar"
    damaged.write_bytes(damaged.read_bytes()[:3000])
    assert train(data, tmp_path / "run", f"data.shards={json.dumps([str(copy)])}") == 2
    assert "could not be read" in capsys.readouterr().err


# ------------------------------------------------------------------------ 7: corrupt checkpoints
def test_resume_auto_falls_back_past_a_corrupt_newest_checkpoint_loudly(
    data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert forked_train(data, run, faults="step.end@7").returncode == -9
    newest = run / "checkpoints" / "step_000000006" / "model" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:-8] + b"garbage!")
    assert train(data, run, flags=("--resume", str(newest.parents[1]))) == 2
    assert "is corrupt" in capsys.readouterr().err
    with caplog.at_level(logging.WARNING, logger="siglip_train"):
        assert train(data, run, flags=("--resume", "auto")) == 0
    assert "step_000000006" in caplog.text
    assert "RESUMING FROM THE OLDER" in caplog.text
    assert "step_000000004" in caplog.text
    assert steps_of(run) == list(range(1, 9))


def test_a_manifest_missing_a_key_is_refused_by_name(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert train(data, run, "steps=2") == 0
    manifest = run / "checkpoints" / "step_000000002" / "manifest.json"
    content = json.loads(manifest.read_text())
    del content["parameters"]
    manifest.write_text(json.dumps(content))
    assert train(data, run, "steps=4", flags=("--resume", str(manifest.parent))) == 2
    assert "lacks ['parameters']" in capsys.readouterr().err


# ----------------------------------------------------------------- 8, 9: clear errors, exit 2
def test_errors_on_the_webdataset_path_are_one_line_with_exit_code_2(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from siglip_models.torch import SiglipModel

    SiglipModel("tiny-test").save_pretrained(tmp_path / "pretrained")
    cases = {
        ("model.name=nonexistent",): "'model.name' must be a size (tiny, small, base)",
        ("model.vocab_size=10",): "has a 10-token table but the tokenizer",
        (f"model.init_from={tmp_path / 'pretrained'}", "data.image_size=48"): (
            "model.resize_position_embedding=true"
        ),
        ("data.tokenizer=missing.model",): "'missing.model', which does not exist",
        ("data.shards=[nothing-*.tar]",): "matches no file",
        ("model.log_scale_init=10",): "almost surely a scale",
    }
    for overrides, message in cases.items():
        assert train(data, tmp_path / "run", *overrides) == 2, overrides
        error = capsys.readouterr().err
        assert error.count("\n") == 1, (overrides, error)
        assert message in error, (overrides, error)
    assert not (tmp_path / "run" / "checkpoints").exists()
    resized = (f"model.init_from={tmp_path / 'pretrained'}", "data.image_size=48")
    assert (
        train(data, tmp_path / "run", *resized, "model.resize_position_embedding=true", "steps=1")
        == 0
    )
    assert (
        main(
            [
                "interpolate",
                "no-such-dir",
                str(tmp_path / "pretrained"),
                "--alpha",
                "0.5",
                "--out",
                "x",
            ]
        )
        == 2
    )
    assert "zero_shot" in capsys.readouterr().err
    assert siglip_data_main(["count", str(tmp_path / "missing.tar")]) == 2
    assert "cannot open shard" in capsys.readouterr().err


def siglip_data_main(argv: list[str]) -> int:
    from siglip_data._cli import main as data_main

    return data_main(argv)


def test_debug_shows_the_traceback(data: Path, tmp_path: Path) -> None:
    from siglip_train import ConfigError

    with pytest.raises(ConfigError):
        main(["train", *arguments(data, tmp_path / "run", "model.name=nonexistent"), "--debug"])


# ------------------------------------------------------------------------------ 10: smaller
def test_train_seconds_continue_across_resumes(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert forked_train(data, run, faults="step.end@5").returncode == -9
    assert train(data, run, flags=("--resume", "auto")) == 0
    seconds = [r["train_seconds"] for r in read_metrics(run / "metrics.jsonl")]
    assert seconds == sorted(seconds)
    assert seconds[4] > seconds[0]


def test_a_second_ctrl_c_exits_at_once(make_batches, tmp_path: Path) -> None:
    from siglip_models.torch import SiglipModel
    from siglip_train import TrainConfig
    from siglip_train import Trainer
    from siglip_train import apply_overrides

    batches = make_batches(2)

    def interrupted_twice():  # type: ignore[no-untyped-def]
        yield batches[0]
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        while True:
            yield batches[1]

    config = apply_overrides(
        TrainConfig(), [f"output_dir={tmp_path}", "steps=5", "logging.tensorboard=false"]
    )
    trainer = Trainer(SiglipModel("tiny-test"), interrupted_twice(), config)
    # What was there before fit (SIG_IGN, not Python's handler, in a background job of a shell).
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert signal.getsignal(signal.SIGINT) is before
    assert not (tmp_path / "checkpoints").exists()


def test_checkpoint_files_are_fsynced_before_the_rename(
    make_batches, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from siglip_models.torch import SiglipModel
    from siglip_train import TrainConfig
    from siglip_train import Trainer
    from siglip_train import _atomic
    from siglip_train import apply_overrides

    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    def replace(source: str, destination: str) -> None:
        events.append(("replace", str(destination)))
        real_replace(source, destination)

    monkeypatch.setattr(_atomic.os, "fsync", fsync)
    monkeypatch.setattr(_atomic.os, "replace", replace)
    config = apply_overrides(
        TrainConfig(), [f"output_dir={tmp_path}", "steps=1", "logging.tensorboard=false"]
    )
    Trainer(SiglipModel("tiny-test"), make_batches(1), config).fit()
    rename = events.index(("replace", str(tmp_path / "checkpoints" / "step_000000001")))
    synced = {Path(path).name for kind, path in events[:rename] if kind == "fsync"}
    assert {"model.safetensors", "training_state.pt", "rank000_state.pt", "manifest.json"} <= synced
    assert ("fsync", str(tmp_path / "checkpoints")) in events[rename:]


# ------------------------------------------------------ the fast subset of the chaos suite
@pytest.mark.multiprocess
def test_kills_at_fixed_points_resume_to_bit_identical_weights_optimizer_and_metrics(
    data: Path, tmp_path: Path
) -> None:
    reference = tmp_path / "reference"
    assert train(data, reference) == 0
    for point in ("checkpoint.files_written@2", "checkpoint.renamed@2", "metrics.written@5"):
        run = tmp_path / point.replace("@", "-")
        killed = forked_train(data, run, faults=point)
        assert killed.returncode == -signal.SIGKILL, (point, killed.stderr[-2000:])
        assert train(data, run, flags=("--resume", "auto")) == 0, point
        assert_same_run(reference, run)


@pytest.mark.multiprocess
def test_torchrun_launcher_exits_128_plus_the_signal(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    # The launcher runs forked (no second torch import); its worker is a real subprocess.
    output = tmp_path / "torchrun-output.txt"
    launcher = ["torchrun", "--standalone", "--nproc_per_node=1", "-m", "siglip_train", "train"]
    pid = fork_main([*launcher, *arguments(data, run, "steps=100000")], output)
    deadline, ended = time.monotonic() + 240, 0
    while not steps_of(run) and time.monotonic() < deadline:
        ended = os.waitpid(pid, os.WNOHANG)[0]
        if ended:
            break
        time.sleep(0.5)
    assert not ended, output.read_text()[-3000:]
    os.kill(pid, signal.SIGTERM)
    done = wait_for(pid, output, timeout=240)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr[-3000:]
