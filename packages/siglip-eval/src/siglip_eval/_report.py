"""Reports: ``results.json``, ``summary.md`` and (with matplotlib) the plots, written atomically."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from siglip_eval._atomic import atomic_write
from siglip_eval._atomic import atomic_write_text
from siglip_eval._linear_probe import LinearProbeResult
from siglip_eval._retrieval import RetrievalResult
from siglip_eval._zeroshot import ZeroShotResult

Result = ZeroShotResult | RetrievalResult | LinearProbeResult


def _json_ready(value: Any) -> Any:
    """NaN/inf become null (strict JSON); numpy scalars and arrays become Python values."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, np.generic):
        return _json_ready(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _percent(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100.0 * value:.2f}"


def markdown_summary(result: Result, *, context: dict[str, Any] | None = None) -> str:
    """A markdown summary of ``result`` (metrics in percent, plus the run's context)."""
    summary = result.to_dict()
    lines = [f"# siglip-eval {summary['task']}: {summary['dataset']}", ""]
    for key, value in (context or {}).items():
        lines.append(f"- {key}: `{value}`")
    if context:
        lines.append("")
    lines += ["| metric | value (%) |", "|---|---|"]
    lines += [f"| {name} | {_percent(value)} |" for name, value in summary["metrics"].items()]
    lines.append("")
    if isinstance(result, ZeroShotResult):
        lines.append(
            f"{summary['num_images']} images, {summary['num_classes']} classes,"
            f" {summary['num_templates']} prompt template(s)."
        )
        if result.tied_images:
            lines.append(
                f"**{result.tied_images} image(s) have tied scores at the top-1/top-5 boundary.**"
            )
        lines += ["", "| class | images | accuracy (%) |", "|---|---|---|"]
        counts = result.confusion.sum(axis=1)
        for name, count, accuracy in zip(result.class_names, counts, result.per_class_accuracy):
            lines.append(f"| {name} | {int(count)} | {_percent(float(accuracy))} |")
    elif isinstance(result, RetrievalResult):
        lines.append(f"{summary['num_images']} images, {summary['num_texts']} captions.")
        lines.append(
            f"Median rank: image->text {summary['median_rank']['image_to_text']:.1f},"
            f" text->image {summary['median_rank']['text_to_image']:.1f}."
        )
        if result.tied_queries:
            lines.append(
                f"**{result.tied_queries} quer(ies) have a hit that depends on the tie rule.**"
            )
    else:
        lines.append(
            f"train {summary['num_train']}, validation {summary['num_val']}, test {summary['num_test']};"
            f" best C = {summary['best_C']:.4g}; L-BFGS converged: {summary['converged']}."
        )
        lines += ["", "| C | validation top-1 (%) |", "|---|---|"]
        for row in sorted(summary["sweep"], key=lambda r: r["C"]):
            lines.append(f"| {row['C']:.4g} | {_percent(row['val_top1'])} |")
    return "\n".join(lines) + "\n"


def _save_figure(figure: Any, path: Path) -> None:
    atomic_write(
        path,
        lambda temporary: figure.savefig(temporary, format="png", dpi=120, bbox_inches="tight"),
    )


def plot_confusion_matrix(result: ZeroShotResult, path: str | os.PathLike[str]) -> None:
    """Row-normalised confusion matrix (true class rows, predicted class columns) as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    counts = result.confusion.astype(np.float64)
    rows = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    classes = len(result.class_names)
    side = min(2.0 + 0.35 * classes, 30.0)
    figure = Figure(figsize=(side + 1.5, side))
    axes = figure.add_subplot()
    image = axes.imshow(rows, vmin=0.0, vmax=1.0, cmap="viridis")
    figure.colorbar(image, ax=axes, label="fraction of the true class")
    if classes <= 40:
        axes.set_xticks(range(classes), result.class_names, rotation=90)
        axes.set_yticks(range(classes), result.class_names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(f"{result.dataset}: top-1 {_percent(result.metrics['top1'])}%")
    _save_figure(figure, Path(path))


def plot_recall_curve(
    result: RetrievalResult, path: str | os.PathLike[str], *, max_k: int = 50
) -> None:
    """Recall@K for K = 1..max_k, both directions, as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    curve = result.recall_curve(max_k)
    figure = Figure(figsize=(6, 4))
    axes = figure.add_subplot()
    axes.plot(curve["k"], [100 * v for v in curve["image_to_text"]], label="image -> text")
    axes.plot(curve["k"], [100 * v for v in curve["text_to_image"]], label="text -> image")
    axes.set_xscale("log")
    axes.set_xlabel("K")
    axes.set_ylabel("Recall@K (%)")
    axes.set_ylim(0, 100)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    axes.set_title(result.dataset)
    _save_figure(figure, Path(path))


def write_report(
    result: Result,
    out_dir: str | os.PathLike[str],
    *,
    context: dict[str, Any] | None = None,
    plots: bool = True,
) -> dict[str, Path]:
    """Write ``results.json`` and ``summary.md`` (and plots) for ``result`` into ``out_dir``.

    Plots: ``confusion_matrix.png`` (zero-shot) and ``recall_at_k.png`` (retrieval); they need
    matplotlib (extra ``[report]``) and are skipped with ``plots=False``.

    Args:
        result: a ``ZeroShotResult``, ``RetrievalResult`` or ``LinearProbeResult``.
        out_dir: folder (created).
        context: extra facts for the report (model, dataset path, templates...).
        plots: draw the plots.

    Returns:
        ``{"json": path, "markdown": path, ...plots}``.

    Raises:
        ImportError: ``plots=True`` without matplotlib.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    record = dict(result.to_dict())
    if context:
        record["context"] = context
    if isinstance(result, RetrievalResult):
        record["recall_curve"] = result.recall_curve(min(50, max(len(result.text_to_image), 1)))
    written = {"json": folder / "results.json", "markdown": folder / "summary.md"}
    atomic_write_text(written["json"], json.dumps(_json_ready(record), indent=2, allow_nan=False))
    atomic_write_text(written["markdown"], markdown_summary(result, context=context))
    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError as error:
            raise ImportError(
                "plots need matplotlib: pip install 'siglip-eval[report]' (or pass plots=False)"
            ) from error
        if isinstance(result, ZeroShotResult):
            written["confusion_matrix"] = folder / "confusion_matrix.png"
            plot_confusion_matrix(result, written["confusion_matrix"])
        elif isinstance(result, RetrievalResult):
            written["recall_at_k"] = folder / "recall_at_k.png"
            plot_recall_curve(result, written["recall_at_k"])
    return written
