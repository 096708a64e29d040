"""Run under torchrun (or plainly, for one process): tiny-test under FSDP, DDP and one process.

    python -m torch.distributed.run --standalone --nproc_per_node=4 fsdp_worker.py OUT w4
    python -m torch.distributed.run --standalone --nproc_per_node=2 fsdp_worker.py OUT w2
    python fsdp_worker.py OUT w1

Every process draws the same global batches (seeded; distributed_worker.py's) and keeps its
slice, so each run sees the same global batch of 8. Each run writes ``OUT/<phase>/<run>/``:
``parameters.pt`` (the full parameters after the last step, rank 0), ``memory.json`` (the bytes
this rank holds for parameters, gradients and optimizer state: local shards only, max over
ranks) and ``initial.pt`` (the parameters before training). Phases (one process launch each,
to keep the start-up cost of the test small):

- ``w4``: FSDP, sigmoid, a checkpoint every step, keep the last 3 (steps 2, 3, 4 remain).
- ``w2``: FSDP sigmoid / softmax / LiT (``freeze=image``) / activation checkpointing, DDP LiT and sigmoid (memory),
  FSDP resumed from ``w4``'s step 2 (resharding 4 -> 2 ranks), and a run whose batch source
  keeps a position and draws from the RNG, uninterrupted and resumed from its own step 2;
  then the peak memory of an FSDP step of a small model against the planner (``planner.json``),
  and an FSDP resume of the DDP run's checkpoint, which must be refused (``ddp-to-fsdp.txt``).
- ``w1``: one process: sigmoid / softmax / LiT, and resumed from ``w4``'s step 2 (4 -> 1).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

torch.set_num_threads(1)

from distributed_worker import GLOBAL_BATCH  # noqa: E402
from distributed_worker import STEPS  # noqa: E402
from distributed_worker import global_batches  # noqa: E402

from siglip_models.torch import SiglipModel  # noqa: E402
from siglip_train import CheckpointError  # noqa: E402
from siglip_train import TrainConfig  # noqa: E402
from siglip_train import Trainer  # noqa: E402
from siglip_train import apply_overrides  # noqa: E402
from siglip_train.distributed import close_distributed  # noqa: E402
from siglip_train.distributed import state_bytes_per_rank  # noqa: E402


def rank_of_this_process() -> int:
    return int(os.environ.get("RANK", "0"))


def full_parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter unsharded (a collective under FSDP: every rank calls it)."""
    from torch.distributed.tensor import DTensor

    return {
        name: (p.full_tensor() if isinstance(p, DTensor) else p).detach().clone()
        for name, p in model.named_parameters()
    }


class NoisyBatches:
    """A batch source with its own position and a draw from torch's global RNG per batch.

    Exact resume needs both restored: ``state_dict`` (the position) and the RNG state.
    """

    def __init__(self, batches: list[dict[str, torch.Tensor]]) -> None:
        self.batches = batches
        self.position = 0

    def __iter__(self) -> NoisyBatches:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        batch = self.batches[self.position % len(self.batches)]
        self.position += 1
        noise = 0.1 * torch.randn(batch["pixels"].shape)
        return {"pixels": (batch["pixels"] + noise).clamp(-1, 1), "token_ids": batch["token_ids"]}

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.position = state["position"]


def train(
    out: Path,
    *,
    strategy: str,
    loss: str = "sigmoid",
    freeze: str = "none",
    checkpoint_every: int = 0,
    resume: Path | None = None,
    noisy: bool = False,
    recompute: bool = False,
) -> None:
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local = GLOBAL_BATCH // world_size
    batches: Any = [
        {key: value[rank * local : (rank + 1) * local] for key, value in batch.items()}
        for batch in global_batches()
    ]
    if noisy:
        batches = NoisyBatches(batches)
    config = apply_overrides(
        TrainConfig(),
        [
            f"output_dir={out / 'run'}",
            f"steps={STEPS}",
            f"strategy={strategy}",
            f"loss.name={loss}",
            f"freeze={freeze}",
            "device=cpu",
            "optimizer.lr=0.01",
            "optimizer.warmup_steps=1",
            "optimizer.eps=1e-3",  # see distributed_worker.py
            "logging.every_steps=1",
            "logging.progress_bar=false",
            "logging.tensorboard=false",
            f"checkpoint.every_steps={checkpoint_every}",
            "checkpoint.keep_last=3",
            f"model.grad_checkpointing={str(recompute).lower()}",
        ],
    )
    torch.manual_seed(0)
    model = SiglipModel("tiny-test").train()
    torch.manual_seed(1 + rank)  # the batch noise differs between ranks
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = Trainer(model, batches, config)
    if resume is not None:
        trainer.resume(resume)
    trainer.fit()
    parameters = full_parameters(model)
    held = torch.tensor(list(state_bytes_per_rank(model, trainer.optimizer).values()))
    if torch.distributed.is_initialized():
        torch.distributed.all_reduce(held, op=torch.distributed.ReduceOp.MAX)
    if rank == 0:
        torch.save(parameters, out / "parameters.pt")
        torch.save(initial, out / "initial.pt")
        names = ("parameters", "gradients", "optimizer")
        (out / "memory.json").write_text(json.dumps(dict(zip(names, held.tolist(), strict=True))))


