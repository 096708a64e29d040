"""`nox -s demo-multilingual`: SigLIP 2's 90% English / 10% multilingual mixture, in miniature.

SigLIP 2 trains on WebLI with 90% English and 10% other languages (a Gemma tokenizer, lowercased
text) and reports XM3600 recall per language. This script reproduces the experiment at demo size
on CPU, offline: the Noto emoji captioned with their CLDR names in 34 of XM3600's languages
(``siglip-data build emoji-multilingual``; Maori, which CLDR 41 names for only 72% of the emoji,
and Cusco Quechua, which it lacks, are left out), the demo model (``siglip_train.demo``), one
Gemma-style SentencePiece vocabulary trained on every language's training captions with a
temperature over languages, and one STEP budget for every arm:

- ``english``: English captions only;
- ``90-10``: 90% English, 10% spread evenly over the other languages;
- ``uniform``: every language equally often;

then the lowercasing A/B: the best mixture (highest mean held-out R@1 over languages and both
directions) trained again with ``lowercase="ascii"`` (big_vision's ``tf.strings.lower``) instead
of ``"unicode"`` (transformers' ``Siglip2Tokenizer``, the ``siglip2`` preset's default).

Every arm sees the same images in the same order with the same shifts (the batch of step s is a
function of the seed and s); only the caption language differs. Evaluation: the held-out emoji
(base names never seen in training), per language, with ``siglip_eval.evaluate_multilingual``
(both XM3600 protocols). Writes ``<out>/multilingual.json`` (every number; finished arms are kept
and skipped on a re-run), ``<out>/multilingual.md`` (the tables for docs/results.md) and
``<out>/per_language.png``.

    nox -s demo-multilingual -- --steps 500 --out runs/multilingual
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from siglip_data import SentencePieceTokenizer
from siglip_data import train_sentencepiece
from siglip_data.builders import XM3600_LANGUAGES
from siglip_data.builders import build_emoji_multilingual
from siglip_eval import evaluate_multilingual
from siglip_eval.datasets import MultilingualDataset
from siglip_eval.datasets import xm3600
from siglip_eval.torch import torch_encoder
from siglip_models.torch import SiglipModel
from siglip_train import Trainer
from siglip_train import build_config
from siglip_train.demo import demo_config
from siglip_train.demo import demo_model_config

# XM3600's languages minus the two CLDR 41 does not name (almost) every emoji in.
DEFAULT_LANGUAGES = tuple(code for code in XM3600_LANGUAGES if code not in ("quz", "mi"))
ARMS = ("english", "90-10", "uniform")


def mixture(arm: str, languages: list[str]) -> dict[str, float]:
    """The probability of each caption language in arm ``arm``."""
    others = [language for language in languages if language != "en"]
    if arm == "english":
        return {"en": 1.0}
    if arm == "90-10":
        return {"en": 0.9, **{language: 0.1 / len(others) for language in others}}
    if arm == "uniform":
        return {language: 1.0 / len(languages) for language in languages}
    raise ValueError(f"unknown arm {arm!r}, expected one of {ARMS}")


def load_pixels(dataset: MultilingualDataset) -> np.ndarray:
    """Every image of the dataset, ``[images, S, S, 3]`` float32 in [-1, 1]."""
    return np.concatenate([batch.pixels for batch in dataset.batches(512)])


@dataclasses.dataclass
class CaptionTable:
    """Every training caption tokenised once: ``tokens[first[l, i] + c]`` is caption c of image i
    in language l (``count[l, i]`` captions)."""

    tokens: np.ndarray
    first: np.ndarray
    count: np.ndarray

    @classmethod
    def build(cls, dataset: MultilingualDataset, tokenizer: SentencePieceTokenizer) -> CaptionTable:
        first = np.zeros((len(dataset.languages), dataset.size), np.int64)
        count = np.zeros_like(first)
        texts: list[str] = []
        for row, language in enumerate(dataset.languages):
            for image, captions in enumerate(dataset.captions[language]):
                first[row, image], count[row, image] = len(texts), len(captions)
                texts += captions
        return cls(tokens=tokenizer(texts), first=first, count=count)


class MixtureBatches:
    """Batch ``step``: ``batch_size`` distinct training images (shifted by up to 3 pixels, white
    fill) drawn from ``(seed, step)``, then one caption each in a language drawn from the
    mixture. Images and shifts do not depend on the mixture, so every arm sees the same pixels."""

    def __init__(
        self,
        pixels: np.ndarray,
        captions: CaptionTable,
        languages: list[str],
        weights: dict[str, float],
        *,
        batch_size: int,
        seed: int,
    ) -> None:
        self.pixels = pixels
        self.captions = captions
        self.probabilities = np.array([weights.get(language, 0.0) for language in languages])
        self.probabilities /= self.probabilities.sum()
        self.batch_size = batch_size
        self.seed = seed
        self.step = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])

    def batch(self, step: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, step])
        images = rng.choice(len(self.pixels), self.batch_size, replace=False)
        shifts = rng.integers(-3, 4, size=(self.batch_size, 2))
        side = self.pixels.shape[1]
        padded = np.pad(self.pixels[images], ((0, 0), (3, 3), (3, 3), (0, 0)), constant_values=1.0)
        pixels = np.stack(
            [
                padded[n, 3 + dy : 3 + dy + side, 3 + dx : 3 + dx + side]
                for n, (dy, dx) in enumerate(shifts)
            ]
        )
        languages = rng.choice(len(self.probabilities), self.batch_size, p=self.probabilities)
        table = self.captions
        picks = table.first[languages, images] + (
            rng.random(self.batch_size) * table.count[languages, images]
        ).astype(np.int64)
        return {"pixels": pixels, "token_ids": table.tokens[picks]}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while True:
            batch = self.batch(self.step)
            self.step += 1
            yield batch


def build_model(vocab_size: int, text_length: int, config: Any) -> SiglipModel:
    """The demo model with a Gemma-style text side (pad id 0), seeded by ``config.seed``."""
    model_config = demo_model_config(vocab_size=vocab_size, image_size=32, text_length=text_length)
    model_config = dataclasses.replace(
        model_config, text=dataclasses.replace(model_config.text, pad_id=0)
    )
    torch.manual_seed(config.seed)
    model = SiglipModel(model_config)
    with torch.no_grad():
        model.log_scale.fill_(config.model.log_scale_init)
        model.bias.fill_(config.model.bias_init)
    return model.train()


def summarise(result: Any, languages: list[str]) -> dict[str, Any]:
    """Per-language and mean R@1 / R@10, both directions, both protocols."""
    out: dict[str, Any] = {"per_language": {}, "mean": {}, "mean_non_english": {}}
    others = [language for language in languages if language != "en"]
    for protocol, metrics in result.metrics.items():
        out["per_language"][protocol] = {language: metrics[language] for language in languages}
        out["mean"][protocol] = metrics["mean"]
        out["mean_non_english"][protocol] = {
            key: float(np.mean([metrics[language][key] for language in others]))
            for key in metrics["mean"]
        }
    return out


def headline(row: dict[str, Any]) -> float:
    """Mean held-out R@1 over languages and both directions (big_vision protocol)."""
    mean = row["mean"]["big_vision"]
    return (mean["text_to_image_R@1"] + mean["image_to_text_R@1"]) / 2


def run_arm(
    name: str,
    arm: str,
    lowercase: str,
    *,
    args: argparse.Namespace,
    data: dict[str, Any],
    out: Path,
) -> dict[str, Any]:
    tokenizer = SentencePieceTokenizer(
        data["vocabulary"], preset="siglip2", length=args.text_length, lowercase=lowercase
    )
    captions = CaptionTable.build(data["train"], tokenizer)
    config = build_config(
        base=demo_config(),
        overrides=[
            f"steps={args.steps}",
            f"data.batch_size={args.batch_size}",
            f"data.text_length={args.text_length}",
            f"optimizer.warmup_steps={max(1, min(100, args.steps // 10))}",
            f"output_dir={out / name}",
            "checkpoint.every_steps=0",
            "logging.progress_bar=false",
            *args.overrides,
        ],
    )
    model = build_model(tokenizer.vocab_size, args.text_length, config)
    batches = MixtureBatches(
        data["train_pixels"],
        captions,
        data["train"].languages,
        mixture(arm, data["train"].languages),
        batch_size=args.batch_size,
        seed=config.seed,
    )
    started = time.process_time()
    result = Trainer(model, batches, config).fit()
    cpu_seconds = time.process_time() - started
    model.eval()
    evaluated = time.perf_counter()
    metrics = evaluate_multilingual(
        torch_encoder(model, tokenizer, name=name), data["heldout"], ks=(1, 5, 10), progress=False
    )
    row = {
        "name": name,
        "arm": arm,
        "lowercase": lowercase,
        "steps": result.step,
        "batch_size": args.batch_size,
        "train_seconds": result.train_seconds,
        "train_cpu_seconds": cpu_seconds,
        "eval_seconds": time.perf_counter() - evaluated,
        "final_loss": result.last_loss,
        "mixture": mixture(arm, data["train"].languages),
        **summarise(metrics, data["heldout"].languages),
    }
    print(
        f"{name}: mean R@1 {headline(row):.4f}, en T->I R@1"
        f" {row['per_language']['big_vision']['en']['text_to_image_R@1']:.4f},"
        f" {result.train_seconds:.0f} s"
    )
    return row


def prepare(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    languages = [code.strip() for code in args.languages.split(",")]
    if "en" not in languages:
        raise SystemExit("--languages must include en (the mixtures are defined around English)")
    suffix = "" if args.limit is None else f"-limit{args.limit}"
    root = Path(args.data_root) / f"emoji-multilingual-{len(languages)}{suffix}"
    info_file = root / "multilingual.json"
    if not info_file.is_file() or json.loads(info_file.read_text())["languages"] != languages:
        print(f"building {root} ({len(languages)} languages)")
        build_emoji_multilingual(root, languages=languages, image_size=64, limit=args.limit)
    train = xm3600(root / "train", image_size=32)
    heldout = xm3600(root / "heldout", image_size=32)
    vocabulary = out / f"vocabulary-{args.vocab_size}-t{args.temperature:g}.model"
    if not vocabulary.is_file():
        # One cased vocabulary for every arm, as SigLIP 2's Gemma vocabulary is one: the arms
        # differ only in the captions' language and the lowercasing of the input.
        by_language = {
            language: [text for captions in train.captions[language] for text in captions]
            for language in train.languages
        }
        train_sentencepiece(
            by_language,
            vocabulary,
            vocab_size=args.vocab_size,
            preset="siglip2",
            lowercase=None,
            language_temperature=args.temperature,
        )
    return {
        "train": train,
        "heldout": heldout,
        "train_pixels": load_pixels(train),
        "vocabulary": vocabulary,
    }


def write_outputs(out: Path, report: dict[str, Any]) -> None:
    rows = report["rows"]
    languages = report["languages"]
    lines = [
        "| arm | lowercase | en T->I R@1 | en I->T R@1 | en T->I R@10 | en I->T R@10 "
        "| non-en mean T->I R@1 | non-en mean I->T R@1 | non-en mean T->I R@10 "
        "| non-en mean I->T R@10 | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        english = row["per_language"]["big_vision"]["en"]
        others = row["mean_non_english"]["big_vision"]
        values = [
            english[f"{d}_R@{k}"] for k in (1, 10) for d in ("text_to_image", "image_to_text")
        ]
        values += [
            others[f"{d}_R@{k}"] for k in (1, 10) for d in ("text_to_image", "image_to_text")
        ]
        cells = " | ".join(f"{100 * v:.1f}" for v in values)
        lines.append(
            f"| {row['arm']} | {row['lowercase']} | {cells} | {row['train_seconds']:.0f} |"
        )
    lines += ["", "Per language, held-out R@1 (%), T->I / I->T, big_vision protocol:", ""]
    names = [row["name"] for row in rows]
    lines.append("| language | " + " | ".join(names) + " |")
    lines.append("|---|" + "---|" * len(names))
    for language in [*languages, "mean"]:
        cells = []
        for row in rows:
            metrics = (
                row["mean"]["big_vision"]
                if language == "mean"
                else row["per_language"]["big_vision"][language]
            )
            cells.append(
                f"{100 * metrics['text_to_image_R@1']:.1f} / {100 * metrics['image_to_text_R@1']:.1f}"
            )
        lines.append(f"| {language} | " + " | ".join(cells) + " |")
    lines += ["", "Mean over languages, both protocols (R@1 / R@10, T->I and I->T, %):", ""]
    lines.append("| run | protocol | T->I R@1 | I->T R@1 | T->I R@10 | I->T R@10 |")
    lines.append("|---|---|---|---|---|---|")
    for row in rows:
        for protocol, mean in row["mean"].items():
            cells = " | ".join(
                f"{100 * mean[f'{d}_R@{k}']:.1f}"
                for k in (1, 10)
                for d in ("text_to_image", "image_to_text")
            )
            lines.append(f"| {row['name']} | {protocol} | {cells} |")
    (out / "multilingual.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    labels = [*languages, "mean"]
    positions = np.arange(len(labels))
    width = 0.8 / len(rows)
    figure, axes = pyplot.subplots(2, 1, figsize=(max(8, 0.36 * len(labels) + 2), 7), sharex=True)
    for axis, direction in zip(axes, ("text_to_image", "image_to_text"), strict=True):
        for index, row in enumerate(rows):
            values = [
                100
                * (
                    row["mean"]["big_vision"]
                    if label == "mean"
                    else row["per_language"]["big_vision"][label]
                )[f"{direction}_R@1"]
                for label in labels
            ]
            axis.bar(
                positions + (index - (len(rows) - 1) / 2) * width, values, width, label=row["name"]
            )
        axis.set_ylabel(f"{direction.replace('_to_', '->').replace('_', ' ')} R@1 (%)")
        axis.grid(True, axis="y", alpha=0.3)
    axes[0].legend(fontsize=7, ncol=len(rows))
    axes[1].set_xticks(positions, labels, rotation=90)
    figure.suptitle(
        f"held-out emoji, per language: {report['steps']} steps x batch {report['batch_size']}"
    )
    figure.tight_layout()
    figure.savefig(out / "per_language.png", dpi=110)
    pyplot.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--out", default="runs/multilingual")
    parser.add_argument("--data-root", default="runs/data")
    parser.add_argument("--languages", default=",".join(DEFAULT_LANGUAGES))
    parser.add_argument("--steps", type=int, default=500, help="training steps of EVERY arm")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--text-length", type=int, default=16)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument(
        "--temperature", type=float, default=3.0, help="language temperature of the vocabulary"
    )
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--no-ab", action="store_true", help="skip the lowercasing A/B")
    parser.add_argument("--limit", type=int, help="only the first N emoji (smoke tests)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_at_start = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = prepare(args, out)
    prepare_seconds = time.perf_counter() - started
    results_file = out / "multilingual.json"
    report = json.loads(results_file.read_text()) if results_file.is_file() else {"rows": []}
    done = {row["name"] for row in report["rows"]}
    plan = [(f"{arm}/unicode", arm, "unicode") for arm in args.arms.split(",")]
    for name, arm, lowercase in plan:
        if name not in done:
            report["rows"].append(run_arm(name, arm, lowercase, args=args, data=data, out=out))
            results_file.write_text(json.dumps(report, indent=2))
    if not args.no_ab:
        best = max((row for row in report["rows"] if row["lowercase"] == "unicode"), key=headline)
        name = f"{best['arm']}/ascii"
        if name not in {row["name"] for row in report["rows"]}:
            report["rows"].append(
                run_arm(name, best["arm"], "ascii", args=args, data=data, out=out)
            )
    report.update(
        {
            "languages": data["heldout"].languages,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "text_length": args.text_length,
            "vocab_size": args.vocab_size,
            "vocabulary_temperature": args.temperature,
            "train_images": data["train"].size,
            "heldout_images": data["heldout"].size,
            "prepare_seconds": prepare_seconds,
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__}",
            "load_average_at_start": load_at_start,
            "load_average_at_end": os.getloadavg(),
        }
    )
    results_file.write_text(json.dumps(report, indent=2))
    write_outputs(out, report)


if __name__ == "__main__":
    main()
