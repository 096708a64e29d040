"""Opt-in demo: does keeping the aspect ratio help on wide images? Fixed square resize vs NaFlex.

Builds ``siglip-data build rendered-words`` (English words and phrases drawn 24 pixels high in the
DejaVu fonts, as wide as the text), trains the CPU demo's model (ViT 128 x 4 with 8-pixel
patches, text 128 x 3) twice with the same recipe, the same steps, the same batches of the same
samples and the same number of image tokens per image:

- ``fixed``: every image squashed to a square of ``sqrt(tokens) * 8`` pixels (Pillow bilinear);
- ``naflex``: every image resized at its aspect ratio to at most ``tokens`` patches of 8 pixels
  (``siglip_data.naflex``, the same Pillow bilinear), a NaFlex tower of the same size.

Then both retrieve held-out samples (words never seen in training) text -> image and image ->
text (R@1, R@10), and a picture shows a few inputs as each model sees them.

Install (from the repository root; Debian packages as root)::

    apt-get install -y wamerican fonts-dejavu-core
    pip install -c constraints.txt -e 'packages/siglip-train[eval,demo]' \\
        -e 'packages/siglip-models[torch]' -e 'packages/siglip-data[torch,fast]' \\
        -e 'packages/siglip-eval[torch]' -e 'packages/siglip-loss[torch]' matplotlib
    python packages/siglip-train/scripts/naflex_demo.py --out runs/naflex-demo

Writes ``OUT/report.json``, ``OUT/report.md`` and ``OUT/inputs.png``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import siglip_data
from siglip_data.naflex import NaflexOptions
from siglip_data.naflex import naflex_preprocess


def _model(kind: str, *, vocab_size: int, tokens: int, text_length: int, seed: int) -> Any:
    from siglip_models.torch import SiglipModel
    from siglip_train.demo import demo_model_config

    side = math.isqrt(tokens)
    config = demo_model_config(vocab_size=vocab_size, image_size=side * 8, text_length=text_length)
    if kind == "naflex":
        # Same tower, a linear patch embedding and a side x side position grid resized per image.
        config = config.replace(vision={"naflex": True})
    torch.manual_seed(seed)
    model = SiglipModel(config)
    with torch.no_grad():
        model.log_scale.fill_(math.log(10.0))
        model.bias.fill_(-10.0)
    return model.train()


def _dataset(
    kind: str, shards: list[str], tokenizer: Any, *, tokens: int, batch: int, seed: int
) -> Any:
    options: dict[str, Any] = {
        "tokenizer": tokenizer,
        "batch_size": batch,
        "seed": seed,
        "shuffle_buffer": 2000,
        "drop_last": True,
    }
    if kind == "naflex":
        options["naflex"] = NaflexOptions(sequence_lengths=(tokens,), patch_size=8)
    else:
        options["image_size"] = math.isqrt(tokens) * 8
        options["decode"] = siglip_data.DecodeOptions(resample="pil_bilinear")
    return siglip_data.ImageTextDataset(shards, **options)


def _train(
    kind: str, args: argparse.Namespace, shards: list[str], tokenizer: Any, vocab: int
) -> tuple[Any, float]:
    from siglip_train import Trainer
    from siglip_train import apply_overrides
    from siglip_train.demo import demo_config

    config = apply_overrides(
        demo_config(),
        [
            f"steps={args.steps}",
            f"output_dir={args.out / kind}",
            f"optimizer.warmup_steps={max(1, args.steps // 10)}",
            "checkpoint.every_steps=0",
            "logging.every_steps=25",
            "logging.progress_bar=false",
            "logging.tensorboard=false",
        ],
    )
    model = _model(kind, vocab_size=vocab, tokens=args.tokens, text_length=args.text_length, seed=0)
    batches = _dataset(kind, shards, tokenizer, tokens=args.tokens, batch=args.batch_size, seed=1)
    started = time.perf_counter()
    Trainer(model, batches, config).fit()
    return model.eval(), time.perf_counter() - started


@torch.no_grad()
def _retrieval(
    kind: str, model: Any, samples: list[Any], tokenizer: Any, tokens: int
) -> dict[str, float]:
    from siglip_eval import retrieval_from_embeddings
    from siglip_loss.torch import l2_normalize

    image_rows, text_rows = [], []
    for start in range(0, len(samples), 250):
        chunk = samples[start : start + 250]
        if kind == "naflex":
            records = [
                naflex_preprocess(s.image, patch_size=8, max_num_patches=tokens) for s in chunk
            ]
            batch = siglip_data.naflex.collate_naflex(records)
            emb = model.encode_image_naflex(
                torch.from_numpy(batch.patches),
                torch.from_numpy(batch.patch_mask),
                torch.from_numpy(batch.spatial_shapes),
            )
        else:
            side = math.isqrt(tokens) * 8
            pixels = np.stack(
                [
                    siglip_data.preprocess_image(s.image, size=side, resample="pil_bilinear")
                    for s in chunk
                ]
            )
            emb = model.encode_image(torch.from_numpy(pixels).permute(0, 3, 1, 2))
        image_rows.append(l2_normalize(emb.float()))
        ids = torch.from_numpy(np.asarray(tokenizer([s.caption for s in chunk]))).long()
        text_rows.append(l2_normalize(model.encode_text(ids).float()))
    image_emb = torch.cat(image_rows).numpy()
    text_emb = torch.cat(text_rows).numpy()
    result = retrieval_from_embeddings(
        image_emb, text_emb, np.arange(len(samples)), ks=(1, 10), dataset="rendered-words:heldout"
    )
    return {key: float(value) for key, value in result.metrics.items()}


def _picture(samples: list[Any], tokens: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    side = math.isqrt(tokens) * 8
    fig, axes = plt.subplots(len(samples), 3, figsize=(9, 1.1 * len(samples)))
    for row, sample in enumerate(samples):
        original = np.asarray(Image.open(io.BytesIO(sample.image)).convert("RGB"))
        fixed = siglip_data.preprocess_image(sample.image, size=side, resample="pil_bilinear")
        record = naflex_preprocess(sample.image, patch_size=8, max_num_patches=tokens)
        views = [
            (original / 255, f"stored {original.shape[1]}x{original.shape[0]}"),
            ((fixed + 1) / 2, f"fixed {side}x{side}"),
            (
                (record.image() + 1) / 2,
                f"NaFlex {record.spatial_shape[0]}x{record.spatial_shape[1]} patches",
            ),
        ]
        for column, (image, title) in enumerate(views):
            axis = axes[row, column]
            axis.imshow(np.clip(image, 0, 1), interpolation="nearest")
            axis.set_title(title, fontsize=8)
            axis.set_xticks([])
            axis.set_yticks([])
    fig.suptitle(
        f"'{samples[0].caption}' ... as each model sees them ({tokens} tokens)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/naflex-demo"))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=16, help="image tokens per image (a square)")
    parser.add_argument("--text-length", type=int, default=16)
    parser.add_argument("--vocab-size", type=int, default=256)
    parser.add_argument("--train-limit", type=int, default=None, help="training samples to build")
    parser.add_argument("--heldout", type=int, default=1000, help="held-out samples evaluated")
    parser.add_argument("--only", choices=("fixed", "naflex"), help="train one variant")
    args = parser.parse_args(argv)
    if math.isqrt(args.tokens) ** 2 != args.tokens:
        parser.error("--tokens must be a square (the fixed model's grid)")
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "rendered-words"
    started = time.perf_counter()
    if not (data / "dataset.json").exists():
        siglip_data.builders.build_rendered_words(data, limit=args.train_limit)
    info = siglip_data.builders.load_dataset_info(data)
    train = list(info.splits["train"].shards)
    captions = [s.caption for shard in train for s in siglip_data.read_shard(shard)]
    spm = siglip_data.train_sentencepiece(
        captions, args.out / "words.model", vocab_size=args.vocab_size, preset="siglip"
    )
    tokenizer = siglip_data.SentencePieceTokenizer(spm, preset="siglip", length=args.text_length)
    heldout = [s for shard in info.splits["heldout"].shards for s in siglip_data.read_shard(shard)][
        : args.heldout
    ]
    prepare_seconds = time.perf_counter() - started
    _picture(heldout[:6], args.tokens, args.out / "inputs.png")
    report: dict[str, Any] = {
        "recipe": {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "image_tokens": args.tokens,
            "patch_size": 8,
            "train_samples": len(captions),
            "heldout_samples": len(heldout),
            "vocab_size": args.vocab_size,
            "text_length": args.text_length,
        },
        "prepare_seconds": prepare_seconds,
        "machine": {"platform": platform.platform(), "load_average": os.getloadavg()},
    }
    for kind in ("fixed", "naflex") if args.only is None else (args.only,):
        model, seconds = _train(kind, args, train, tokenizer, args.vocab_size)
        report[kind] = {
            "train_seconds": seconds,
            **_retrieval(kind, model, heldout, tokenizer, args.tokens),
        }
        print(kind, json.dumps(report[kind], indent=1), flush=True)
    report["machine"]["load_average_end"] = os.getloadavg()
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    chance = {1: 1 / len(heldout), 10: 10 / len(heldout)}
    lines = [
        "| model | t->i R@1 | t->i R@10 | i->t R@1 | i->t R@10 | train s |",
        "|---|---|---|---|---|---|",
    ]
    for kind in ("fixed", "naflex"):
        if kind in report:
            r = report[kind]
            lines.append(
                f"| {kind} | {r['text_to_image_R@1']:.3f} | {r['text_to_image_R@10']:.3f} | "
                f"{r['image_to_text_R@1']:.3f} | {r['image_to_text_R@10']:.3f} | {r['train_seconds']:.0f} |"
            )
    lines.append(
        f"| chance | {chance[1]:.3f} | {chance[10]:.3f} | {chance[1]:.3f} | {chance[10]:.3f} | |"
    )
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
