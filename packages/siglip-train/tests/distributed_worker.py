"""Run under torchrun (or plainly, for one process): train tiny-test on fixed global batches.

    python -m torch.distributed.run --standalone --nproc_per_node=2 distributed_worker.py OUT

Every process draws the same global batches (seeded) and keeps its slice. For each loss
(sigmoid, softmax, and sigmoid with ``loss.positives=caption`` on batches whose 8 captions are
drawn from 3, so repeated captions sit on both ranks) rank 0 writes the final parameters to ``OUT/<loss>/parameters.pt`` and the
loss curve to ``OUT/<loss>/run/metrics.jsonl``. Adam's ``eps`` is 1e-3: attention key biases have
an exactly zero true gradient, and with a tiny ``eps`` Adam would blow their float32 rounding
noise (1e-9) up to full-size steps that differ between any two summation orders.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)

from siglip_models.torch import SiglipModel  # noqa: E402
from siglip_train import TrainConfig  # noqa: E402
from siglip_train import Trainer  # noqa: E402
from siglip_train import apply_overrides  # noqa: E402
from siglip_train.distributed import close_distributed  # noqa: E402

GLOBAL_BATCH = 8
STEPS = 4


def global_batches(repeated_captions: bool = False) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(STEPS):
        token_ids = torch.randint(0, 100, (GLOBAL_BATCH, 16), generator=generator)
        if repeated_captions:  # 3 distinct captions, each on both ranks' halves
            token_ids = token_ids[torch.tensor([0, 1, 2, 0, 1, 2, 2, 0])]
        batches.append(
            {
                "pixels": torch.rand(GLOBAL_BATCH, 3, 32, 32, generator=generator) * 2 - 1,
                "token_ids": token_ids,
            }
        )
    return batches


def train(out: Path, loss: str) -> None:
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local = GLOBAL_BATCH // world_size
    caption_positives = loss == "sigmoid-caption"
    batches = [
        {key: value[rank * local : (rank + 1) * local] for key, value in batch.items()}
        for batch in global_batches(repeated_captions=caption_positives)
    ]
    config = apply_overrides(
        TrainConfig(),
        [
            f"output_dir={out / 'run'}",
            f"steps={STEPS}",
            f"loss.name={loss.split('-')[0]}",
            f"loss.positives={'caption' if caption_positives else 'diagonal'}",
            "device=cpu",
            "optimizer.lr=0.01",
            "optimizer.warmup_steps=1",
            "optimizer.eps=1e-3",
            "logging.every_steps=1",
            "logging.progress_bar=false",
            "logging.tensorboard=false",
            "checkpoint.every_steps=0",
        ],
    )
    torch.manual_seed(0)
    model = SiglipModel("tiny-test").train()
    trainer = Trainer(model, batches, config)
    trainer.fit()
    if trainer.context.is_main:
        torch.save(
            {name: p.detach() for name, p in model.named_parameters()},
            out / "parameters.pt",
        )


def main(out: str) -> None:
    for loss in ("sigmoid", "softmax", "sigmoid-caption"):
        train(Path(out) / loss, loss)
    close_distributed()


if __name__ == "__main__":
    main(sys.argv[1])
