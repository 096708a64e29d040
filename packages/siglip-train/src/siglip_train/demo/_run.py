"""The one-command demo: train a tiny SigLIP on emoji + Fashion-MNIST on CPU, evaluate, report."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import numpy as np
import torch

from siglip_train._atomic import atomic_write
from siglip_train._atomic import atomic_write_text
from siglip_train._config import CheckpointConfig
from siglip_train._config import ConfigError
from siglip_train._config import DataConfig
from siglip_train._config import LoggingConfig
from siglip_train._config import LossConfig
from siglip_train._config import ModelConfig
from siglip_train._config import OptimizerConfig
from siglip_train._config import TrainConfig
from siglip_train._config import config_to_dict
from siglip_train._logging import LOGGER
from siglip_train._logging import read_metrics
from siglip_train._protocol import TwoTowerModel
from siglip_train._trainer import Trainer
from siglip_train.demo._data import DEMO_HELDOUT_STYLE
from siglip_train.demo._data import DEMO_TRAIN_STYLES
from siglip_train.demo._data import EMOJI_GROUP_TEMPLATE
from siglip_train.demo._data import DemoBatches
from siglip_train.demo._data import DemoData
from siglip_train.demo._data import prepare_demo_data

if TYPE_CHECKING:
    from siglip_models import SiglipConfig
    from siglip_models.torch import SiglipModel

DEMO_MODEL = "demo-tiny"
"""How reports name the demo's architecture (:func:`demo_model_config`; not a registry name)."""


def demo_config() -> TrainConfig:
    """The demo's training recipe (its model and data come from this module, not the config).

    1,000 steps at global batch 128 on CPU in float32 with one torch thread (on a 2-core machine
    shared with other jobs, two threads make these small ops many times slower); AdamW lr 1e-3,
    weight decay 0.1 in PyTorch units (big_vision wd 1e-4 at lr 1e-3), beta2 0.95, clip 1,
    100 warmup steps, cosine; ``log_scale`` and ``bias`` start at t = 10, b = -10 and get 10x the
    lr so that they move in 1,000 steps. Captions have 24 tokens: no emoji name is cut and no
    two names share their token ids (``report.json``'s ``emoji_text``). ``model.name`` and ``init_from`` are not used: the demo
    builds :func:`demo_model_config`.

    Examples:
        >>> config = demo_config()
        >>> config.steps, config.data.batch_size, config.optimizer.weight_decay
        (1000, 128, 0.1)
    """
    return TrainConfig(
        steps=1000,
        seed=0,
        output_dir="runs/demo",
        precision="fp32",
        device="cpu",
        num_threads=1,
        model=ModelConfig(name=DEMO_MODEL, log_scale_init=math.log(10.0), bias_init=-10.0),
        optimizer=OptimizerConfig(
            lr=1e-3,
            weight_decay=0.1,
            beta2=0.95,
            grad_clip=1.0,
            warmup_steps=100,
            logit_lr_multiplier=10.0,
        ),
        loss=LossConfig(name="sigmoid"),
        data=DataConfig(batch_size=128, image_size=32, text_length=24),
        checkpoint=CheckpointConfig(every_steps=250, keep_last=2),
        logging=LoggingConfig(every_steps=10),
    )


DEMO_BUDGETS: dict[str, tuple[str, ...]] = {
    "10min": (),
    "30min": ("steps=3000", "optimizer.warmup_steps=300", "checkpoint.every_steps=500"),
}
"""Training budgets (``--budget``) as overrides of :func:`demo_config`: 1,000 steps take about
10 minutes on a 2-core CPU shared with other work (5 on a quiet one); ``30min`` is the opt-in
longer run (3x the steps, same model and schedule shape)."""


