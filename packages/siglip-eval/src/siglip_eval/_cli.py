"""``siglip-eval zeroshot|retrieval|linear-probe``: evaluate a checkpoint on disk (or saved
embeddings) and write ``results.json``, ``summary.md`` and plots. ``siglip-eval embed`` writes the
embeddings of a folder, shards or a text file (``_embed.py``).

Datasets are named ``KIND:PATH``:

- ``image-folder:DIR`` one sub-folder per class (classification);
- ``built:DIR[:SPLIT]`` a dataset written by ``siglip-data build ...`` (its ``dataset.json``);
- ``shards:PATTERN`` siglip-data shards (classification needs ``--class-names FILE``);
- ``karpathy:JSON`` COCO / Flickr30k Karpathy split (``--image-root``, ``--split``);
- ``jsonl:FILE`` one ``{"image", "captions"}`` object per line (retrieval).

``siglip-eval multilingual --root DIR`` reads a Crossmodal-3600-layout folder instead
(``siglip_eval._multilingual_report``).

A SigLIP 2 NaFlex checkpoint (``model_type`` ``siglip2``) is evaluated at each image's native
aspect ratio: images go through ``siglip_data.naflex.naflex_preprocess`` with
``--max-num-patches`` (default 256, transformers' default; the releases were trained at 128 to
1024) instead of the square resize.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from siglip_eval._datasets import ClassificationDataset
from siglip_eval._datasets import Preprocess
from siglip_eval._datasets import RetrievalDataset
from siglip_eval._datasets import image_folder
from siglip_eval._datasets import karpathy_json
from siglip_eval._datasets import retrieval_jsonl
from siglip_eval._embed import DEFAULT_MAX_NUM_PATCHES
from siglip_eval._embed import add_embed_parser
from siglip_eval._embed import main_embed
from siglip_eval._encoders import EmbeddingCache
from siglip_eval._encoders import Encoder
from siglip_eval._multilingual_report import add_multilingual_command
from siglip_eval._templates import TEMPLATE_SETS
from siglip_eval._templates import get_templates


class UsageError(ValueError):
    """A command-line argument that cannot work; printed without a traceback."""


def _split_spec(spec: str) -> tuple[str, str]:
    kind, separator, rest = spec.partition(":")
    if not separator or not rest:
        raise UsageError(
            f"dataset: expected KIND:PATH (e.g. image-folder:/data/pets), got {spec!r}"
        )
    return kind, rest


def _class_names_file(path: str | None) -> list[str] | None:
    if path is None:
        return None
    names = [
        line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    if not names:
        raise UsageError(f"--class-names: {path!r} has no names (one per line expected)")
    return names


def naflex_preprocess_for(args: argparse.Namespace) -> Preprocess | None:
    """The NaFlex preprocessing for ``--model`` when it is a NaFlex checkpoint, else None.

    Raises:
        UsageError: ``--max-num-patches`` without a model, or with a fixed-resolution one.
    """
    max_num_patches = getattr(args, "max_num_patches", None)
    model = getattr(args, "model", None)
    if model is None:
        if max_num_patches is not None:
            raise UsageError("--max-num-patches needs --model (a NaFlex checkpoint)")
        return None
    try:
        from siglip_models import read_hf_config
    except ImportError:
        return None  # load_encoder says which extra to install
    vision = read_hf_config(model).vision
    if not vision.naflex:
        if max_num_patches is not None:
            raise UsageError(
                f"--max-num-patches: {model!r} is a fixed-resolution model "
                f"({vision.image_size}x{vision.image_size}); it applies to NaFlex checkpoints "
                "(model_type 'siglip2') only"
            )
        return None
    if max_num_patches is not None and max_num_patches < 1:
        raise UsageError(f"--max-num-patches: expected a positive int, got {max_num_patches}")
    from siglip_data.naflex import naflex_preprocess

    return functools.partial(
        naflex_preprocess,
        patch_size=vision.patch_size,
        max_num_patches=max_num_patches or DEFAULT_MAX_NUM_PATCHES,
    )


def classification_dataset(
    spec: str, args: argparse.Namespace, image_size: int
) -> tuple[ClassificationDataset, tuple[str, ...] | None]:
    """The classification dataset named by ``spec`` and, for built datasets, their templates."""
    from siglip_eval._shards import built_dataset
    from siglip_eval._shards import classification_shards

    kind, path = _split_spec(spec)
    names = _class_names_file(args.class_names)
    preprocess = naflex_preprocess_for(args)
    if kind == "image-folder":
        return image_folder(
            path,
            image_size=image_size,
            class_names=names,
            resample=args.resample,
            preprocess=preprocess,
        ), None
    if kind == "built":
        directory, _, split = path.partition(":")
        dataset, templates = built_dataset(
            directory,
            split=split or "test",
            image_size=image_size,
            resample=args.resample,
            preprocess=preprocess,
        )
        assert isinstance(dataset, ClassificationDataset)
        if names is not None:
            dataset.class_names = names
        return dataset, templates
    if kind == "shards":
        if names is None:
            raise UsageError(
                "shards: classification from shards needs --class-names FILE (one name per line)"
            )
        return (
            classification_shards(
                path,
                class_names=names,
                image_size=image_size,
                label_key=args.label_key,
                resample=args.resample,
                preprocess=preprocess,
            ),
            None,
        )
    raise UsageError(
        f"dataset: unknown kind {kind!r} for classification (image-folder, built, shards)"
    )


def retrieval_dataset(spec: str, args: argparse.Namespace, image_size: int) -> RetrievalDataset:
    """The retrieval dataset named by ``spec``."""
    from siglip_eval._shards import built_dataset
    from siglip_eval._shards import retrieval_shards

    kind, path = _split_spec(spec)
    preprocess = naflex_preprocess_for(args)
    if kind == "karpathy":
        if args.image_root is None:
            raise UsageError(
                "karpathy: needs --image-root (the folder the JSON's file paths are relative to)"
            )
        return karpathy_json(
            path,
            args.image_root,
            image_size=image_size,
            split=args.split,
            captions_per_image=args.captions_per_image,
            resample=args.resample,
            preprocess=preprocess,
        )
    if kind == "jsonl":
        return retrieval_jsonl(
            path,
            image_size=image_size,
            image_root=args.image_root,
            resample=args.resample,
            preprocess=preprocess,
        )
    if kind == "shards":
        return retrieval_shards(
            path, image_size=image_size, resample=args.resample, preprocess=preprocess
        )
    if kind == "built":
        directory, _, split = path.partition(":")
        dataset, _ = built_dataset(
            directory,
            split=split or "test",
            image_size=image_size,
            task="retrieval",
            resample=args.resample,
            preprocess=preprocess,
        )
        assert isinstance(dataset, RetrievalDataset)
        return dataset
    raise UsageError(
        f"dataset: unknown kind {kind!r} for retrieval (karpathy, jsonl, shards, built)"
    )


def load_encoder(args: argparse.Namespace) -> tuple[Encoder, int]:
    """``(encoder, image_size)`` for ``--model`` with ``--backend`` and ``--tokenizer``.

    ``--model`` may be a model folder or a siglip-train checkpoint ``step_<N>`` folder; a
    checkpoint's own tokenizer and preprocessing are used unless given (another tokenizer is
    refused without ``--force-tokenizer``). The encoder's name, which keys the embedding cache,
    is a hash of the weights, the tokenizer, the preprocessing and the dataset's files.
    """
    from siglip_data import SentencePieceTokenizer
    from siglip_eval._model_loading import choose_tokenizer
    from siglip_eval._model_loading import content_key
    from siglip_eval._model_loading import data_key
    from siglip_eval._model_loading import read_preprocessing
    from siglip_eval._model_loading import resolve_model_directory

    try:
        from siglip_models import read_hf_config
    except ImportError as error:
        raise UsageError(
            f"--model needs siglip-models: pip install 'siglip-eval[torch]' or 'siglip-eval[flax]' ({error})"
        ) from None
    if str(args.model).endswith(".npz"):
        raise UsageError(
            "--model: pass a Hugging Face folder (config.json + model.safetensors); convert .npz with siglip-models"
        )
    model_directory = resolve_model_directory(args.model)
    args.model = str(model_directory)
    settings = read_preprocessing(model_directory)
    tokenizer_file, saved_preset = choose_tokenizer(
        model_directory, settings, args.tokenizer, force=args.force_tokenizer
    )
    config = read_hf_config(model_directory)
    preset = args.tokenizer_preset or saved_preset or "siglip"
    args.tokenizer_preset = preset  # what ran, for the reports
    length = args.text_length or config.text.max_length
    tokenizer = SentencePieceTokenizer(
        tokenizer_file,
        preset=preset,
        length=length,
        lowercase=None if args.lowercase == "none" else args.lowercase,
    )
    if tokenizer.vocab_size > config.text.vocab_size:
        raise UsageError(
            f"--tokenizer: {str(tokenizer_file)!r} has {tokenizer.vocab_size} pieces but the "
            f"model's token table has {config.text.vocab_size} rows: not this model's tokenizer"
        )
    if settings is not None and args.resample is None:
        args.resample = str(settings.get("resample", "bicubic"))
    args.resample = args.resample or "bicubic"
    image_size = int(
        args.image_size or (settings or {}).get("image_size", 0) or config.vision.image_size
    )
    name = content_key(
        model_directory,
        tokenizer_file,
        preset=preset,
        length=length,
        image_size=image_size,
        resample=args.resample,
        dtype=args.dtype,
        backend=args.backend,
        data=data_key(
            str(getattr(args, "dataset", "")),
            *_spec_paths(getattr(args, "dataset", None)),
            *_spec_paths(getattr(args, "train", None)),
            *_spec_paths(getattr(args, "val", None)),
            getattr(args, "image_root", None),
        ),
    )
    if args.backend == "torch":
        import torch

        from siglip_eval.torch import from_pretrained

        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
            args.dtype
        ]
        encoder, _model = from_pretrained(
            model_directory, tokenizer, device=args.device, dtype=dtype, name=name
        )
    else:
        from siglip_eval.flax import from_pretrained as flax_from_pretrained

        encoder, _model = flax_from_pretrained(model_directory, tokenizer)
        encoder = Encoder(encoder.encode_images, encoder.encode_texts, name=name)
    return encoder, image_size


def _spec_paths(spec: str | None) -> list[str]:
    """The file-system paths inside a ``KIND:PATH[:SPLIT]`` dataset spec (for the cache key)."""
    if not spec or ":" not in spec:
        return []
    path = spec.partition(":")[2]
    return [path, path.rpartition(":")[0]] if ":" in path else [path]


def _templates(args: argparse.Namespace, dataset_templates: Any) -> tuple[str, ...]:
    """``--template`` (one prompt), ``--templates NAME|FILE|dataset``, or the default set."""
    if args.template is not None and args.templates is not None:
        raise UsageError("--template and --templates: give one of them, got both")
    if args.template is not None:
        if "{c}" not in args.template and "{}" not in args.template:
            raise UsageError(
                f"--template: expected a prompt with {{c}} where the class name goes (e.g. "
                f"'a photo of a {{c}}.'), got {args.template!r}"
            )
        return (args.template,)
    choice = args.templates or "imagenet80"
    if choice == "dataset":
        if dataset_templates is None:
            raise UsageError(
                "--templates dataset: only built datasets (built:DIR) carry their own templates"
            )
        return tuple(dataset_templates)
    if choice in TEMPLATE_SETS:
        return get_templates(choice)
    path = Path(choice)
    if not path.is_file():
        raise UsageError(
            f"--templates: expected {', '.join(sorted(TEMPLATE_SETS))}, dataset, or a file with "
            f"one prompt per line, got {choice!r}"
        )
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    prompts = tuple(line for line in lines if line)
    bad = [line for line in prompts if "{c}" not in line and "{}" not in line]
    if not prompts or bad:
        raise UsageError(
            f"--templates {choice!r}: expected one prompt per line, each with {{c}}, got "
            + (f"{bad[0]!r}" if bad else "no prompt")
        )
    return prompts


def _load_npz(path: str, required: Sequence[str]) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        missing = [key for key in required if key not in archive]
        if missing:
            raise UsageError(
                f"--embeddings: {path!r} lacks arrays {missing} (has {sorted(archive.files)})"
            )
        return {key: archive[key] for key in archive.files}


def _finish(result: Any, args: argparse.Namespace, context: dict[str, Any]) -> int:
    from siglip_eval._report import markdown_summary
    from siglip_eval._report import write_report

    plots = not args.no_plots
    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                "matplotlib is not installed: skipping plots (pip install 'siglip-eval[report]')",
                file=sys.stderr,
            )
            plots = False
    written = write_report(result, args.out, context=context, plots=plots)
    print(markdown_summary(result, context=context))
    print("wrote " + ", ".join(str(path) for path in written.values()), file=sys.stderr)
    return 0


def _context(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    context = (
        {"model": args.model, "backend": args.backend}
        if args.embeddings is None
        else {"embeddings": args.embeddings}
    )
    if args.embeddings is None and naflex_preprocess_for(args) is not None:
        context["max_num_patches"] = args.max_num_patches or DEFAULT_MAX_NUM_PATCHES
        extra.pop("image_size", None)  # a NaFlex model has no input resolution
    context.update({k: v for k, v in extra.items() if v is not None})
    return context


def run_zeroshot(args: argparse.Namespace) -> int:
    from siglip_eval._zeroshot import evaluate_zeroshot
    from siglip_eval._zeroshot import zeroshot_from_embeddings

    if args.embeddings is not None:
        arrays = _load_npz(args.embeddings, ("image_emb", "class_emb", "labels", "class_names"))
        result = zeroshot_from_embeddings(
            arrays["image_emb"],
            arrays["class_emb"],
            arrays["labels"],
            [str(n) for n in arrays["class_names"]],
            dataset=Path(args.embeddings).stem,
            ties=args.ties,
        )
        return _finish(result, args, _context(args))
    encoder, image_size = load_encoder(args)
    dataset, dataset_templates = classification_dataset(args.dataset, args, image_size)
    templates = _templates(args, dataset_templates)
    result = evaluate_zeroshot(
        encoder,
        dataset,
        templates=templates,
        batch_size=args.batch_size,
        cache=EmbeddingCache(args.cache) if args.cache else None,
        progress=not args.no_progress,
        ties=args.ties,
    )
    return _finish(
        result,
        args,
        _context(
            args,
            dataset=args.dataset,
            templates=list(templates) if len(templates) < 10 else args.templates,
            image_size=image_size,
        ),
    )


def run_retrieval(args: argparse.Namespace) -> int:
    from siglip_eval._retrieval import evaluate_retrieval
    from siglip_eval._retrieval import retrieval_from_embeddings

    ks = tuple(int(k) for k in args.ks.split(","))
    if args.embeddings is not None:
        arrays = _load_npz(args.embeddings, ("image_emb", "text_emb", "text_to_image"))
        result = retrieval_from_embeddings(
            arrays["image_emb"],
            arrays["text_emb"],
            arrays["text_to_image"],
            ks=ks,
            dataset=Path(args.embeddings).stem,
            ties=args.ties,
        )
        return _finish(result, args, _context(args))
    encoder, image_size = load_encoder(args)
    dataset = retrieval_dataset(args.dataset, args, image_size)
    result = evaluate_retrieval(
        encoder,
        dataset,
        ks=ks,
        batch_size=args.batch_size,
        cache=EmbeddingCache(args.cache) if args.cache else None,
        progress=not args.no_progress,
        ties=args.ties,
    )
    return _finish(result, args, _context(args, dataset=args.dataset, image_size=image_size))


def run_linear_probe(args: argparse.Namespace) -> int:
    from siglip_eval._linear_probe import evaluate_linear_probe
    from siglip_eval._linear_probe import linear_probe

    if args.embeddings is not None:
        arrays = _load_npz(
            args.embeddings, ("train_features", "train_labels", "test_features", "test_labels")
        )
        result = linear_probe(
            arrays["train_features"],
            arrays["train_labels"],
            arrays["test_features"],
            arrays["test_labels"],
            val_features=arrays.get("val_features"),
            val_labels=arrays.get("val_labels"),
            dataset=Path(args.embeddings).stem,
            seed=args.seed,
        )
        return _finish(result, args, _context(args))
    if args.train is None or args.dataset is None:
        raise UsageError(
            "linear-probe: needs --train SPEC and --dataset SPEC (the test split), or --embeddings"
        )
    encoder, image_size = load_encoder(args)
    train, _ = classification_dataset(args.train, args, image_size)
    test, _ = classification_dataset(args.dataset, args, image_size)
    val = classification_dataset(args.val, args, image_size)[0] if args.val else None
    result = evaluate_linear_probe(
        encoder,
        train,
        test,
        val=val,
        batch_size=args.batch_size,
        cache=EmbeddingCache(args.cache) if args.cache else None,
        progress=not args.no_progress,
        seed=args.seed,
    )
    return _finish(result, args, _context(args, train=args.train, test=args.dataset, val=args.val))


def build_parser() -> argparse.ArgumentParser:
    """The ``siglip-eval`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="siglip-eval",
        description="Zero-shot classification, retrieval and linear probe for SigLIP checkpoints.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--out", required=True, help="folder for results.json, summary.md and plots"
        )
        source = sub.add_argument_group("model (or --embeddings)")
        source.add_argument(
            "--model", help="Hugging Face SiglipModel folder (config.json + model.safetensors)"
        )
        source.add_argument(
            "--embeddings", help=".npz of precomputed embeddings instead of a model"
        )
        source.add_argument("--backend", choices=("torch", "flax"), default="torch")
        source.add_argument(
            "--tokenizer",
            help="SentencePiece .model file (default: the one a siglip-train checkpoint carries)",
        )
        source.add_argument(
            "--force-tokenizer",
            action="store_true",
            help="use --tokenizer although the checkpoint carries a different one",
        )
        source.add_argument(
            "--tokenizer-preset",
            default=None,
            choices=("siglip", "siglip-i18n", "siglip2"),
            help="default: the checkpoint's, else siglip",
        )
        source.add_argument("--text-length", type=int, help="token length (default: the model's)")
        source.add_argument(
            "--lowercase",
            default="preset",
            choices=("preset", "ascii", "unicode", "none"),
            help="ascii: A-Z only (big_vision); unicode: every character (transformers)",
        )
        source.add_argument("--device", default="cpu")
        source.add_argument(
            "--dtype", default="float32", choices=("float32", "bfloat16", "float16")
        )
        source.add_argument(
            "--image-size", type=int, help="input resolution (default: the model's)"
        )
        source.add_argument(
            "--max-num-patches",
            type=int,
            help="NaFlex checkpoints: the patch budget and sequence length of each image (default"
            f" {DEFAULT_MAX_NUM_PATCHES}; the releases were trained at 128 to 1024)",
        )
        source.add_argument(
            "--resample",
            default=None,
            choices=("bicubic", "bilinear", "pil_bilinear"),
            help="siglip_data.preprocess_image kernel (default: the checkpoint's, else bicubic ="
            " Hugging Face's SigLIP processor; bilinear = big_vision's tf.image.resize)",
        )
        sub.add_argument("--batch-size", type=int, default=64)
        sub.add_argument("--cache", help="folder for the .npy embedding cache")
        sub.add_argument("--ties", default="index", choices=("index", "pessimistic", "optimistic"))
        sub.add_argument("--no-progress", action="store_true", help="no progress bars")
        sub.add_argument("--no-plots", action="store_true", help="no matplotlib plots")
        sub.add_argument(
            "--class-names",
            help="file with one class name per line, in label order (the names the prompts use)",
        )
        sub.add_argument("--label-key", default="label", help="shard metadata field with the label")

    zeroshot = commands.add_parser("zeroshot", help="zero-shot classification")
    common(zeroshot)
    zeroshot.add_argument("--dataset", help="image-folder:DIR | built:DIR[:SPLIT] | shards:PATTERN")
    zeroshot.add_argument(
        "--templates",
        default=None,
        metavar="NAME|FILE",
        help="prompt set: imagenet80 (default: the 80 CLIP ImageNet prompts), imagenet7, one, "
        "dataset (a built dataset's own), or a file with one prompt per line, {c} = class name",
    )
    zeroshot.add_argument(
        "--template",
        default=None,
        metavar="PROMPT",
        help="one prompt, {c} = the class name (e.g. 'a {c}' for captions like 'a red circle')",
    )
    zeroshot.set_defaults(run=run_zeroshot)

    retrieval = commands.add_parser("retrieval", help="image-text retrieval Recall@K")
    common(retrieval)
    retrieval.add_argument(
        "--dataset", help="karpathy:JSON | jsonl:FILE | shards:PATTERN | built:DIR[:SPLIT]"
    )
    retrieval.add_argument("--image-root", help="folder image paths are relative to")
    retrieval.add_argument(
        "--split", default="test", help="Karpathy split (test, val, train, restval)"
    )
    retrieval.add_argument(
        "--captions-per-image", type=int, help="keep the first N captions of each image"
    )
    retrieval.add_argument("--ks", default="1,5,10", help="comma-separated K values")
    retrieval.set_defaults(run=run_retrieval)

    probe = commands.add_parser("linear-probe", help="logistic regression on frozen image features")
    common(probe)
    probe.add_argument("--train", help="training split (classification spec)")
    probe.add_argument("--val", help="validation split (default: 20%% of --train, stratified)")
    probe.add_argument("--dataset", help="test split (classification spec)")
    probe.add_argument("--seed", type=int, default=0)
    probe.set_defaults(run=run_linear_probe)
    add_multilingual_command(commands, common)

    add_embed_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``siglip-eval``; returns the exit status.

    Errors print one line; ``--debug`` (anywhere on the line) prints the traceback instead.
    """
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in arguments
    args = parser.parse_args([a for a in arguments if a != "--debug"])
    if not hasattr(args, "force_tokenizer"):
        args.force_tokenizer = False
    if args.command == "embed":
        return main_embed(args)
    if args.embeddings is None and args.model is None:
        parser.error("either --model (with --tokenizer and --dataset) or --embeddings is required")
    needs_dataset = args.command not in ("linear-probe", "multilingual")
    if args.embeddings is None and needs_dataset and args.dataset is None:
        parser.error("--dataset is required with --model")
    try:
        return int(args.run(args))
    except (UsageError, OSError, ValueError, ImportError, RuntimeError, KeyError) as error:
        if debug:
            raise
        message = " ".join(str(error).split())
        print(f"siglip-eval {args.command}: error: {message}", file=sys.stderr)
        return 2
