"""Opt-in: the SigLIP 2 recipe ablation in miniature (``nox -s siglip2-ablation``).

Builds ``siglip-data build emoji-scenes`` (1-4 Noto emoji and Fashion-MNIST items per canvas,
boxes, captions, per-pixel category maps), then trains under one budget (the same steps, batch,
seed and data order for every run):

- (a) sigmoid loss only;
- (b) + LocCa decoder (Cap, ARef, GCap; weight 1);
- (c) + LocCa + SILC/TIPS from 80% of training (EMA teacher, size factor 0.25);
- (d) a smaller student, first trained on the sigmoid loss alone, then fine-tuned twice for the
  same steps: with ACID (super-batch 2x, keep the most learnable half; reference = (c)) and
  without curation.

Each model is evaluated on scenes with layouts never seen in training (``test``) and on scenes of
held-out emoji names (``heldout``): retrieval R@1 (global features), a dense linear probe on the
frozen patch tokens (pixel accuracy, mIoU over 18 categories incl. background) and, with a
decoder, referring-expression accuracy (the decoder generates the box for a name; IoU >= 0.5).

    python packages/siglip-train/scripts/siglip2_ablation.py --out runs/siglip2-ablation

Writes ``OUT/report.json``, ``OUT/report.md`` and ``OUT/ablation.png`` (when matplotlib is
installed).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _uptime() -> str:
    try:
        return subprocess.run(
            ["uptime"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return "unknown"


def _model(
    vocab_size: int, *, width: int, depth: int, text_depth: int, args: Any, seed: int
) -> Any:
    from siglip_models import SiglipConfig
    from siglip_models import TextConfig
    from siglip_models import VisionConfig
    from siglip_models.torch import SiglipModel

    torch.manual_seed(seed)
    model = SiglipModel(
        SiglipConfig(
            vision=VisionConfig(
                image_size=args.image_size, patch_size=8, width=width, depth=depth,
                num_heads=4, mlp_dim=4 * width,
            ),
            text=TextConfig(
                vocab_size=vocab_size, max_length=args.text_length, width=width, depth=text_depth,
                num_heads=4, mlp_dim=4 * width, embed_dim=width, pad_id=1,
            ),
            log_scale_init=float(np.log(10.0)),
            bias_init=-10.0,
        )
    )  # fmt: skip
    return model


def _decoder(model: Any, args: Any, seed: int) -> Any:
    from siglip_models import TextDecoderConfig
    from siglip_models.torch import SiglipTextDecoder

    torch.manual_seed(seed + 1)
    return SiglipTextDecoder(
        TextDecoderConfig.from_siglip(model.config, max_length=args.decoder_length)
    )


def _train_config(args: Any, steps: int, lr: float, warmup: int) -> Any:
    from siglip_train import OptimizerConfig
    from siglip_train import TrainConfig

    return TrainConfig(
        steps=steps,
        seed=args.seed,
        device="cpu",
        optimizer=OptimizerConfig(
            lr=lr, weight_decay=0.1, beta2=0.95, grad_clip=1.0, warmup_steps=warmup,
            logit_lr_multiplier=10.0,
        ),
    )  # fmt: skip


@torch.no_grad()
def _embed(model: Any, pixels: np.ndarray, token_ids: np.ndarray) -> tuple[Any, Any, Any]:
    from siglip_train.recipe import vision_tokens

    images, texts, patches = [], [], []
    model.eval()
    for start in range(0, len(pixels), 256):
        chunk = torch.as_tensor(pixels[start : start + 256]).permute(0, 3, 1, 2).float() / 127.5 - 1
        tokens = vision_tokens(model.vision_model, chunk)
        patches.append(tokens.numpy())
        images.append(model.vision_model.head(tokens).numpy())
        texts.append(
            model.encode_text(torch.as_tensor(token_ids[start : start + 256]).long()).numpy()
        )
    model.train()
    return np.concatenate(images), np.concatenate(texts), np.concatenate(patches)


def _evaluate(model: Any, decoder: Any, data: dict[str, Any], tokenizer: Any, args: Any) -> dict:
    from siglip_data.builders import scene_categories
    from siglip_eval import retrieval_metrics
    from siglip_eval.grounding import dense_linear_probe
    from siglip_eval.grounding import referring_expression_accuracy
    from siglip_eval.torch import generate_boxes

    results: dict[str, float] = {}
    probe_train = data["train"]
    count = min(args.probe_scenes, len(probe_train.pixels))
    _, _, train_patches = _embed(
        model, probe_train.pixels[:count], tokenizer(probe_train.captions[:count])
    )
    for split in ("test", "heldout"):
        scenes = data[split]
        image, text, patches = _embed(model, scenes.pixels, tokenizer(scenes.captions))
        retrieval = retrieval_metrics(image, text, np.arange(len(image)), ks=(1,))
        results[f"{split}/image_to_text_R@1"] = retrieval["image_to_text_R@1"]
        results[f"{split}/text_to_image_R@1"] = retrieval["text_to_image_R@1"]
        probe = dense_linear_probe(
            train_patches, probe_train.category_maps[:count], patches, scenes.category_maps,
            num_classes=len(scene_categories()), steps=args.probe_steps, seed=args.seed,
        )  # fmt: skip
        results[f"{split}/dense_pixel_accuracy"] = probe.pixel_accuracy
        results[f"{split}/dense_mIoU"] = probe.mean_iou
        if decoder is not None:
            decoder.eval()
            with torch.no_grad():
                pixels = torch.as_tensor(scenes.pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
                from siglip_train.recipe import vision_tokens

                tokens = vision_tokens(model.vision_model, pixels)
            names = [items[0]["name"] for items in scenes.objects]
            truth = [items[0]["box"] for items in scenes.objects]
            boxes = generate_boxes(
                decoder, tokens, names, tokenizer, image_size=args.image_size,
                bins=args.box_bins, max_new_tokens=12,
            )  # fmt: skip
            results[f"{split}/refexp_acc@0.5"] = referring_expression_accuracy(boxes, truth)
            results[f"{split}/refexp_parsed"] = float(np.mean([b is not None for b in boxes]))
            decoder.train()
    return results


def _run(
    name: str,
    model: Any,
    batches: Any,
    config: Any,
    recipe: Any,
    *,
    decoder: Any = None,
    reference: Any = None,
) -> dict[str, Any]:
    from siglip_train.recipe import RecipeTrainer

    trainer = RecipeTrainer(model, batches, config, recipe, decoder=decoder, reference=reference)
    started = time.perf_counter()
    history = trainer.fit()
    seconds = time.perf_counter() - started
    last = history[-max(1, len(history) // 10) :]
    parts = {
        key: float(np.mean([h.parts.get(key, np.nan) for h in last])) for key in last[-1].parts
    }
    print(f"[{name}] {len(history)} steps in {seconds:.0f} s; final losses {parts}", flush=True)
    return {
        "seconds": seconds,
        "steps": len(history),
        "final_losses": parts,
        "loss_curve": [h.loss for h in history],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/siglip2-ablation")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--student-steps", type=int, default=250, help="(d): each phase")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--train-scenes", type=int, default=6000)
    parser.add_argument("--eval-scenes", type=int, default=400)
    parser.add_argument("--emoji-names", type=int, default=48)
    parser.add_argument("--text-length", type=int, default=32)
    parser.add_argument("--decoder-length", type=int, default=48)
    parser.add_argument("--box-bins", type=int, default=32)
    parser.add_argument("--vocab-size", type=int, default=160)
    parser.add_argument("--probe-scenes", type=int, default=1000)
    parser.add_argument("--probe-steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default="a,b,c,d")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_before = _uptime()
    import siglip_data
    from siglip_train.recipe import RecipeConfig
    from siglip_train.recipe import SceneBatches
    from siglip_train.recipe import load_scenes
    from siglip_train.recipe import train_scene_tokenizer

    data_dir = out / f"scenes-{args.image_size}px-{args.train_scenes}-{args.emoji_names}"
    if not (data_dir / "dataset.json").is_file():
        started = time.perf_counter()
        siglip_data.builders.build_emoji_scenes(
            data_dir, image_size=args.image_size, train_scenes=args.train_scenes,
            test_scenes=args.eval_scenes, heldout_scenes=args.eval_scenes,
            emoji_names=args.emoji_names, seed=args.seed,
        )  # fmt: skip
        print(f"built the scenes in {time.perf_counter() - started:.0f} s", flush=True)
    data = {split: load_scenes(data_dir, split) for split in ("train", "test", "heldout")}
    tokenizer = train_scene_tokenizer(
        data["train"], out / f"tokenizer-{args.vocab_size}.model", vocab_size=args.vocab_size,
        length=args.text_length, box_bins=args.box_bins,
    )  # fmt: skip

    def batches(batch_size: int) -> Any:
        return SceneBatches(
            data["train"], tokenizer, batch_size=batch_size, decoder_length=args.decoder_length,
            box_bins=args.box_bins, seed=args.seed,
        )  # fmt: skip

    common = {"decoder_length": args.decoder_length, "box_bins": args.box_bins}
    distillation = {
        "distillation": True, "distillation_start": 0.8, "size_factor": 0.25, "local_crops": 4,
        "head_hidden": 256, "head_bottleneck": 64, "prototypes": 256,
    }  # fmt: skip
    big = {"width": 96, "depth": 4, "text_depth": 2}
    small = {"width": 48, "depth": 2, "text_depth": 2}
    vocab = tokenizer.vocab_size
    report: dict[str, Any] = {
        "config": vars(args),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "uptime_before": load_before,
        "runs": {},
    }
    runs = args.runs.split(",")
    models: dict[str, Any] = {}
    plans = {
        "a": ("(a) sigmoid", RecipeConfig(locca=False, **common), False),
        "b": ("(b) + LocCa", RecipeConfig(locca=True, **common), True),
        "c": ("(c) + LocCa + SILC/TIPS from 80%", RecipeConfig(locca=True, **common, **distillation), True),
    }  # fmt: skip
    for key in ("a", "b", "c"):
        if key not in runs:
            continue
        label, recipe, with_decoder = plans[key]
        model = _model(vocab, **big, args=args, seed=args.seed)
        decoder = _decoder(model, args, args.seed) if with_decoder else None
        config = _train_config(args, args.steps, 1e-3, args.steps // 10)
        record = _run(label, model, batches(args.batch_size), config, recipe, decoder=decoder)
        record["metrics"] = _evaluate(model, decoder, data, tokenizer, args)
        record["parameters"] = sum(p.numel() for p in model.parameters())
        report["runs"][label] = record
        models[key] = model
        print(json.dumps(record["metrics"]), flush=True)
    if "d" in runs:
        reference = models.get("c")
        if reference is None:
            raise SystemExit("run (d) needs (c) as the ACID reference: --runs c,d")
        student = _model(vocab, **small, args=args, seed=args.seed + 10)
        sigmoid_only = RecipeConfig(locca=False, **common)
        pretrain = _train_config(args, args.student_steps, 1e-3, args.student_steps // 10)
        record = _run(
            "(d) student pretraining", student, batches(args.batch_size), pretrain, sigmoid_only
        )
        report["runs"]["(d) student before fine-tuning"] = {
            **record, "metrics": _evaluate(student, None, data, tokenizer, args),
            "parameters": sum(p.numel() for p in student.parameters()),
        }  # fmt: skip
        finetune = _train_config(args, args.student_steps, 3e-4, 0)
        for label, acid in (
            ("(d) student fine-tuned, no curation", False),
            ("(d) student fine-tuned, ACID", True),
        ):
            tuned = copy.deepcopy(student)
            recipe = RecipeConfig(locca=False, acid=acid, acid_keep_fraction=0.5, **common)
            size = args.batch_size * 2 if acid else args.batch_size
            source = batches(size)
            source.seed = args.seed + 1  # fine-tuning data order, the same for both
            record = _run(
                label, tuned, source, finetune, recipe, reference=reference if acid else None
            )
            record["metrics"] = _evaluate(tuned, None, data, tokenizer, args)
            record["parameters"] = sum(p.numel() for p in tuned.parameters())
            report["runs"][label] = record
            print(json.dumps(record["metrics"]), flush=True)
    report["uptime_after"] = _uptime()
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(_markdown(report))
    _plot(report, out / "ablation.png")
    print(_markdown(report))


def _markdown(report: dict[str, Any]) -> str:
    columns = [
        ("test/image_to_text_R@1", "I→T R@1"),
        ("test/text_to_image_R@1", "T→I R@1"),
        ("heldout/text_to_image_R@1", "held-out names T→I R@1"),
        ("test/dense_pixel_accuracy", "dense pixel acc"),
        ("test/dense_mIoU", "dense mIoU"),
        ("heldout/dense_mIoU", "held-out dense mIoU"),
        ("test/refexp_acc@0.5", "RefExp acc@0.5"),
    ]
    lines = [
        "| run | steps | wall s | " + " | ".join(title for _, title in columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for label, record in report["runs"].items():
        metrics = record["metrics"]
        cells = [f"{metrics[key]:.3f}" if key in metrics else "–" for key, _ in columns]
        lines.append(
            f"| {label} | {record['steps']} | {record['seconds']:.0f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def _plot(report: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    figure, axis = plt.subplots(figsize=(7, 4))
    for label, record in report["runs"].items():
        curve = np.convolve(record["loss_curve"], np.ones(20) / 20, mode="valid")
        axis.plot(curve, label=label)
    axis.set_xlabel("step")
    axis.set_ylabel("total training loss (20-step mean)")
    axis.set_yscale("log")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