def demo_model_config(
    *, vocab_size: int, image_size: int = 32, text_length: int = 24
) -> SiglipConfig:
    """The demo's ``siglip_models.SiglipConfig``: ViT 128 wide x 4 deep (patch 8), text 128 x 3.

    Args:
        vocab_size: rows of the token table (the demo tokenizer's vocabulary).
        image_size: square image side in pixels (patches are a quarter of it).
        text_length: tokens per caption.

    Returns:
        The config, built directly (the siglip-models registry is left untouched).
    """
    from siglip_models import SiglipConfig
    from siglip_models import TextConfig
    from siglip_models import VisionConfig

    return SiglipConfig(
        vision=VisionConfig(
            image_size=image_size,
            patch_size=max(1, image_size // 4),
            width=128,
            depth=4,
            num_heads=4,
            mlp_dim=512,
        ),
        text=TextConfig(
            vocab_size=vocab_size,
            max_length=text_length,
            width=128,
            depth=3,
            num_heads=4,
            mlp_dim=512,
            embed_dim=128,
            pad_id=1,
        ),
    )


def build_demo_model(config: TrainConfig, *, vocab_size: int) -> SiglipModel:
    """A freshly initialised demo model, seeded by ``config.seed``.

    Args:
        config: gives ``data.image_size``, ``data.text_length``, ``seed`` and the initial
            ``model.log_scale_init`` / ``model.bias_init``.
        vocab_size: the demo tokenizer's vocabulary size.

    Returns:
        The model in train mode.
    """
    from siglip_models.torch import SiglipModel

    model_config = demo_model_config(
        vocab_size=vocab_size,
        image_size=config.data.image_size,
        text_length=config.data.text_length,
    )
    torch.manual_seed(config.seed)
    model = SiglipModel(model_config)
    with torch.no_grad():  # set directly: independent of SiglipConfig's field names
        model.log_scale.fill_(config.model.log_scale_init)
        model.bias.fill_(config.model.bias_init)
    return model.train()


@torch.no_grad()
def _encode(
    encode: Callable[[torch.Tensor], torch.Tensor], inputs: np.ndarray, *, images: bool
) -> np.ndarray:
    from siglip_data import normalize_uint8_pixels
    from siglip_loss.torch import l2_normalize

    outputs = []
    for start in range(0, len(inputs), 500):
        rows = inputs[start : start + 500]
        if images:  # uint8 NHWC -> float NCHW in [-1, 1], as the trainer maps its batches
            chunk = torch.from_numpy(normalize_uint8_pixels(rows)).permute(0, 3, 1, 2)
        else:
            chunk = torch.from_numpy(np.ascontiguousarray(rows)).long()
        outputs.append(l2_normalize(encode(chunk).float()))
    return torch.cat(outputs).numpy().astype(np.float64)


def evaluate_emoji_retrieval(
    model: TwoTowerModel,
    pixels: np.ndarray,
    names: list[str],
    *,
    tokenizer: Callable[[list[str]], np.ndarray],
    groups: np.ndarray | None = None,
    group_names: list[str] | None = None,
) -> dict[str, float]:
    """The demo's emoji protocol on any images with names: retrieval and group zero-shot.

    Image -> text and text -> image retrieval between each image and its name (the bare name,
    ``EMOJI_NAME_TEMPLATES[0]``; every name of the set is a candidate), Recall@{1,5,10} from
    ``siglip_eval.retrieval_metrics``; with ``groups``, zero-shot classification of the images
    into ``group_names`` with the prompt ``EMOJI_GROUP_TEMPLATE`` (``siglip_eval.zeroshot_metrics``;
    balanced accuracy weighs groups equally). Embeddings are L2-normalised; images are uint8
    NHWC mapped to [-1, 1] as in training.

    Args:
        model: a two-tower model with ``encode_image`` (NCHW) and ``encode_text``, in eval mode.
        pixels: ``[N, S, S, 3]`` uint8 images.
        names: ``N`` distinct names (the candidates).
        tokenizer: texts -> ``[N, L]`` token ids (e.g. ``DemoData.tokenizer(L)``).
        groups: ``[N]`` int group labels (optional).
        group_names: the groups' names, label order (needed with ``groups``).

    Returns:
        ``image_to_text_R@{1,5,10}``, ``text_to_image_R@{1,5,10}``, and with ``groups``:
        ``group_balanced_accuracy``, ``group_top1``.

    Raises:
        ValueError: ``pixels`` and ``names`` differ in length, names repeat, or ``groups``
            without ``group_names``.
    """
    from siglip_eval import retrieval_metrics
    from siglip_eval import zeroshot_metrics

    if len(pixels) != len(names):
        raise ValueError(f"{len(pixels)} images but {len(names)} names")
    if len(set(names)) != len(names):
        raise ValueError("names repeat: retrieval needs one distinct name per image")
    if groups is not None and group_names is None:
        raise ValueError("groups needs group_names (the prompts)")
    images = _encode(model.encode_image, pixels, images=True)
    texts = _encode(model.encode_text, tokenizer(names), images=False)
    results = dict(retrieval_metrics(images, texts, np.arange(len(texts)), ks=(1, 5, 10)))
    if groups is not None and group_names is not None:
        prompts = tokenizer([EMOJI_GROUP_TEMPLATE.format(group=g.lower()) for g in group_names])
        group_embeddings = _encode(model.encode_text, prompts, images=False)
        zeroshot = zeroshot_metrics(images, group_embeddings, groups)
        results["group_balanced_accuracy"] = zeroshot["mean_per_class_recall"]
        results["group_top1"] = zeroshot["top1"]
    return results


def evaluate_demo(
    model: TwoTowerModel, data: DemoData, *, fashion_limit: int | None = None
) -> dict[str, float]:
    """Held-out emoji retrieval, emoji group zero-shot, Fashion-MNIST test zero-shot.

    Metrics come from ``siglip_eval.retrieval_metrics`` / ``zeroshot_metrics``; class embeddings
    are the normalised mean of the normalised template embeddings.

    Args:
        model: the trained model (put in eval mode by the caller).
        data: the demo arrays.
        fashion_limit: evaluate only the first N Fashion-MNIST test images (periodic evals).

    Returns:
        ``fashion_mnist_zeroshot_top1`` / ``_top5`` / ``_balanced_accuracy``,
        ``emoji_heldout_image_to_text_R@{1,5,10}``, ``emoji_heldout_text_to_image_R@{1,5,10}``,
        ``emoji_group_balanced_accuracy``, ``emoji_group_top1``; for each of
        ``data.emoji_eval_sets`` (:func:`evaluate_emoji_retrieval`): ``emoji_<set>_<metric>``,
        e.g. ``emoji_crossstyle_heldout_image_to_text_R@10``.
    """
    from siglip_eval import retrieval_metrics
    from siglip_eval import zeroshot_metrics

    length = data.fashion_captions.shape[-1]
    tokenizer = data.tokenizer(length)
    encode_image = model.encode_image
    encode_text = model.encode_text

    def class_embeddings(token_ids: np.ndarray) -> np.ndarray:
        classes, templates, _ = token_ids.shape
        flat = _encode(encode_text, token_ids.reshape(classes * templates, -1), images=False)
        mean = flat.reshape(classes, templates, -1).mean(axis=1)
        normalized: np.ndarray = mean / np.linalg.norm(mean, axis=-1, keepdims=True)
        return normalized

    limit = len(data.fashion_test_labels) if fashion_limit is None else fashion_limit
    fashion_images = _encode(encode_image, data.fashion_test_pixels[:limit], images=True)
    fashion = zeroshot_metrics(
        fashion_images,
        class_embeddings(data.fashion_captions),
        data.fashion_test_labels[:limit],
    )
    heldout_images = _encode(encode_image, data.emoji_heldout_pixels, images=True)
    heldout_texts = _encode(encode_text, tokenizer(data.emoji_heldout_names), images=False)
    retrieval = retrieval_metrics(
        heldout_images, heldout_texts, np.arange(len(heldout_texts)), ks=(1, 5, 10)
    )
    group_prompts = tokenizer(
        [EMOJI_GROUP_TEMPLATE.format(group=g.lower()) for g in data.emoji_groups]
    )
    group_embeddings = _encode(encode_text, group_prompts, images=False)
    groups = zeroshot_metrics(heldout_images, group_embeddings, data.emoji_heldout_groups)
    results = {
        "fashion_mnist_zeroshot_top1": fashion["top1"],
        "fashion_mnist_zeroshot_top5": fashion["top5"],
        "fashion_mnist_zeroshot_balanced_accuracy": fashion["mean_per_class_recall"],
        "emoji_group_balanced_accuracy": groups["mean_per_class_recall"],
        "emoji_group_top1": groups["top1"],
    }
    results.update({f"emoji_heldout_{name}": value for name, value in retrieval.items()})
    for set_name, emoji_set in data.emoji_eval_sets.items():
        scores = evaluate_emoji_retrieval(
            model,
            emoji_set.pixels,
            emoji_set.names,
            tokenizer=tokenizer,
            groups=emoji_set.groups,
            group_names=data.emoji_groups,
        )
        results.update({f"emoji_{set_name}_{name}": value for name, value in scores.items()})
    return results


def chance_levels(data: DemoData) -> dict[str, float]:
    """What random embeddings score on each headline metric."""
    heldout = len(data.emoji_heldout_names)
    chance = {
        "fashion_mnist_zeroshot_top1": 1.0 / len(data.fashion_class_names),
        "emoji_heldout_image_to_text_R@1": 1.0 / heldout,
        "emoji_heldout_image_to_text_R@5": min(1.0, 5.0 / heldout),
        "emoji_heldout_image_to_text_R@10": min(1.0, 10.0 / heldout),
        "emoji_group_balanced_accuracy": 1.0 / len(set(data.emoji_heldout_groups.tolist())),
    }
    for set_name, emoji_set in data.emoji_eval_sets.items():
        chance[f"emoji_{set_name}_image_to_text_R@10"] = min(1.0, 10.0 / len(emoji_set.names))
        chance[f"emoji_{set_name}_group_balanced_accuracy"] = 1.0 / len(
            set(emoji_set.groups.tolist())
        )
    return chance


def save_figure(figure: Any, path: Path) -> None:
    """Write a matplotlib figure as a PNG atomically (a reader never sees half an image)."""
    atomic_write(path, lambda temporary: figure.savefig(temporary, format="png", dpi=120))


def _plot(
    run_dir: Path,
    metrics: list[dict[str, Any]],
    results: dict[str, float],
    chance: dict[str, float],
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    train = [m for m in metrics if m.get("kind") == "train"]
    steps = [m["step"] for m in train]
    written = []
    figure, axis = pyplot.subplots(figsize=(6, 4))
    axis.plot(steps, [m["loss"] for m in train])
    axis.set_xlabel("step")
    axis.set_ylabel("sigmoid loss")
    axis.set_yscale("log")
    axis.set_title("training loss")
    figure.tight_layout()
    save_figure(figure, run_dir / "loss.png")
    pyplot.close(figure)
    written.append("loss.png")

    figure, (left, right) = pyplot.subplots(1, 2, figsize=(9, 3.5))
    left.plot(steps, [m["scale"] for m in train])
    left.set_xlabel("step")
    left.set_ylabel("scale t = exp(log_scale)")
    right.plot(steps, [m["bias"] for m in train], color="tab:orange")
    right.set_xlabel("step")
    right.set_ylabel("bias b")
    figure.suptitle("learned scale and bias")
    figure.tight_layout()
    save_figure(figure, run_dir / "scale_bias.png")
    pyplot.close(figure)
    written.append("scale_bias.png")

    figure, axis = pyplot.subplots(figsize=(6, 4))
    ks = (1, 5, 10)
    width = 0.27
    positions = np.arange(len(ks))
    for offset, direction in ((-width, "image_to_text"), (0.0, "text_to_image")):
        values = [results[f"emoji_heldout_{direction}_R@{k}"] for k in ks]
        axis.bar(positions + offset, values, width, label=direction.replace("_", " "))
    axis.bar(
        positions + width,
        [chance[f"emoji_heldout_image_to_text_R@{k}"] for k in ks],
        width,
        label="chance",
        color="grey",
    )
    axis.set_xticks(positions, [f"R@{k}" for k in ks])
    axis.set_ylabel("recall")
    axis.set_title("held-out emoji retrieval (unseen base names)")
    axis.legend()
    figure.tight_layout()
    save_figure(figure, run_dir / "recall_at_k.png")
    pyplot.close(figure)
    written.append("recall_at_k.png")

    evals = [m for m in metrics if m.get("kind") == "eval"]
    if evals:
        figure, axis = pyplot.subplots(figsize=(6, 4))
        for key in (
            "fashion_mnist_zeroshot_top1",
            "emoji_heldout_image_to_text_R@10",
            "emoji_group_balanced_accuracy",
        ):
            axis.plot(
                [m["step"] for m in evals],
                [m.get(key, math.nan) for m in evals],
                marker="o",
                label=key,
            )
        axis.set_xlabel("step")
        axis.set_ylabel("metric")
        axis.set_title("evaluation during training")
        axis.legend(fontsize=7)
        figure.tight_layout()
        save_figure(figure, run_dir / "eval_curve.png")
        pyplot.close(figure)
        written.append("eval_curve.png")
    return written


def _markdown(report: dict[str, Any], plots: list[str]) -> str:
    results = report["results"]
    chance = report["chance"]
    lines = [
        "# SigLIP demo: emoji + Fashion-MNIST, trained on CPU",
        "",
        f"Model: {report['model_parameters'] / 1e6:.2f} M parameters "
        f"({report['model']}), {report['steps']} steps at global batch {report['batch_size']} "
        f"({report['loss']} loss, positives: {report['positives']}), images "
        f"{report['image_size']} px, text length "
        f"{report['text_length']}.",
        f"Training took **{report['train_seconds']:.0f} s** ({report['samples_per_second']:.0f} "
        f"samples/s); data preparation {report['data_seconds']:.0f} s, evaluation "
        f"{report['eval_seconds']:.0f} s, on {report['machine']} with {report['torch_threads']} "
        f"torch thread(s); the training process used {report['train_cpu_seconds']:.0f} s of CPU "
        "(on a machine shared with other jobs, wall time exceeds CPU time).",
        "",
        "| metric | value | chance | x chance |",
        "|---|---|---|---|",
    ]
    for key in chance:
        lines.append(
            f"| {key} | {results[key]:.4f} | {chance[key]:.4f} | {results[key] / chance[key]:.1f} |"
        )
    lines += ["", "Every metric:", "", "| metric | value |", "|---|---|"]
    lines += [f"| {key} | {value:.4f} |" for key, value in sorted(results.items())]
    lines += [
        "",
        f"Final learned scale t = {report['final_scale']:.2f}, bias b = {report['final_bias']:.2f}.",
        "",
        "Held-out emoji have base names never seen in training (skin-tone and gender variants of a "
        "base stay on one side), so retrieval there measures generalisation from words such as "
        "'face', 'flag' or 'skin tone' to pixels. Group zero-shot prompts are "
        f"'{EMOJI_GROUP_TEMPLATE}'; balanced accuracy weighs the 9 groups equally.",
        "",
        f"Emoji styles trained on: {', '.join(report['emoji_styles']['train'])} (train split, "
        f"augmented: {report['demo']['augment']}); never trained on: "
        f"{report['emoji_styles']['heldout']}. `emoji_heldout_*` is the first training style's "
        "held-out names; `emoji_crossstyle_heldout_*` the held-out names in the unseen style; "
        "`emoji_crossstyle_seen_names_*` as many training names in the unseen style.",
        "",
        "Text: " + ", ".join(f"{k} {v}" for k, v in report["emoji_text"].items()) + ".",
        "",
        "| group | train names | held-out names |",
        "|---|---|---|",
        *(
            f"| {group} | {counts['train']} | {counts['heldout']} |"
            for group, counts in report["emoji_split_counts"].items()
        ),
        "",
    ]
    lines += [f"![{plot}]({plot})" for plot in plots]
    return "\n".join(lines) + "\n"


# Fields of the training config that the demo does not read: it builds its own model and data.
_UNUSED_BY_THE_DEMO = (
    "model.name",
    "model.init_from",
    "data.shards",
    "data.tokenizer",
    "data.tokenizer_preset",
    "eval.retrieval_shards",
    "data.max_bad_shards",
    "model.vocab_size",
    "model.patch_size",
    "model.width",
    "model.depth",
    "model.num_heads",
    "model.resize_position_embedding",
)


def _check_demo_config(config: TrainConfig) -> None:
    """Refuse a config that sets fields the demo would silently ignore."""
    given, default = config_to_dict(config), config_to_dict(demo_config())
    changed = []
    for path in _UNUSED_BY_THE_DEMO:
        section, name = path.split(".")
        if given[section][name] != default[section][name]:
            changed.append(f"{path}={given[section][name]!r}")
    if changed:
        raise ConfigError(
            f"the demo builds its own model and data and does not use {', '.join(changed)}; "
            "train on your own shards with `siglip-train train` instead"
        )


def _fit_with_jax(
    model: SiglipModel,
    batches: Any,
    config: TrainConfig,
    eval_fn: Callable[[TwoTowerModel], dict[str, float]] | None,
) -> Any:
    """Train ``model``'s weights with the JAX trainer; copy the result back into ``model``."""
    from siglip_models.flax import SiglipModel as FlaxSiglipModel
    from siglip_train.jax import JaxTrainer

    def to_torch(flax_model: Any) -> SiglipModel:
        state = {k: torch.from_numpy(np.array(v)) for k, v in flax_model.hf_state_dict().items()}
        model.load_hf_state_dict(state)
        return model.eval()

    flax_model = FlaxSiglipModel(model.config)
    flax_model.load_hf_state_dict(
        {k: v.detach().numpy() for k, v in model.hf_state_dict().items()}, source="demo model"
    )

    def periodic(trained: Any) -> dict[str, float]:
        assert eval_fn is not None
        with torch.no_grad():
            return eval_fn(to_torch(trained))

    trainer = JaxTrainer(
        flax_model, batches, config, eval_fn=periodic if eval_fn else None, overwrite=True
    )
    result = trainer.fit()
    to_torch(trainer.model())
    return result


def run_demo(
    out_dir: str | os.PathLike[str] = "runs/demo",
    *,
    config: TrainConfig | None = None,
    data_root: str | os.PathLike[str] | None = None,
    fashion_mnist_fraction: float = 0.5,
    augment: bool = True,
    eval_every: int = 0,
    data_limit: int | None = None,
    framework: str = "torch",
    train_styles: tuple[str, ...] = DEMO_TRAIN_STYLES,
    heldout_style: str | None = DEMO_HELDOUT_STYLE,
    npm_cache: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Build the data, train the demo model, evaluate it and write ``report.{json,md}`` + plots.

    Args:
        out_dir: run directory (checkpoints, metrics, report).
        config: the training recipe (default :func:`demo_config`); its ``output_dir`` becomes
            ``out_dir`` and ``eval.every_steps`` becomes ``eval_every``.
        data_root: where datasets are built and cached (default ``<out_dir>/../data``).
        fashion_mnist_fraction: share of Fashion-MNIST samples in each batch (the rest emoji).
        augment: augment the training emoji (``siglip_data.augment.BatchAugmentation()``:
            random resized crop, flips where meaning allows, colour jitter, grayscale,
            backgrounds); evaluation never augments.
        eval_every: also evaluate (on 1,000 Fashion-MNIST test images) every N steps; 0: only
            at the end.
        data_limit: use only the first N images of each dataset split (smoke tests).
        framework: ``"torch"`` (the ``Trainer``) or ``"jax"`` (``siglip_train.jax.JaxTrainer``
            on every JAX device, from the same initial weights; evaluated through the torch
            model after copying the trained weights back).
        train_styles: emoji styles to train on (default ``("noto", "symbola")``).
        heldout_style: the style held out of training and scored cross-style (default
            ``"twemoji"``: in colour like Noto but drawn by other artists, and it draws every
            name, flags and keycaps included, so both cross-style sets cover every group).
        npm_cache: where the Twemoji npm tarball is (default
            ``siglip_data.builders.default_npm_cache()``).

    Returns:
        The report dict (also ``<out_dir>/report.json``).

    Raises:
        siglip_data.builders.MissingDebianPackageError: the Debian packages behind the datasets are not
            installed (the message holds the command that installs them).
        siglip_data.builders.MissingNpmPackageError: the held-out style's npm tarball is not
            cached (the message holds the ``npm pack`` command).
        ConfigError: ``config`` sets a field the demo does not use (``model.name``,
            ``data.shards``, ...) or ``fashion_mnist_fraction`` is outside [0, 1].
    """
    if not 0.0 <= fashion_mnist_fraction <= 1.0:
        raise ConfigError(f"fashion_mnist_fraction must be in [0, 1], got {fashion_mnist_fraction}")
    out = Path(out_dir)
    config = config or demo_config()
    _check_demo_config(config)
    config = dataclasses.replace(
        config,
        output_dir=str(out),
        eval=dataclasses.replace(config.eval, every_steps=eval_every),
    )
    root = Path(data_root) if data_root is not None else out.parent / "data"
    started = time.perf_counter()
    data = prepare_demo_data(
        root,
        image_size=config.data.image_size,
        text_length=config.data.text_length,
        limit=data_limit,
        train_styles=train_styles,
        heldout_style=heldout_style,
        npm_cache=npm_cache,
    )
    data_seconds = time.perf_counter() - started
    vocab_size = data.tokenizer(config.data.text_length).vocab_size
    model = build_demo_model(config, vocab_size=vocab_size)
    batches = DemoBatches(
        data,
        batch_size=config.data.batch_size,
        fashion_mnist_fraction=fashion_mnist_fraction,
        seed=config.seed,
        augment=augment,
    )
    metrics_file = out / "metrics.jsonl"
    if metrics_file.exists():
        metrics_file.unlink()

    def periodic_eval(trained: TwoTowerModel) -> dict[str, float]:
        return evaluate_demo(trained, data, fashion_limit=1000)

    # The demo always trains afresh (its report describes one run): an earlier demo run in
    # out_dir is replaced, with a warning naming its checkpoints.
    cpu_started = time.process_time()
    if framework == "jax":
        result = _fit_with_jax(model, batches, config, periodic_eval if eval_every else None)
    else:
        trainer = Trainer(
            model, batches, config, eval_fn=periodic_eval if eval_every else None, overwrite=True
        )
        result = trainer.fit()
    train_cpu_seconds = time.process_time() - cpu_started
    started = time.perf_counter()
    model.eval()
    results = evaluate_demo(model, data)
    eval_seconds = time.perf_counter() - started
    chance = chance_levels(data)
    metrics = read_metrics(metrics_file)
    report: dict[str, Any] = {
        **{key: results[key] for key in chance},
        "train_seconds": result.train_seconds,
        "train_cpu_seconds": train_cpu_seconds,
        "data_seconds": data_seconds,
        "eval_seconds": eval_seconds,
        "steps": result.step,
        "interrupted": result.interrupted,
        "batch_size": config.data.batch_size,
        "samples_per_second": result.step
        * config.data.batch_size
        / max(result.train_seconds, 1e-9),
        "image_size": config.data.image_size,
        "text_length": config.data.text_length,
        "loss": config.loss.name,
        "positives": config.loss.positives,
        "positive_weighting": config.loss.positive_weighting,
        "model": DEMO_MODEL,
        "model_parameters": sum(p.numel() for p in model.parameters()),
        "final_scale": float(model.log_scale.detach().exp()),
        "final_bias": float(model.bias.detach()),
        "final_loss": result.last_loss,
        "framework": framework,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__}",
        "results": results,
        "chance": chance,
        "times_chance": {key: results[key] / chance[key] for key in chance},
        "emoji_styles": {"train": data.emoji_train_styles, "heldout": data.emoji_heldout_style},
        "emoji_text": data.text_statistics,
        "emoji_split_counts": data.split_counts,
        "emoji_eval_sets": {
            name: {"images": len(emoji_set.names), "description": emoji_set.description}
            for name, emoji_set in data.emoji_eval_sets.items()
        },
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "config": config_to_dict(config),
        "demo": {
            "data_root": str(root),
            "fashion_mnist_fraction": fashion_mnist_fraction,
            "augment": augment,
            "eval_every": eval_every,
            "data_limit": data_limit,
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    plots = _plot(out, metrics, results, chance)
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    atomic_write_text(out / "report.md", _markdown(report, plots))
    LOGGER.warning("demo report written to %s", out / "report.md")
    return report
