"""``siglip-eval multilingual``: per-language retrieval on an XM3600-layout folder, as a
markdown + JSON table and a per-language bar chart."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from siglip_eval._atomic import atomic_write
from siglip_eval._atomic import atomic_write_text
from siglip_eval._multilingual import MEAN
from siglip_eval._multilingual import PROTOCOLS
from siglip_eval._multilingual import MultilingualResult

PROTOCOL_NOTES = {
    "big_vision": "every caption of the language (SigLIP / SigLIP 2 papers)",
    "clip_benchmark": "the first caption of each image only (CLIP_benchmark)",
}


def _percent(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{100.0 * value:.2f}"


def markdown_multilingual(
    result: MultilingualResult, *, context: dict[str, Any] | None = None
) -> str:
    """The per-language table of ``result`` in markdown, one table per protocol (percent).

    Args:
        result: what ``evaluate_multilingual`` returned.
        context: facts printed above the tables (model, root, tokenizer...).

    Returns:
        The markdown text.
    """
    lines = [f"# siglip-eval multilingual: {result.dataset}", ""]
    for key, value in (context or {}).items():
        lines.append(f"- {key}: `{value}`")
    if context:
        lines.append("")
    lines.append(
        f"{result.num_images} images, {len(result.languages)} languages. Recall@K in percent;"
        " T->I is text->image (averaged over captions), I->T image->text (averaged over images)."
    )
    non_english = result.mean_without(("en",))
    for protocol, metrics in result.metrics.items():
        columns = [f"T->I R@{k}" for k in result.ks] + [f"I->T R@{k}" for k in result.ks]
        keys = [f"text_to_image_R@{k}" for k in result.ks]
        keys += [f"image_to_text_R@{k}" for k in result.ks]
        lines += [
            "",
            f"## protocol `{protocol}`: {PROTOCOL_NOTES[protocol]}",
            "",
            "| language | captions | " + " | ".join(columns) + " |",
            "|---|---|" + "---|" * len(columns),
        ]
        counts = result.num_texts[protocol]
        for language in result.languages:
            values = " | ".join(_percent(metrics[language][key]) for key in keys)
            lines.append(f"| {language} | {counts[language]} | {values} |")
        total = sum(counts.values())
        mean = " | ".join(f"**{_percent(metrics[MEAN][key])}**" for key in keys)
        lines.append(f"| **mean ({len(result.languages)} languages)** | {total} | {mean} |")
        if protocol in non_english and len(result.languages) > 1 and "en" in result.languages:
            others = " | ".join(_percent(non_english[protocol][key]) for key in keys)
            lines.append(f"| mean without en | {total - counts['en']} | {others} |")
    return "\n".join(lines) + "\n"


def plot_per_language(
    result: MultilingualResult, path: str | os.PathLike[str], *, k: int | None = None
) -> None:
    """Bar chart of Recall@k per language, text->image and image->text, one bar per protocol.

    Args:
        result: what ``evaluate_multilingual`` returned.
        path: the PNG to write (atomically).
        k: the K shown (default: the first of ``result.ks``).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    shown = result.ks[0] if k is None else k
    labels = [*result.languages, MEAN]
    positions = np.arange(len(labels))
    width = 0.8 / len(result.metrics)
    figure = Figure(figsize=(max(6.0, 0.32 * len(labels) + 2.0), 6.5))
    for row, direction in enumerate(("text_to_image", "image_to_text")):
        axes = figure.add_subplot(2, 1, row + 1)
        for index, (protocol, metrics) in enumerate(result.metrics.items()):
            values = [100 * metrics[label][f"{direction}_R@{shown}"] for label in labels]
            offset = (index - (len(result.metrics) - 1) / 2) * width
            axes.bar(positions + offset, values, width, label=protocol)
        axes.set_xticks(positions, labels, rotation=90 if len(labels) > 12 else 0)
        axes.set_ylabel(f"{direction.replace('_to_', '->').replace('_', ' ')} R@{shown} (%)")
        axes.set_ylim(0, 100)
        axes.grid(True, axis="y", alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(f"{result.dataset}: Recall@{shown} per language")
    figure.tight_layout()
    atomic_write(
        Path(path),
        lambda temporary: figure.savefig(temporary, format="png", dpi=120, bbox_inches="tight"),
    )


def write_multilingual_report(
    result: MultilingualResult,
    out_dir: str | os.PathLike[str],
    *,
    context: dict[str, Any] | None = None,
    plots: bool = True,
) -> dict[str, Path]:
    """Write ``results.json``, ``summary.md`` and (with matplotlib) ``per_language.png``.

    Args:
        result: what ``evaluate_multilingual`` returned.
        out_dir: folder (created).
        context: extra facts for the report.
        plots: draw the bar chart (needs matplotlib, extra ``[report]``).

    Returns:
        ``{"json": path, "markdown": path, "per_language": path}``.
    """
    from siglip_eval._report import _json_ready

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    record = dict(result.to_dict())
    if context:
        record["context"] = context
    written = {"json": folder / "results.json", "markdown": folder / "summary.md"}
    atomic_write_text(written["json"], json.dumps(_json_ready(record), indent=2, allow_nan=False))
    atomic_write_text(written["markdown"], markdown_multilingual(result, context=context))
    if plots:
        written["per_language"] = folder / "per_language.png"
        plot_per_language(result, written["per_language"])
    return written


def run_multilingual(args: argparse.Namespace) -> int:
    """``siglip-eval multilingual``: evaluate, write the report, print the table."""
    from siglip_eval._cli import UsageError
    from siglip_eval._cli import _context
    from siglip_eval._cli import _load_npz
    from siglip_eval._cli import load_encoder
    from siglip_eval._encoders import EmbeddingCache
    from siglip_eval._multilingual import evaluate_multilingual
    from siglip_eval._multilingual import multilingual_from_embeddings
    from siglip_eval._multilingual import xm3600

    try:
        ks = tuple(int(k) for k in args.ks.split(","))
    except ValueError:
        raise UsageError(f"--ks: expected comma-separated integers, got {args.ks!r}") from None
    protocols = PROTOCOLS if args.protocol == "both" else (args.protocol,)
    languages = (
        None if args.languages is None else [code.strip() for code in args.languages.split(",")]
    )
    if args.embeddings is not None:
        arrays = _load_npz(args.embeddings, ("image_emb", "text_emb", "text_to_image", "languages"))
        codes = np.asarray([str(code) for code in arrays["languages"]], dtype=object)
        # --languages selects: the other languages' captions are left out, as the reader does.
        keep = np.ones(len(codes), bool) if languages is None else np.isin(codes, languages)
        if keep.shape[0] != np.asarray(arrays["text_emb"]).shape[0]:
            keep = np.ones(len(codes), bool)  # the metric names the length mismatch
        result = multilingual_from_embeddings(
            arrays["image_emb"],
            np.asarray(arrays["text_emb"])[keep],
            np.asarray(arrays["text_to_image"])[keep],
            codes[keep].tolist(),
            ks=ks,
            protocols=protocols,
            known_languages=languages,
            dataset=Path(args.embeddings).stem,
            ties=args.ties,
        )
        context = _context(args)
    else:
        if args.root is None:
            raise UsageError(
                "multilingual: needs --root DIR (captions.jsonl + images/) with --model"
            )
        encoder, image_size = load_encoder(args)
        dataset = xm3600(
            args.root,
            image_size=image_size,
            languages=languages,
            images_dir=args.images_dir,
            resample=args.resample,
        )
        result = evaluate_multilingual(
            encoder,
            dataset,
            ks=ks,
            protocols=protocols,
            batch_size=args.batch_size,
            cache=EmbeddingCache(args.cache) if args.cache else None,
            progress=not args.no_progress,
            ties=args.ties,
        )
        context = _context(
            args,
            root=args.root,
            image_size=image_size,
            tokenizer_preset=args.tokenizer_preset,
            lowercase=args.lowercase,
        )
    plots = not args.no_plots
    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                "matplotlib is not installed: skipping the bar chart"
                " (pip install 'siglip-eval[report]')",
                file=sys.stderr,
            )
            plots = False
    written = write_multilingual_report(result, args.out, context=context, plots=plots)
    print(markdown_multilingual(result, context=context))
    print("wrote " + ", ".join(str(path) for path in written.values()), file=sys.stderr)
    return 0


def add_multilingual_command(
    commands: Any, common: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Register ``siglip-eval multilingual`` on the sub-command parsers ``commands``."""
    parser = commands.add_parser(
        "multilingual",
        help="per-language retrieval on an XM3600-layout folder (both protocols)",
        description="Per-language image-text retrieval on Crossmodal-3600 or a folder in its layout"
        " (captions.jsonl + images/<key>.jpg; siglip-data build emoji-multilingual writes one)."
        " Writes results.json, summary.md and per_language.png. Downloads nothing.",
    )
    common(parser)
    parser.add_argument("--root", help="folder with captions.jsonl (XM3600 layout)")
    parser.add_argument("--images-dir", help="folder of <image/key>.jpg (default ROOT/images)")
    parser.add_argument(
        "--languages", help="comma-separated languages to evaluate (default: every one in the file)"
    )
    parser.add_argument(
        "--protocol",
        default="both",
        choices=("both", *PROTOCOLS),
        help="big_vision: every caption (SigLIP papers); clip_benchmark: first caption only",
    )
    parser.add_argument("--ks", default="1,5,10", help="comma-separated K values")
    parser.set_defaults(run=run_multilingual, dataset=None)