def fsdp_step_peak_bytes(config: Any, batch: int, checkpointing: bool) -> int:
    """This rank's peak memory in the second FSDP step (the trainer's step, from its pieces)."""
    from siglip_loss.torch import distributed_sigmoid_loss
    from siglip_loss.torch import l2_normalize
    from siglip_train._fsdp import average_replicated_gradients
    from siglip_train._fsdp import clip_grad_norm
    from siglip_train._fsdp import shard_two_towers
    from siglip_train._planner import measured_peak_bytes
    from siglip_train._trainer import _TowerPair

    torch.manual_seed(0)
    model = SiglipModel(config).train().set_gradient_checkpointing(checkpointing)
    pair = _TowerPair(model, image_frozen=False, text_frozen=False)
    replicated = shard_two_towers(pair, model, device_type="cpu", autocast_dtype=None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    local = batch // torch.distributed.get_world_size()

    def step() -> None:
        pixels = torch.rand(local, 3, 64, 64) * 2 - 1
        token_ids = torch.randint(0, 100, (local, 16))
        image_emb, text_emb, log_scale, bias = pair(pixels, token_ids)
        loss = distributed_sigmoid_loss(
            l2_normalize(image_emb), l2_normalize(text_emb), scale=log_scale.exp(), bias=bias
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_replicated_gradients(replicated)
        clip_grad_norm(list(model.parameters()), 1.0)
        optimizer.step()

    step()
    alive = [t for p in model.parameters() for t in (p, p.grad) if t is not None]
    alive += [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    return measured_peak_bytes(step, alive)


def measure_planner(out: Path) -> None:
    """Per-rank peak memory of an FSDP step of a small two-tower vs ``plan_memory``.

    Width 128, depth 4, 64 patches / 16 tokens, global batch 32, with and without activation
    checkpointing; the maximum over the ranks.
    """
    import dataclasses

    from siglip_models import get_config
    from siglip_train.distributed import plan_memory

    tiny = get_config("tiny-test")
    shape = {"width": 128, "depth": 4, "mlp_dim": 512, "num_heads": 4}
    results = []
    for checkpointing in (False, True):
        config = dataclasses.replace(
            tiny,
            vision=dataclasses.replace(tiny.vision, image_size=64, patch_size=8, **shape),
            text=dataclasses.replace(tiny.text, embed_dim=128, **shape),
        )
        measured = torch.tensor(float(fsdp_step_peak_bytes(config, 32, checkpointing)))
        torch.distributed.all_reduce(measured, op=torch.distributed.ReduceOp.MAX)
        plan = plan_memory(
            config,
            batch=32,
            devices=torch.distributed.get_world_size(),
            strategy="fsdp",
            dtype="fp32",
            checkpointing=checkpointing,
        )
        results.append(
            {"checkpointing": checkpointing, "measured": float(measured), "plan": plan.total}
        )
    if torch.distributed.get_rank() == 0:
        (out / "planner.json").write_text(json.dumps(results))


def main(out: str, phase: str) -> None:
    root = Path(out) / phase
    step_2 = Path(out) / "w4" / "fsdp-sigmoid" / "run" / "checkpoints" / "step_000000002"
    if phase == "w4":
        train(root / "fsdp-sigmoid", strategy="fsdp", checkpoint_every=1)
    elif phase == "w2":
        for loss in ("sigmoid", "softmax"):
            train(root / f"fsdp-{loss}", strategy="fsdp", loss=loss)
        train(root / "fsdp-lit", strategy="fsdp", freeze="image")
        train(root / "fsdp-recompute", strategy="fsdp", recompute=True)
        train(root / "ddp-lit", strategy="ddp", freeze="image")
        train(root / "ddp-sigmoid", strategy="ddp")
        train(root / "fsdp-resumed", strategy="fsdp", resume=step_2)
        # Same world size: exact (bit for bit) with the loader's position and the RNG restored.
        train(root / "fsdp-noisy", strategy="fsdp", noisy=True, checkpoint_every=2)
        own_step_2 = root / "fsdp-noisy" / "run" / "checkpoints" / "step_000000002"
        train(root / "fsdp-noisy-resumed", strategy="fsdp", noisy=True, resume=own_step_2)
        measure_planner(root)
        ddp_checkpoint = root / "ddp-sigmoid" / "run" / "checkpoints" / "step_000000004"
        try:
            train(root / "ddp-to-fsdp", strategy="fsdp", resume=ddp_checkpoint)
        except CheckpointError as error:  # refused, on every rank
            if rank_of_this_process() == 0:
                (root / "ddp-to-fsdp.txt").write_text(str(error))
    else:
        for loss in ("sigmoid", "softmax"):
            train(root / f"single-{loss}", strategy="ddp", loss=loss)
        train(root / "single-lit", strategy="ddp", freeze="image")
        train(root / "single-resumed", strategy="ddp", resume=step_2)
    close_distributed()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
