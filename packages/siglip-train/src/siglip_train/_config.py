"""Typed training configuration: dataclasses, YAML/JSON files, ``--set a.b=value`` overrides.

Mappings (files, overrides) become dataclasses through ``dacite`` (strict: unknown keys are errors;
types and ``Literal`` choices come from the annotations); this module adds only what dacite does
not do: a deep merge, the ``section.field=value`` parser, numbers written as YAML strings
(``3e-4``), the renamed keys of older config files, and the range checks.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
import warnings
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from typing import Literal

import dacite
import yaml

from siglip_train._atomic import atomic_write_text


@dataclasses.dataclass
class ModelConfig:
    """Which model to build.

    The architecture is ``name``: a size of this package (``tiny``, ``small``, ``base``; their
    vocabulary comes from the tokenizer, image size and text length from ``data``) or a name in
    the ``siglip_models`` registry. The size fields below override the named shape; 0 keeps it.
    Before step 1 the model is checked against the tokenizer (vocabulary) and the data (image
    size, text length); a different image size is an error unless
    ``resize_position_embedding`` is set.

    Attributes:
        name: a size (``tiny``, ``small``, ``base``) or a ``siglip_models`` registry name
            (``siglip_models.list_configs()``). With ``init_from`` the architecture comes from
            the weights: ``name`` must then be the default or name that architecture.
        init_from: an HF-layout directory (``config.json`` + ``model.safetensors``, or a
            checkpoint ``step_<N>`` directory) to start from (fine-tuning, LiT); ``None`` trains
            from scratch.
        log_scale_init: the initial ``log_scale``, the natural log of the scale
            ``t = exp(log_scale)``, for a model trained from scratch (``math.log(10)``: t = 10).
            A value above 5 (t > 148) is refused: it is almost surely a scale, not its log.
        bias_init: the initial logit bias ``b`` for a model trained from scratch.
        grad_checkpointing: recompute tower activations in the backward pass to save memory.
        vocab_size: rows of the token table; 0: the tokenizer's vocabulary (sizes) or the
            registered one (which must hold the tokenizer's).
        patch_size: image patch side; 0: a quarter of the image side for sizes.
        width: token width of both towers; 0: the named shape's.
        depth: encoder blocks of both towers; 0: the named shape's.
        num_heads: attention heads; 0: the named shape's.
        resize_position_embedding: run a model (registered or ``init_from``) at
            ``data.image_size`` by resampling its position grid instead of refusing.
    """

    name: str = "tiny-test"
    init_from: str | None = None
    log_scale_init: float = math.log(10.0)
    bias_init: float = -10.0
    grad_checkpointing: bool = False
    vocab_size: int = 0
    patch_size: int = 0
    width: int = 0
    depth: int = 0
    num_heads: int = 0
    resize_position_embedding: bool = False


@dataclasses.dataclass
class OptimizerConfig:
    """AdamW with decoupled weight decay, linear warmup and cosine decay.

    ``weight_decay`` is in PyTorch ``AdamW`` (and optax ``adamw``) units: each step subtracts
    ``lr(t) * weight_decay * w``. big_vision's ``wd`` is not multiplied by the lr, so a big_vision
    value ``wd_bv`` at peak lr ``lr`` is ``weight_decay = wd_bv / lr`` here (``1e-4`` at
    ``lr = 1e-3`` is ``0.1``). Weight decay applies to
    weight matrices and convolution kernels only, never to norms, biases, position or token
    embeddings, ``log_scale`` or ``bias``.

    Attributes:
        lr: peak learning rate, reached at the end of warmup.
        weight_decay: the ``AdamW`` coefficient, PyTorch units (``lr(t) * weight_decay * w``
            per step).
        beta1: Adam first-moment decay.
        beta2: Adam second-moment decay (0.95 stabilises large batches, SigLIP section 4.6).
        eps: Adam epsilon.
        grad_clip: clip the global gradient norm to this value; 0 disables clipping.
        warmup_steps: linear warmup from 0 to ``lr`` over this many steps.
        min_lr_ratio: the cosine decays to ``lr * min_lr_ratio``.
        image_lr_multiplier: multiplies ``lr`` for the image tower (e.g. 0.1 when fine-tuning).
        text_lr_multiplier: multiplies ``lr`` for the text tower.
        logit_lr_multiplier: multiplies ``lr`` for the parameters of neither tower
            (``log_scale``, ``bias``); short runs move them faster with a value above 1.
    """

    lr: float = 1e-3
    weight_decay: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0
    image_lr_multiplier: float = 1.0
    text_lr_multiplier: float = 1.0
    logit_lr_multiplier: float = 1.0


@dataclasses.dataclass
class LossConfig:
    """Which contrastive loss.

    Attributes:
        name: ``"sigmoid"`` (SigLIP) or ``"softmax"`` (CLIP's InfoNCE, for comparisons).
        distributed_strategy: how ranks exchange negatives for the sigmoid loss
            (``siglip_loss.torch.distributed_sigmoid_loss``'s ``strategy``).
        positives: which pairs of the (global) batch the sigmoid loss treats as positives:
            ``"diagonal"`` (each image's own caption only, the standard loss), ``"caption"``
            (also every pair whose captions are identical token for token: no false negatives
            from repeated captions) or ``"group_key"`` (pairs whose batch ``group_key`` is equal,
            e.g. an image and all its captions with ``data.captions_per_image``).
        positive_weighting: ``"uniform"`` or ``"inverse_count"``, the weight of each positive
            pair when ``positives`` is not ``"diagonal"`` (see docs/loss.md).
    """

    name: Literal["sigmoid", "softmax"] = "sigmoid"
    distributed_strategy: Literal["ring", "all_gather"] = "ring"
    positives: Literal["diagonal", "caption", "group_key"] = "diagonal"
    positive_weighting: Literal["uniform", "inverse_count"] = "uniform"


@dataclasses.dataclass
class DataConfig:
    """The data ``siglip-train train`` reads: WebDataset shards and the tokenizer of their captions.

    Attributes:
        shards: WebDataset shard paths or globs (``key.jpg|png|webp`` + ``key.txt`` per sample).
        tokenizer: a SentencePiece ``.model`` file.
        tokenizer_preset: ``siglip_data.SentencePieceTokenizer`` preset (``"siglip"``, ...).
        batch_size: the GLOBAL batch size, summed over all processes (images, when
            ``captions_per_image`` is set).
        image_size: square image side in pixels.
        text_length: tokens per caption.
        max_bad_shards: how many missing or unreadable shards a run tolerates (0: the first one
            stops it); tolerated ones are counted in the metrics and the final summary.
        captions_per_image: 0: one (image, caption) row per sample; k >= 1: k captions of each
            image (its metadata ``"captions"`` list) as k rows sharing the image's key as
            ``group_key`` (``siglip_data.ImageTextDataset(captions_per_image=k)``), so a step
            has ``k * batch_size`` rows; use with ``loss.positives=group_key``.
    """

    shards: list[str] = dataclasses.field(default_factory=list)
    tokenizer: str | None = None
    tokenizer_preset: str = "siglip"
    batch_size: int = 128
    image_size: int = 32
    text_length: int = 16
    max_bad_shards: int = 0
    captions_per_image: int = 0


@dataclasses.dataclass
class CheckpointConfig:
    """When and how many checkpoints to keep.

    Attributes:
        every_steps: save every this many steps (0: only at the end and on SIGTERM/SIGINT).
        keep_last: keep the newest K checkpoints, delete older ones (0 keeps all).
    """

    every_steps: int = 500
    keep_last: int = 3


@dataclasses.dataclass
class LoggingConfig:
    """What the run reports.

    Attributes:
        every_steps: write a JSONL/TensorBoard record every this many steps.
        progress_bar: show a tqdm progress bar (rank 0 only).
        tensorboard: also write TensorBoard event files (needs the ``tensorboard`` package).
    """

    every_steps: int = 10
    progress_bar: bool = True
    tensorboard: bool = True


@dataclasses.dataclass
class EvalConfig:
    """Periodic evaluation during training.

    Attributes:
        every_steps: run the evaluation callback every this many steps (0 disables).
        retrieval_shards: held-out image-text shards; ``siglip-train train`` evaluates
            image<->text Recall@K on them with siglip-eval (when installed).
    """

    every_steps: int = 0
    retrieval_shards: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class MeshConfig:
    """The device mesh of the JAX trainer (``siglip-train train --framework jax``); torch ignores it.

    The mesh has a ``data`` and an ``fsdp`` axis; the batch is split over all devices, and
    parameters and optimizer state over ``fsdp`` (docs/train-jax.md gives the rule).

    Attributes:
        fsdp: devices on the ``fsdp`` axis (must divide the device count); 1: parameters and
            optimizer state replicated on every device (data parallel).
        min_shard_bytes: arrays smaller than this stay replicated (big_vision: 4 MiB).
    """

    fsdp: int = 1
    min_shard_bytes: int = 4 * 2**20


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; saved as ``config.yaml`` and with every checkpoint.

    Attributes:
        steps: total optimizer steps (the cosine schedule ends here).
        seed: seeds model init, data order and augmentation.
        output_dir: checkpoints, ``metrics.jsonl``, TensorBoard logs and ``config.yaml`` go here.
        freeze: ``"none"``, ``"image"`` (LiT: image tower locked, text tower trained) or
            ``"text"`` (the reverse). ``log_scale`` and ``bias`` stay trainable.
        precision: ``"auto"`` (bf16 autocast on GPU, float32 on CPU), ``"fp32"`` or ``"bf16"``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        strategy: how the processes of a torchrun job share the model: ``"ddp"`` (every rank
            holds all parameters, gradients and optimizer state; gradients averaged) or
            ``"fsdp"`` (PyTorch FSDP2 ``fully_shard`` per encoder block and per tower: each rank
            holds ``1/W`` of them; sharded ``torch.distributed.checkpoint`` checkpoints that
            resume on any world size). See docs/distributed.md.
        max_seconds: stop (and checkpoint) after this much training time; 0 means no limit.
        num_threads: ``torch.set_num_threads`` for CPU training; 0 keeps torch's default.
        collective_timeout_seconds: how long a collective (all-reduce, barrier) may wait for
            the other processes before the run fails; 0: 300 s on CPU (gloo), 600 s on GPU
            (NCCL). Raise it when rank 0 evaluates for longer than that.
        step_timeout_seconds: the per-step watchdog: a step (batch, forward, backward, update)
            taking longer ends the process with exit code 124 so that the job can be restarted;
            0 disables it.
    """

    steps: int = 1000
    seed: int = 0
    output_dir: str = "runs/train"
    freeze: Literal["none", "image", "text"] = "none"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    strategy: Literal["ddp", "fsdp"] = "ddp"
    max_seconds: float = 0.0
    num_threads: int = 0
    collective_timeout_seconds: float = 0.0
    step_timeout_seconds: float = 0.0
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
    logging: LoggingConfig = dataclasses.field(default_factory=LoggingConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)

    def __post_init__(self) -> None:
        validate_config(self)


class ConfigError(ValueError):
    """A configuration file, override or value is invalid."""


def _expected(annotation: Any) -> str:
    """How an error message names what a field accepts."""
    if typing.get_origin(annotation) is Literal:
        return "one of " + "|".join(str(choice) for choice in typing.get_args(annotation))
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "an integer"
    if annotation is float:
        return "a number"
    if annotation is str:
        return "a string"
    if annotation == str | None:
        return "a string or null"
    if annotation == list[str]:
        return "a list of strings"
    return str(annotation)


def _check_types_and_ranges(section: Any, prefix: str = "") -> None:
    """Choices of every ``Literal`` field, no bool where a number goes, finite floats."""
    hints = typing.get_type_hints(type(section))
    for field in dataclasses.fields(section):
        name = f"{prefix}{field.name}"
        value = getattr(section, field.name)
        annotation = hints[field.name]
        if dataclasses.is_dataclass(annotation):
            _check_types_and_ranges(value, f"{name}.")
            continue
        wrong = (
            (typing.get_origin(annotation) is Literal and value not in typing.get_args(annotation))
            or (annotation in (int, float) and (isinstance(value, bool) or not isinstance(value, int | float)))
            or (annotation is int and not isinstance(value, int))
        )  # fmt: skip
        if wrong:
            raise ConfigError(
                f"config field {name!r} must be {_expected(annotation)}, got {value!r}"
            )
        if annotation is float and not math.isfinite(value):
            raise ConfigError(f"config field {name!r} must be a finite number, got {value!r}")


def validate_config(config: TrainConfig) -> None:
    """Check types, choices and value ranges; raise ``ConfigError`` naming the field.

    Choices come from the ``Literal`` annotations; every float must be finite.
    """
    _check_types_and_ranges(config)
    optimizer = config.optimizer
    checks: list[tuple[str, Any, bool, str]] = [
        ("steps", config.steps, config.steps >= 1, "an integer >= 1"),
        ("max_seconds", config.max_seconds, config.max_seconds >= 0, ">= 0"),
        ("num_threads", config.num_threads, config.num_threads >= 0, ">= 0"),
        ("collective_timeout_seconds", config.collective_timeout_seconds, config.collective_timeout_seconds >= 0, ">= 0"),
        ("step_timeout_seconds", config.step_timeout_seconds, config.step_timeout_seconds >= 0, ">= 0"),
        ("model.log_scale_init", config.model.log_scale_init, config.model.log_scale_init <= 5, "<= 5 (it is log t: t = 10 is math.log(10) = 2.3026; a value above 5 means t > 148 and is almost surely a scale written where its log goes)"),
        ("model.vocab_size", config.model.vocab_size, config.model.vocab_size >= 0, ">= 0"),
        ("model.patch_size", config.model.patch_size, config.model.patch_size >= 0, ">= 0"),
        ("model.width", config.model.width, config.model.width >= 0, ">= 0"),
        ("model.depth", config.model.depth, config.model.depth >= 0, ">= 0"),
        ("model.num_heads", config.model.num_heads, config.model.num_heads >= 0, ">= 0"),
        ("data.max_bad_shards", config.data.max_bad_shards, config.data.max_bad_shards >= 0, ">= 0"),
        ("optimizer.lr", optimizer.lr, optimizer.lr > 0, "> 0"),
        ("optimizer.weight_decay", optimizer.weight_decay, optimizer.weight_decay >= 0, ">= 0"),
        ("optimizer.beta1", optimizer.beta1, 0 <= optimizer.beta1 < 1, "in [0, 1)"),
        ("optimizer.beta2", optimizer.beta2, 0 <= optimizer.beta2 < 1, "in [0, 1)"),
        ("optimizer.eps", optimizer.eps, optimizer.eps > 0, "> 0"),
        ("optimizer.grad_clip", optimizer.grad_clip, optimizer.grad_clip >= 0, ">= 0"),
        ("optimizer.warmup_steps", optimizer.warmup_steps, optimizer.warmup_steps >= 0, ">= 0"),
        ("optimizer.min_lr_ratio", optimizer.min_lr_ratio, 0 <= optimizer.min_lr_ratio <= 1, "in [0, 1]"),
        ("data.batch_size", config.data.batch_size, config.data.batch_size >= 1, ">= 1"),
        ("data.image_size", config.data.image_size, config.data.image_size >= 1, ">= 1"),
        ("data.text_length", config.data.text_length, config.data.text_length >= 1, ">= 1"),
        ("data.captions_per_image", config.data.captions_per_image, config.data.captions_per_image >= 0, ">= 0"),
        ("checkpoint.every_steps", config.checkpoint.every_steps, config.checkpoint.every_steps >= 0, ">= 0"),
        ("checkpoint.keep_last", config.checkpoint.keep_last, config.checkpoint.keep_last >= 0, ">= 0"),
        ("logging.every_steps", config.logging.every_steps, config.logging.every_steps >= 1, ">= 1"),
        ("eval.every_steps", config.eval.every_steps, config.eval.every_steps >= 0, ">= 0"),
        ("mesh.fsdp", config.mesh.fsdp, config.mesh.fsdp >= 1, ">= 1"),
        ("mesh.min_shard_bytes", config.mesh.min_shard_bytes, config.mesh.min_shard_bytes >= 0, ">= 0"),
    ]  # fmt: skip
    for name, value, ok, expected in checks:
        if not ok:
            raise ConfigError(f"config field {name!r} must be {expected}, got {value!r}")
    if config.loss.name == "softmax" and config.loss.positives != "diagonal":
        raise ConfigError(
            f"config field 'loss.positives' must be 'diagonal' with loss.name=softmax (several "
            f"positives per row exist for the sigmoid loss only), got {config.loss.positives!r}"
        )


def config_to_dict(config: Any) -> dict[str, Any]:
    """A plain nested dict of a config dataclass (JSON/YAML serialisable)."""
    return dataclasses.asdict(config)


# YAML reads ``3e-4`` (no dot) as a string and the command line gives ``a.tar,b.tar``: these hooks
# turn such text into the field's type; anything they cannot convert is left for dacite to refuse.
def _to_float(value: Any) -> Any:
    if isinstance(value, int | str) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _to_int(value: Any) -> Any:
    if isinstance(value, float | str) and not isinstance(value, bool):
        try:
            number = float(value)
        except ValueError:
            return value
        if number.is_integer():
            return int(number)
    return value


def _to_bool(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    return value


def _to_list(value: Any) -> Any:
    if isinstance(value, Mapping):  # dacite would try to build a list from its keys
        raise dacite.WrongTypeError(field_type=list[str], value=value)
    return [item for item in value.split(",") if item] if isinstance(value, str) else value


_DACITE = dacite.Config(
    type_hooks={float: _to_float, int: _to_int, bool: _to_bool, list[str]: _to_list},
    strict=True,
)


def _unknown_keys(cls: type, mapping: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the keys of ``mapping`` that are no field of ``cls`` (for the message)."""
    hints = typing.get_type_hints(cls)
    unknown = []
    for key, value in mapping.items():
        if key not in hints:
            unknown.append(f"{prefix}{key}")
        elif dataclasses.is_dataclass(hints[key]) and isinstance(value, Mapping):
            unknown += _unknown_keys(hints[key], value, f"{prefix}{key}.")
    return unknown


def _annotation_at(path: str) -> Any:
    """The annotation of the dotted field ``path`` of ``TrainConfig`` (``""``: TrainConfig)."""
    annotation: Any = TrainConfig
    for part in filter(None, path.split(".")):
        annotation = typing.get_type_hints(annotation)[part]
    return annotation


def config_from_dict(mapping: Mapping[str, Any]) -> TrainConfig:
    """Build a ``TrainConfig`` from a nested mapping; unknown keys and bad types are errors.

    Keys renamed since older versions (``model.init_scale``, ``model.init_bias``) are converted
    with a ``FutureWarning``.

    Examples:
        >>> config_from_dict({"steps": 20, "optimizer": {"lr": "3e-4"}}).optimizer.lr
        0.0003
    """
    mapping = upgrade_legacy_keys(mapping)
    try:
        return dacite.from_dict(TrainConfig, dict(mapping), config=_DACITE)
    except dacite.UnexpectedDataError:
        unknown = _unknown_keys(TrainConfig, mapping)
        section = _annotation_at(unknown[0].rpartition(".")[0])
        known = sorted(field.name for field in dataclasses.fields(section))
        raise ConfigError(
            f"unknown config field(s) {unknown}; known fields there: {known}"
        ) from None
    except dacite.WrongTypeError as error:
        path = error.field_path or ""
        annotation = _annotation_at(path)
        what = "section" if dataclasses.is_dataclass(annotation) else "field"
        expected = "a mapping" if what == "section" else _expected(annotation)
        raise ConfigError(
            f"config {what} {path!r} must be {expected}, got {error.value!r}"
        ) from None
    except dacite.DaciteError as error:
        raise ConfigError(f"invalid config: {error}") from None


# Old key -> (new key, conversion). The conversion receives the old value as written.
_RENAMED: dict[tuple[str, str], tuple[str, Callable[[float], float], str]] = {
    ("model", "init_scale"): ("log_scale_init", math.log, "log_scale_init = log(init_scale)"),
    ("model", "init_bias"): ("bias_init", lambda value: value, "same value"),
}
# Fields of the demo that older configs carried in ``data``; the demo now takes them itself.
_DEMO_FIELDS = {
    "root": "--data-root",
    "fashion_mnist_fraction": "--fashion-mnist-fraction",
    "augment": "--no-augment",
}


def upgrade_legacy_keys(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Rewrite the keys older config files used; a ``FutureWarning`` names each one.

    ``model.init_scale`` (the scale t) becomes ``model.log_scale_init = log(t)`` and
    ``model.init_bias`` becomes ``model.bias_init``. ``data.source: webdataset`` and the demo's
    ``data.root`` / ``fashion_mnist_fraction`` / ``augment`` are dropped (``siglip-train train``
    reads shards only; the demo takes those as its own options).

    Raises:
        ConfigError: ``data.source: demo`` (the demo is ``siglip-train demo`` now), an old and a
            new name of one field in the same mapping, or an old value that cannot be converted.
    """
    upgraded = {
        key: dict(value) if isinstance(value, Mapping) else value for key, value in mapping.items()
    }
    for (section_name, old), (new, convert, how) in _RENAMED.items():
        section = upgraded.get(section_name)
        if not isinstance(section, dict) or old not in section:
            continue
        if new in section:
            raise ConfigError(
                f"config fields '{section_name}.{old}' (old name) and '{section_name}.{new}' are "
                f"both given; keep only '{section_name}.{new}'"
            )
        value = _to_float(section.pop(old))
        try:
            section[new] = convert(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"config field '{section_name}.{old}' (old name of '{section_name}.{new}') must be "
                f"a positive number, got {value!r}"
            ) from None
        warnings.warn(
            f"config field '{section_name}.{old}' is now '{section_name}.{new}' ({how}): read "
            f"{old}={value!r} as {new}={section[new]!r}; rename it in the file",
            FutureWarning,
            stacklevel=2,
        )
    data = upgraded.get("data")
    if isinstance(data, dict):
        source = data.pop("source", None)
        if source == "demo":
            raise ConfigError(
                "config field 'data.source' is gone and 'demo' is no training data source any "
                "more: run the demo with `siglip-train demo` (its own options: --data-root, "
                "--fashion-mnist-fraction, --no-augment, --set for the training fields)"
            )
        dropped = [f"data.{key}" for key in _DEMO_FIELDS if key in data]
        for key in _DEMO_FIELDS:
            data.pop(key, None)
        if source is not None:
            dropped.insert(0, "data.source")
        if dropped:
            warnings.warn(
                f"config field(s) {dropped} are gone and ignored: `siglip-train train` reads "
                "data.shards; the demo's settings are options of `siglip-train demo` "
                f"({', '.join(_DEMO_FIELDS.values())})",
                FutureWarning,
                stacklevel=2,
            )
    return upgraded


def merge_mappings(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``, recursively for nested mappings (the later value wins).

    Examples:
        >>> merge_mappings({"optimizer": {"lr": 1, "eps": 2}}, {"optimizer": {"lr": 3}})
        {'optimizer': {'lr': 3, 'eps': 2}}
    """
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_mappings(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or JSON (``.json``) config file into a nested dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"config file {str(path)!r} is not valid: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(path)!r} must hold a mapping, got {type(data).__name__}"
        )
    return data


def parse_override(override: str) -> dict[str, Any]:
    """Turn ``"optimizer.lr=3e-4"`` into ``{"optimizer": {"lr": "3e-4"}}`` (value parsed as YAML).

    Raises:
        ConfigError: no ``=`` or an empty key.

    Examples:
        >>> parse_override("data.shards=[a.tar, b.tar]")
        {'data': {'shards': ['a.tar', 'b.tar']}}
    """
    key, sep, raw_value = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override must look like 'section.field=value', got {override!r}")
    try:
        value = yaml.safe_load(raw_value) if raw_value.strip() else ""
    except yaml.YAMLError:
        value = raw_value
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def apply_overrides(config: TrainConfig, overrides: Iterable[str]) -> TrainConfig:
    """Return a copy of ``config`` with ``section.field=value`` overrides applied and re-validated.

    Examples:
        >>> apply_overrides(TrainConfig(), ["optimizer.lr=3e-4", "freeze=image"]).freeze
        'image'
    """
    data = config_to_dict(config)
    for override in overrides:
        data = merge_mappings(data, upgrade_legacy_keys(parse_override(override)))
    return config_from_dict(data)


def build_config(
    *,
    preset: str | None = None,
    files: Iterable[str | os.PathLike[str]] = (),
    overrides: Iterable[str] = (),
    base: TrainConfig | None = None,
) -> TrainConfig:
    """Preset (or ``base``), then config files (later wins), then ``--set`` overrides.

    Args:
        preset: a name from ``list_presets()``; ``None`` starts from ``base``.
        files: YAML/JSON files, each a (partial) nested mapping of ``TrainConfig`` fields.
        overrides: ``"section.field=value"`` strings.
        base: the config to start from when no preset is named (default: ``TrainConfig()``).

    Returns:
        The validated ``TrainConfig``.

    Raises:
        ConfigError: an unknown preset, a missing or invalid file, an unknown field, a value of
            the wrong type or out of range (the message names the field).

    Examples:
        >>> build_config(preset="tiny-cpu", overrides=["steps=20"]).steps
        20
    """
    from siglip_train._presets import get_preset

    try:
        start = get_preset(preset) if preset else base or TrainConfig()
    except KeyError as error:
        raise ConfigError(error.args[0]) from None
    data = config_to_dict(start)
    for path in files:
        data = merge_mappings(data, upgrade_legacy_keys(load_config_file(path)))
    for override in overrides:
        data = merge_mappings(data, upgrade_legacy_keys(parse_override(override)))
    return config_from_dict(data)


def config_to_yaml(config: TrainConfig) -> str:
    """The full config as YAML text (what is printed at start and saved with checkpoints)."""
    return str(yaml.safe_dump(config_to_dict(config), sort_keys=False))


def save_config(config: TrainConfig, path: str | os.PathLike[str]) -> None:
    """Write the config as YAML (or JSON for a ``.json`` path), atomically."""
    path = Path(path)
    text = (
        json.dumps(config_to_dict(config), indent=2)
        if path.suffix == ".json"
        else config_to_yaml(config)
    )
    atomic_write_text(path, text)
