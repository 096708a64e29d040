"""``siglip-train`` / ``python -m siglip_train``: train from a preset/config, run the demo, WiSE-FT."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from siglip_train._common import CheckpointError
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
    parser.add_argument("--debug", action="store_true", help="print the full traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train (single process, or under torchrun for DDP)")
    _add_config_arguments(train)
    train.add_argument("--data", metavar="DIR", help="shards: a folder of .tar (data.shards)")
    train.add_argument("--tokenizer", metavar="FILE", help="SentencePiece .model (data.tokenizer)")
    train.add_argument(
        "--model", metavar="SIZE|NAME", help="tiny, small, base or a registry name (model.name)"
    )
    train.add_argument("--steps", type=int, help="optimizer steps (steps)")
    train.add_argument("--out", metavar="DIR", help="run directory (output_dir)")
    train.add_argument(
        "--resume",
        default=None,
        metavar="auto|PATH",
        help="'auto': continue the run in output_dir from its newest checkpoint that verifies "
        "(a fresh start when it has none); a checkpoint step_<N> directory: continue from it "
        "(an older one starts a new branch that keeps it)",
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="a fresh run may delete another run's checkpoints and metrics in output_dir",
    )
    train.add_argument(
        "--force-resume",
        action="store_true",
        help="resume although seed, data or model fields changed (not an exact continuation)",
    )
    train.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit"
    )
    train.add_argument(
        "--framework",
        choices=("torch", "jax"),
        default="torch",
        help="torch (default) or jax: the JAX/Flax trainer on a device mesh (siglip-train[jax]; "
        "same config; docs/train-jax.md)",
    )

    demo_cli.add_arguments(commands.add_parser("demo", help=demo_cli.DESCRIPTION))

    commands.add_parser("presets", help="list the presets")

    launcher = commands.add_parser(
        "torchrun",
        help="torchrun with meaningful exit codes: 128 + signal when it is stopped by a signal "
        "(torchrun itself exits 1), a failed worker's own code otherwise",
    )
    launcher.add_argument("torchrun_args", nargs=argparse.REMAINDER, help="torchrun's arguments")

    plan = commands.add_parser(
        "plan",
        help="per-device memory of a training step (parameters, gradients, optimizer, "
        "activations per tower and block, loss buffers) and whether it fits; exit 1 if not",
    )
    plan.add_argument("--model", required=True, help="a siglip_models registry name")
    plan.add_argument("--batch", type=int, required=True, help="the GLOBAL batch")
    plan.add_argument("--devices", type=int, required=True, help="number of devices (ranks)")
    plan.add_argument("--strategy", choices=("ddp", "fsdp"), default="fsdp")
    plan.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    plan.add_argument("--checkpointing", action="store_true", help="activation checkpointing")
    plan.add_argument("--freeze", choices=("none", "image", "text"), default="none")
    plan.add_argument("--loss", choices=("sigmoid", "softmax"), default="sigmoid")
    plan.add_argument(
        "--device-memory", type=float, metavar="GiB", help="device size: say whether it fits"
    )

    interpolate = commands.add_parser(
        "interpolate", help="WiSE-FT: mix a zero-shot and a fine-tuned HF-layout model"
    )
    interpolate.add_argument("zero_shot", help="HF directory of the model before fine-tuning")
    interpolate.add_argument("fine_tuned", help="HF directory (or checkpoint/model) after it")
    interpolate.add_argument("--alpha", type=float, required=True, help="weight of fine_tuned")
    interpolate.add_argument("--out", required=True, help="output HF directory")
    return parser


def _build(args: argparse.Namespace) -> TrainConfig:
    shortcuts = []
    if getattr(args, "data", None):
        shortcuts.append(f"data.shards={json.dumps([args.data])}")
    for option, field in (("tokenizer", "data.tokenizer"), ("model", "model.name")):
        value = getattr(args, option, None)
        if value:
            shortcuts.append(f"{field}={json.dumps(value)}")
    if getattr(args, "steps", None) is not None:
        shortcuts.append(f"steps={args.steps}")
    if getattr(args, "out", None):
        shortcuts.append(f"output_dir={json.dumps(args.out)}")
    return build_config(
        preset=args.preset, files=args.config, overrides=[*shortcuts, *args.overrides]
    )


def _train(args: argparse.Namespace) -> int:
    from siglip_train._run import train_from_config

    config = _build(args)
    if args.print_config:
        print(config_to_yaml(config), end="")
        return 0
    if args.framework == "jax":
        from siglip_train.jax._run import train_from_config as train_with_jax

        if args.force_resume:
            raise ConfigError(
                "--force-resume is for the torch trainer (it checks config changes on resume); "
                "drop it with --framework jax"
            )
        return train_with_jax(config, resume=args.resume, overwrite=args.overwrite)
    return train_from_config(
        config, resume=args.resume, overwrite=args.overwrite, force_resume=args.force_resume
    )


def _plan(args: argparse.Namespace) -> int:
    from siglip_train._planner import plan_memory

    try:
        plan = plan_memory(
            args.model,
            batch=args.batch,
            devices=args.devices,
            strategy=args.strategy,
            dtype=args.dtype,
            checkpointing=args.checkpointing,
            freeze=args.freeze,
            loss=args.loss,
            device_memory_gib=args.device_memory,
        )
    except (KeyError, ValueError) as error:
        raise ConfigError(str(error).strip("'\"")) from None
    print(plan.report())
    return 1 if plan.fits is False else 0


def _interpolate(args: argparse.Namespace) -> int:
    from siglip_models.torch import SiglipModel
    from siglip_train._interpolate import interpolate_weights
    from siglip_train._run import resolve_model_directory

    if not 0.0 <= args.alpha <= 1.0:
        raise ConfigError(f"--alpha must be in [0, 1], got {args.alpha}")
    models = []
    for path, option in ((args.zero_shot, "zero_shot"), (args.fine_tuned, "fine_tuned")):
        try:
            models.append(SiglipModel.from_pretrained(resolve_model_directory(path, field=option)))
        except (OSError, ValueError) as error:
            raise ConfigError(f"{option}: cannot load {path!r}: {error}") from None
    zero_shot, fine_tuned = models
    try:
        mixed = interpolate_weights(
            zero_shot.state_dict(), fine_tuned.state_dict(), alpha=args.alpha
        )
    except ValueError as error:
        raise ConfigError(
            f"zero_shot {args.zero_shot!r} and fine_tuned {args.fine_tuned!r} are different "
            f"architectures: {error}"
        ) from None
    zero_shot.load_state_dict(mixed)
    zero_shot.save_pretrained(args.out)
    print(f"wrote {args.out} = {1 - args.alpha:g} * zero_shot + {args.alpha:g} * fine_tuned")
    return 0


def _torchrun(args: argparse.Namespace) -> int:
    """Run torchrun; translate its exceptions into the exit codes a scheduler can act on."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun_main

    try:
        torchrun_main(args.torchrun_args)
    except SignalException as error:
        print(f"siglip-train torchrun: stopped by signal {int(error.sigval)}", file=sys.stderr)
        return 128 + int(error.sigval)
    except ChildFailedError as error:
        codes = [failure.exitcode for failure in error.failures.values()]
        code = next((c for c in codes if c not in (0, None)), 1)
        print(f"siglip-train torchrun: worker exit codes {codes}", file=sys.stderr)
        return 128 - code if code < 0 else code
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``siglip-train`` console script."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] == "torchrun":  # every later argument is torchrun's
        return _torchrun(argparse.Namespace(torchrun_args=arguments[1:]))
    launcher = False
    debug = "--debug" in arguments and not launcher  # accepted anywhere on the line
    args = _parser().parse_args(arguments if launcher else [a for a in arguments if a != "--debug"])
    args.debug = debug
    handlers: dict[str, Any] = {
        "train": _train,
        "demo": demo_cli.run,
        "presets": lambda _: print("\n".join(list_presets())) or 0,
        "interpolate": _interpolate,
        "plan": _plan,
        "torchrun": _torchrun,
    }
    try:
        return int(handlers[args.command](args))
    except KeyboardInterrupt:
        print(f"siglip-train {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        code = _exit_code(error)
        if code is None:
            raise
        message = " ".join(str(error).split())
        if code == 1 and not isinstance(error, OSError):
            message = f"{type(error).__name__}: {message} (--debug shows the traceback)"
        print(f"siglip-train {args.command}: error: {message}", file=sys.stderr)
        return code


def _exit_code(error: Exception) -> int | None:
    """2 for what the user can fix in the command (config, checkpoint), 1 for run-time faults."""
    from siglip_models import CheckpointError as ModelCheckpointError

    if isinstance(error, ConfigError | CheckpointError | ModelCheckpointError):
        return 2
    if isinstance(error, OSError | RuntimeError | ValueError | TypeError | KeyError):
        return 1
    return None


if __name__ == "__main__":
    sys.exit(main())
