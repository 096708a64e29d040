"""The ``siglip-data`` command (also ``python -m siglip_data``): build offline datasets, train
tokenizers, inspect shards."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from siglip_data._builders import DatasetInfo
from siglip_data._builders import MissingDebianPackageError
from siglip_data._builders import build_emoji
from siglip_data._builders import build_fashion_mnist
from siglip_data._emoji_multilingual import build_multilingual_command
from siglip_data._emoji_scenes import build_emoji_scenes
from siglip_data._rendered_words import build_rendered_words
from siglip_data._shards import read_shard
from siglip_data._shards import resolve_shards
from siglip_data._tokenizer import PRESETS
from siglip_data._tokenizer import train_sentencepiece


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="siglip-data", description="SigLIP data tools: offline datasets, tokenizers, shards."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser(
        "build",
        help="build shards: from a folder of your captioned images (build folder IN OUT) or an "
        "offline Debian dataset (build emoji|emoji-multilingual|emoji-scenes|fashion-mnist|"
        "rendered-words OUT)",
    )
    build.add_argument(
        "dataset",
        choices=[
            "folder",
            "emoji",
            "emoji-multilingual",
            "emoji-scenes",
            "fashion-mnist",
            "rendered-words",
        ],
    )
    build.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="folder: IN OUT (images + captions.jsonl/.csv or a .txt per image -> OUT/shard-*.tar,"
        " OUT/captions.txt); emoji, emoji-multilingual, fashion-mnist, rendered-words: OUT (<split>/shard-*.tar and dataset.json)",
    )
    build.add_argument(
        "--captions",
        default=None,
        help="folder: the index file in IN (captions.jsonl, captions.csv) or 'txt' (one .txt per "
        "image); default: the index file if there is one, else .txt files",
    )
    build.add_argument("--limit", type=int, default=None, help="samples (per split) to write")
    build.add_argument(
        "--languages", help="emoji-multilingual: comma-separated CLDR codes (default: XM3600's)"
    )
    build.add_argument(
        "--image-size", type=int, default=None, help="stored image side (rendered-words: height)"
    )
    build.add_argument("--samples-per-shard", type=int, default=None)
    build.add_argument(
        "--scenes",
        default=None,
        metavar="TRAIN,TEST,HELDOUT",
        help="emoji-scenes: scenes per split (default 4000,500,500)",
    )
    build.add_argument(
        "--emoji-names", type=int, default=None, help="emoji-scenes: train emoji names to use"
    )
    build.add_argument("--seed", type=int, default=0, help="emoji-scenes: scene seed")

    train = commands.add_parser("train-tokenizer", help="train a SentencePiece model on captions")
    train.add_argument("captions", help="UTF-8 text file, one caption per line")
    train.add_argument("output", help="path of the .model file to write")
    train.add_argument("--vocab-size", type=int, default=8000)
    train.add_argument("--preset", choices=sorted(PRESETS), default="siglip")
    train.add_argument("--model-type", choices=["unigram", "bpe"], default="unigram")
    train.add_argument("--canonicalize", action="store_true", help="strip punctuation first")

    count = commands.add_parser("count", help="count samples in shards (brace patterns allowed)")
    count.add_argument("shards")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``siglip-data`` command.

    Errors print one line (``--debug`` anywhere on the line prints the traceback instead).

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0, or 2 for an error (a missing Debian package: the message names the
        command that installs it; a missing or unreadable file; a bad argument).
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in arguments
    parser = _parser()
    args = parser.parse_args([a for a in arguments if a != "--debug"])
    try:
        return _run(args, parser)
    except (MissingDebianPackageError, OSError, ValueError, RuntimeError) as error:
        if debug:
            raise
        print(f"siglip-data {args.command}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command == "build" and args.dataset == "folder":
        if len(args.paths) != 2:
            parser.error("build folder: expected IN OUT (two paths)")
        from siglip_data._folder import build_folder

        summary = build_folder(
            args.paths[0],
            args.paths[1],
            captions=args.captions,
            samples_per_shard=args.samples_per_shard or 1000,
        )
        out = args.paths[1]
        print(
            f"{summary['num_samples']} samples in {len(summary['shards'])} shards "
            f"{out}/{summary['pattern']}; captions for train-tokenizer: {out}/captions.txt"
        )
        return 0
    if args.command == "build":
        if len(args.paths) != 1:
            parser.error(f"build {args.dataset}: expected one output directory")
        args.output_dir = args.paths[0]
        options: dict[str, Any] = {}
        if args.image_size is not None:
            options["image_size"] = args.image_size
        if args.samples_per_shard is not None:
            options["samples_per_shard"] = args.samples_per_shard
        if args.dataset == "emoji-multilingual":
            return build_multilingual_command(args, options)
        if args.dataset == "emoji-scenes":
            if args.scenes is not None:
                parts = [int(part) for part in args.scenes.split(",")]
                if len(parts) != 3:
                    parser.error("--scenes: expected TRAIN,TEST,HELDOUT (three counts)")
                options.update(train_scenes=parts[0], test_scenes=parts[1], heldout_scenes=parts[2])
            options.update(emoji_names=args.emoji_names, seed=args.seed)
        builders: dict[str, Callable[..., DatasetInfo]] = {
            "emoji": build_emoji,
            "emoji-scenes": build_emoji_scenes,
            "fashion-mnist": build_fashion_mnist,
            "rendered-words": build_rendered_words,
        }
        info = builders[args.dataset](args.output_dir, limit=args.limit, **options)
        for name, split in info.splits.items():
            print(
                f"{name}: {split.num_samples} samples in {len(split.shards)} shards {split.pattern}"
            )
        return 0
    if args.command == "train-tokenizer":
        path = train_sentencepiece(
            args.captions,
            args.output,
            vocab_size=args.vocab_size,
            preset=args.preset,
            model_type=args.model_type,
            canonicalize=args.canonicalize,
        )
        print(f"wrote {path}")
        return 0
    counts = {}
    for shard in resolve_shards(args.shards):
        counts[shard] = sum(1 for _ in read_shard(shard))
    print(json.dumps({"shards": len(counts), "samples": sum(counts.values())}))
    return 0
