"""`nox -s batch-scan`: the demo model with the sigmoid vs the softmax loss at several batch sizes.

Every run sees the same number of training examples (``--examples``), so smaller batches take
more steps; everything else is the demo's recipe (``siglip_train.demo.demo_config``). The losses
(``--losses``) are ``sigmoid-diagonal`` (the standard SigLIP loss: each image's own caption is its
only positive), ``sigmoid-caption`` (``loss.positives=caption``: identical captions in the batch
are positives too) and ``softmax`` (CLIP); ``sigmoid`` is an alias of ``sigmoid-diagonal``.
Writes ``<out>/batch_scan.json``, ``<out>/batch_scan.png`` and ``<out>/batch_scan.md`` (paste the
table into docs/results.md).

    nox -s batch-scan -- --examples 51200 --out runs/batch-scan
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from siglip_train import build_config
from siglip_train._atomic import atomic_write  # this package's own helper (not public API)
from siglip_train._atomic import atomic_write_text
from siglip_train.demo import demo_config
from siglip_train.demo import run_demo

# The loss variants: their config overrides.
LOSSES = {
    "sigmoid-diagonal": ("loss.name=sigmoid", "loss.positives=diagonal"),
    "sigmoid-caption": ("loss.name=sigmoid", "loss.positives=caption"),
    "softmax": ("loss.name=softmax",),
}
LOSS_ALIASES = {"sigmoid": "sigmoid-diagonal"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/batch-scan")
    parser.add_argument("--data-root", default="runs/data")
    parser.add_argument("--examples", type=int, default=51_200, help="training examples per run")
    parser.add_argument("--batch-sizes", default="16,32,64,128,256")
    parser.add_argument("--losses", default="sigmoid-diagonal,sigmoid-caption,softmax")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    out = Path(args.out)
    results_file = out / "batch_scan.json"
    rows = json.loads(results_file.read_text()) if results_file.is_file() else []
    done = {(row["loss"], row["batch_size"]) for row in rows}
    for loss in args.losses.split(","):
        loss = LOSS_ALIASES.get(loss, loss)
        if loss not in LOSSES:
            parser.error(f"--losses: expected names among {sorted(LOSSES)}, got {loss!r}")
        for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
            if (loss, batch_size) in done:
                continue
            steps = max(1, args.examples // batch_size)
            config = build_config(
                base=demo_config(),
                overrides=[
                    *LOSSES[loss],
                    f"data.batch_size={batch_size}",
                    f"steps={steps}",
                    f"optimizer.warmup_steps={max(1, steps // 10)}",
                    "checkpoint.every_steps=0",
                    "logging.progress_bar=false",
                    *args.overrides,
                ],
            )
            started = time.perf_counter()
            report = run_demo(out / f"{loss}-{batch_size}", config=config, data_root=args.data_root)
            rows.append(
                {
                    "loss": loss,
                    "batch_size": batch_size,
                    "steps": steps,
                    "examples": steps * batch_size,
                    "seconds": time.perf_counter() - started,
                    **{k: report[k] for k in report["chance"]},
                }
            )
            atomic_write_text(results_file, json.dumps(rows, indent=2))
    write_outputs(out, rows)


def write_outputs(out: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    metrics = ("fashion_mnist_zeroshot_top1", "emoji_heldout_image_to_text_R@10")
    figure, axes = pyplot.subplots(1, len(metrics), figsize=(10, 4))
    for axis, metric in zip(axes, metrics, strict=True):
        for loss in sorted({row["loss"] for row in rows}):
            points = sorted((r["batch_size"], r[metric]) for r in rows if r["loss"] == loss)
            axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=loss)
        axis.set_xscale("log", base=2)
        axis.set_xlabel("batch size (same number of examples)")
        axis.set_ylabel(metric)
        axis.legend()
    figure.tight_layout()
    atomic_write(out / "batch_scan.png", lambda path: figure.savefig(path, format="png", dpi=120))
    lines = [
        "| loss | batch | steps | Fashion-MNIST zero-shot top-1 | emoji held-out i->t R@10 "
        "| emoji group balanced acc. |",
        "|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: (r["batch_size"], r["loss"])):
        lines.append(
            f"| {row['loss']} | {row['batch_size']} | {row['steps']} "
            f"| {row['fashion_mnist_zeroshot_top1']:.3f} "
            f"| {row['emoji_heldout_image_to_text_R@10']:.3f} "
            f"| {row['emoji_group_balanced_accuracy']:.3f} |"
        )
    atomic_write_text(out / "batch_scan.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
