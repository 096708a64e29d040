"""strategy=fsdp (FSDP2 + DCP checkpoints) on CPU gloo: equal to DDP and to one process.

Three process launches (fsdp_worker.py: 4 ranks, 2 ranks, 1 process) train tiny-test for 4
AdamW steps at the same global batch of 8. Tolerance (float32): every parameter within 1e-5
absolute (measured: 2.4e-7 at most); the block sums of the distributed losses run in another
order, so the runs agree to rounding, not bit for bit. Frozen (LiT) parameters must be
bit-identical to their initial values.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from siglip_models import get_config
from siglip_models.torch import SiglipModel
from siglip_train import CheckpointError
from siglip_train import ConfigError
from siglip_train import TrainConfig
from siglip_train import Trainer
from siglip_train import apply_overrides
from siglip_train import read_metrics
from siglip_train._distributed import DistributedContext
from siglip_train._run import _webdataset_batches
from siglip_train._run import resolve_model_directory
from siglip_train.distributed import export_checkpoint

WORKER = Path(__file__).with_name("fsdp_worker.py")
TOLERANCE = 1e-5


def launch(out: Path, processes: int, phase: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(WORKER.parent)}
    if processes == 1:
        command = [sys.executable, str(WORKER), str(out), phase]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            str(WORKER),
            str(out),
            phase,
        ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fsdp")
    launch(root, 4, "w4")  # first: w2 and w1 resume from its step-2 checkpoint
    launch(root, 2, "w2")
    launch(root, 1, "w1")
    return root


def parameters(runs: Path, run: str) -> dict[str, torch.Tensor]:
    loaded: dict[str, torch.Tensor] = torch.load(runs / run / "parameters.pt")
    return loaded


def assert_parameters_close(runs: Path, run: str, reference: str) -> None:
    ours, theirs = parameters(runs, run), parameters(runs, reference)
    assert ours.keys() == theirs.keys()
    for name, parameter in theirs.items():
        torch.testing.assert_close(ours[name], parameter, rtol=0, atol=TOLERANCE, msg=name)


@pytest.mark.multiprocess
@pytest.mark.parametrize(
    ("run", "reference"),
    [
        ("w2/fsdp-sigmoid", "w1/single-sigmoid"),
        ("w4/fsdp-sigmoid", "w1/single-sigmoid"),
        ("w2/ddp-sigmoid", "w1/single-sigmoid"),
        ("w2/fsdp-sigmoid", "w2/ddp-sigmoid"),
        ("w2/fsdp-softmax", "w1/single-softmax"),
        ("w2/fsdp-lit", "w1/single-lit"),
        ("w2/fsdp-lit", "w2/ddp-lit"),
        ("w2/fsdp-recompute", "w1/single-sigmoid"),  # activation checkpointing per block
    ],
)
def test_fsdp_equals_ddp_equals_one_process_at_the_same_global_batch(
    runs: Path, run: str, reference: str
) -> None:
    assert_parameters_close(runs, run, reference)
    initial = torch.load(runs / run / "initial.pt")
    moved = [name for name, p in parameters(runs, run).items() if not torch.equal(p, initial[name])]
    assert len(moved) > 10  # it did train


@pytest.mark.multiprocess
def test_frozen_tower_is_bit_identical_under_fsdp(runs: Path) -> None:
    initial = torch.load(runs / "w2/fsdp-lit/initial.pt")
    final = parameters(runs, "w2/fsdp-lit")
    frozen = [name for name in initial if name.startswith("vision_model.")]
    assert len(frozen) > 10
    for name in frozen:
        assert torch.equal(final[name], initial[name]), name
    assert not torch.equal(final["text_model.head.weight"], initial["text_model.head.weight"])


@pytest.mark.multiprocess
@pytest.mark.parametrize("run", ["w2/fsdp-resumed", "w1/single-resumed"])
def test_resume_on_another_world_size_equals_the_uninterrupted_run(runs: Path, run: str) -> None:
    # Saved at step 2 on 4 ranks; resumed on 2 FSDP ranks and on one plain process.
    assert_parameters_close(runs, run, "w4/fsdp-sigmoid")
    records = read_metrics(runs / run / "run/metrics.jsonl")
    assert [record["step"] for record in records if record["kind"] == "train"] == [3, 4]


@pytest.mark.multiprocess
def test_resume_on_the_same_world_size_is_bit_exact_with_loader_and_rng_state(runs: Path) -> None:
    # The batch source keeps a position (state_dict) and adds noise from torch's global RNG.
    resumed, uninterrupted = (
        parameters(runs, "w2/fsdp-noisy-resumed"),
        parameters(runs, "w2/fsdp-noisy"),
    )
    for name, parameter in uninterrupted.items():
        assert torch.equal(resumed[name], parameter), name
    assert not torch.equal(
        uninterrupted["log_scale"], parameters(runs, "w2/fsdp-sigmoid")["log_scale"]
    )


@pytest.mark.multiprocess
def test_sharded_checkpoints_are_atomic_and_only_the_last_k_are_kept(runs: Path) -> None:
    checkpoints = runs / "w4/fsdp-sigmoid/run/checkpoints"
    kept = sorted(path.name for path in checkpoints.iterdir())
    assert kept == ["step_000000002", "step_000000003", "step_000000004"]  # keep_last=3 of 4
    manifest = json.loads((checkpoints / "step_000000004/manifest.json").read_text())
    assert manifest["weights"] == "sharded"
    assert manifest["world_size"] == 4
    shards = sorted(name for name in manifest["files"] if name.startswith("sharded/"))
    assert shards == ["sharded/.metadata"] + [f"sharded/__{r}_0.distcp" for r in range(4)]
    assert not (checkpoints / "step_000000004/model").exists()  # no rank gathered the weights


@pytest.mark.multiprocess
def test_per_rank_state_memory_is_one_over_w_of_ddp(runs: Path) -> None:
    ddp = json.loads((runs / "w2/ddp-sigmoid/memory.json").read_text())
    for world_size, run in ((2, "w2/fsdp-sigmoid"), (4, "w4/fsdp-sigmoid")):
        fsdp = json.loads((runs / run / "memory.json").read_text())
        ratio = sum(fsdp.values()) / sum(ddp.values())
        # 1/W plus the padding of uneven shards and the replicated log_scale and bias
        assert 1 / world_size <= ratio < 1.02 / world_size, (world_size, ratio)


@pytest.mark.multiprocess
def test_planner_is_within_20_percent_of_the_measured_fsdp_peak_per_rank(runs: Path) -> None:
    # Width 128, depth 4, batch 32 on 2 ranks, with and without activation checkpointing.
    for case in json.loads((runs / "w2/planner.json").read_text()):
        error = (case["plan"] - case["measured"]) / case["measured"]
        assert abs(error) < 0.20, case


@pytest.mark.multiprocess
def test_consolidated_export_loads_in_siglip_models_and_transformers(
    runs: Path, tmp_path: Path
) -> None:
    import transformers

    checkpoint = runs / "w4/fsdp-sigmoid/run/checkpoints/step_000000004"
    out = export_checkpoint(checkpoint, tmp_path / "hf", model=SiglipModel("tiny-test"))
    final = parameters(runs, "w4/fsdp-sigmoid")
    ours = dict(SiglipModel.from_pretrained(out).named_parameters())
    for name, parameter in final.items():
        assert torch.equal(ours[name].detach(), parameter), name
    theirs = transformers.SiglipModel.from_pretrained(out).state_dict()
    torch.testing.assert_close(
        theirs["text_model.head.weight"], final["text_model.head.weight"], rtol=0, atol=0
    )
    assert float(theirs["logit_scale"]) == float(final["log_scale"])


@pytest.mark.multiprocess
def test_a_checkpoint_of_another_model_shape_is_refused(runs: Path, tmp_path: Path) -> None:
    checkpoint = runs / "w4/fsdp-sigmoid/run/checkpoints/step_000000002"
    config = apply_overrides(
        TrainConfig(), [f"output_dir={tmp_path}", "device=cpu", "logging.tensorboard=false"]
    )
    wider = get_config("tiny-test")
    wider = dataclasses.replace(wider, text=dataclasses.replace(wider.text, mlp_dim=96))
    trainer = Trainer(SiglipModel(wider), [], config)
    with pytest.raises(CheckpointError, match=r"does not match the model.*fc1"):
        trainer.resume(checkpoint)
    with pytest.raises(CheckpointError, match="does not match the model"):
        export_checkpoint(checkpoint, tmp_path / "hf", model=SiglipModel(wider))
    with pytest.raises(ConfigError, match=r"model.init_from.*sharded.*export it first"):
        resolve_model_directory(checkpoint, field="model.init_from")


@pytest.mark.multiprocess
def test_resuming_a_ddp_checkpoint_under_fsdp_is_refused_with_the_ways_out(runs: Path) -> None:
    message = (runs / "w2/ddp-to-fsdp.txt").read_text()
    assert "written with strategy=ddp" in message
    assert "resume it with strategy=ddp" in message
    assert "model.init_from=" in message


def test_fsdp_without_a_process_group_is_a_named_error(tmp_path: Path) -> None:
    config = apply_overrides(
        TrainConfig(),
        [f"output_dir={tmp_path}", "device=cpu", "strategy=fsdp", "logging.tensorboard=false"],
    )
    with pytest.raises(ConfigError, match=r"'strategy' is 'fsdp'.*no.*torchrun.*got a plain"):
        Trainer(SiglipModel("tiny-test"), [], config)


def test_an_unknown_strategy_is_a_named_error() -> None:
    with pytest.raises(ConfigError, match=r"'strategy' must be one of ddp\|fsdp, got 'zero'"):
        apply_overrides(TrainConfig(), ["strategy=zero"])


def test_a_world_size_that_does_not_divide_the_batch_is_a_named_error() -> None:
    config = apply_overrides(TrainConfig(), ["data.batch_size=8"])
    with pytest.raises(
        ConfigError, match=r"'data.batch_size'.*divisible by the number of processes 3, got 8"
    ):
        _webdataset_batches(config, DistributedContext(rank=0, world_size=3), tokenizer=None)
