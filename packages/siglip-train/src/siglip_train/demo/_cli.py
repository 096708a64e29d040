"""``siglip-train demo`` / ``python -m siglip_train.demo``: the demo's command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from siglip_train._config import ConfigError
from siglip_train._config import build_config

DESCRIPTION = "build emoji + Fashion-MNIST, train a tiny SigLIP on CPU, evaluate, report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options, on the ``siglip-train demo`` sub-command or a parser of its own."""
    parser.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    parser.add_argument(
        "--data-root", default=None, help="dataset directory (default <out>/../data)"
    )
    parser.add_argument(
        "--eval-every", type=int, default=250, help="periodic evaluation every N steps (0: off)"
    )
    parser.add_argument(
        "--fashion-mnist-fraction",
        type=float,
        default=0.5,
        help="share of Fashion-MNIST samples in each batch, the rest emoji (default 0.5)",
    )
    parser.add_argument(
        "--no-augment",
        action="store_true",
        help="no augmentation of the training emoji (crop, flip, colour, grayscale, background)",
    )
    parser.add_argument(
        "--train-styles",
        default="noto,symbola",
        help="emoji styles to train on, comma-separated (default noto,symbola)",
    )
    parser.add_argument(
        "--heldout-style",
        default="twemoji",
        help="emoji style never trained on, scored cross-style (default twemoji; 'none': no "
        "cross-style scores)",
    )
    parser.add_argument(
        "--npm-cache",
        default=None,
        help="directory of npm tarballs (default $SIGLIP_NPM_CACHE or ~/.cache/siglip-data/npm)",
    )
    parser.add_argument(
        "--budget",
        choices=("10min", "30min"),
        default="10min",
        help="training budget preset: 10min (1,000 steps, default) or 30min (3,000 steps)",
    )
    parser.add_argument(
        "--framework",
        choices=("torch", "jax"),
        default="torch",
        help="train with the torch Trainer (default) or the JAX trainer (siglip-train[jax])",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML/JSON file of training fields over the demo's recipe (repeatable)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override one training field, e.g. --set steps=200 (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo the parsed ``args`` describe; print the headline metrics; exit code."""
    from siglip_data.builders import MissingDebianPackageError
    from siglip_data.builders import MissingNpmPackageError
    from siglip_train.demo._run import DEMO_BUDGETS
    from siglip_train.demo._run import demo_config
    from siglip_train.demo._run import run_demo

    try:
        config = build_config(
            base=demo_config(),
            files=args.config,
            overrides=[*DEMO_BUDGETS[args.budget], *args.overrides],
        )
        heldout_style = None if args.heldout_style == "none" else args.heldout_style
        report = run_demo(
            args.out,
            config=config,
            data_root=args.data_root,
            fashion_mnist_fraction=args.fashion_mnist_fraction,
            augment=not args.no_augment,
            eval_every=args.eval_every,
            framework=args.framework,
            train_styles=tuple(style for style in args.train_styles.split(",") if style),
            heldout_style=heldout_style,
            npm_cache=args.npm_cache,
        )
    except (MissingDebianPackageError, MissingNpmPackageError, ConfigError) as error:
        print(f"siglip-train demo: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    for key in (
        "fashion_mnist_zeroshot_top1",
        "emoji_heldout_image_to_text_R@10",
        "emoji_group_balanced_accuracy",
        "emoji_crossstyle_heldout_image_to_text_R@10",
        "emoji_crossstyle_seen_names_image_to_text_R@10",
        "train_seconds",
    ):
        if key in report:
            print(f"{key}: {report[key]:.4f}")
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The demo's command line (same options as ``siglip-train demo``).

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 done; 2 a Debian package or npm tarball is missing (the one-line
        message names the command that installs it) or the config is invalid.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m siglip_train.demo", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))
