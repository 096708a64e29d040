"""``siglip-train`` / ``python -m siglip_train``: train from a preset/config, run the demo, WiSE-FT."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from siglip_train._checkpoint import CheckpointError
from siglip_train._config import ConfigError
from siglip_train._config import TrainConfig
from siglip_train._config import build_config
from siglip_train._config import config_to_yaml
from siglip_train._presets import list_presets
from siglip_train.demo import _cli as demo_cli


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", help=f"start from a preset: {', '.join(list_presets())}")
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML/JSON config file (repeatable; later files win)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override one field, e.g. --set optimizer.lr=3e-4 (repeatable)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="siglip-train", description="Train SigLIP two-tower models (PyTorch)."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train (single process, or under torchrun for DDP)")
    _add_config_arguments(train)
    train.add_argument(
        "--resume",
        default=None,
        metavar="auto|PATH",
        help="continue from a checkpoint directory, a run directory, or 'auto' (the newest "
        "checkpoint of output_dir, or a fresh start when there is none)",
    )
    train.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit"
    )

    demo_cli.add_arguments(commands.add_parser("demo", help=demo_cli.DESCRIPTION))

    commands.add_parser("presets", help="list the presets")

    interpolate = commands.add_parser(
        "interpolate", help="WiSE-FT: mix a zero-shot and a fine-tuned HF-layout model"
    )
    interpolate.add_argument("zero_shot", help="HF directory of the model before fine-tuning")
    interpolate.add_argument("fine_tuned", help="HF directory (or checkpoint/model) after it")
    interpolate.add_argument("--alpha", type=float, required=True, help="weight of fine_tuned")
    interpolate.add_argument("--out", required=True, help="output HF directory")
    return parser


def _build(args: argparse.Namespace) -> TrainConfig:
    return build_config(preset=args.preset, files=args.config, overrides=args.overrides)


def _train(args: argparse.Namespace) -> int:
    from siglip_train._run import train_from_config

    config = _build(args)
    if args.print_config:
        print(config_to_yaml(config), end="")
        return 0
    return train_from_config(config, resume=args.resume)


def _interpolate(args: argparse.Namespace) -> int:
    from siglip_models.torch import SiglipModel
    from siglip_train._interpolate import interpolate_weights

    zero_shot = SiglipModel.from_pretrained(args.zero_shot)
    fine_tuned = SiglipModel.from_pretrained(args.fine_tuned)
    zero_shot.load_state_dict(
        interpolate_weights(zero_shot.state_dict(), fine_tuned.state_dict(), alpha=args.alpha)
    )
    zero_shot.save_pretrained(args.out)
    print(f"wrote {args.out} = {1 - args.alpha:g} * zero_shot + {args.alpha:g} * fine_tuned")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``siglip-train`` console script."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    handlers: dict[str, Any] = {
        "train": _train,
        "demo": demo_cli.run,
        "presets": lambda _: print("\n".join(list_presets())) or 0,
        "interpolate": _interpolate,
    }
    try:
        return int(handlers[args.command](args))
    except (ConfigError, CheckpointError) as error:
        print(f"siglip-train {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
