"""Typed training configuration: dataclasses, YAML/JSON files, ``--set a.b=value`` overrides."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import types
import typing
from collections.abc import Iterable
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from typing import Literal
from typing import TypeVar

import yaml

ConfigT = TypeVar("ConfigT")


@dataclasses.dataclass
class ModelConfig:
    """Which model to build.

    Attributes:
        name: a name in the ``siglip_models`` registry (``siglip_models.list_configs()``).
        init_from: an HF-layout directory (``config.json`` + ``model.safetensors``) to start from
            (fine-tuning, LiT); ``None`` trains from scratch.
        init_scale: the initial scale ``t = exp(log_scale)`` for a model trained from scratch.
        init_bias: the initial logit bias ``b`` for a model trained from scratch.
        grad_checkpointing: recompute tower activations in the backward pass to save memory.
    """

    name: str = "tiny-test"
    init_from: str | None = None
    init_scale: float = 10.0
    init_bias: float = -10.0
    grad_checkpointing: bool = False


@dataclasses.dataclass
class OptimizerConfig:
    """AdamW with decoupled weight decay, linear warmup and cosine decay.

    ``weight_decay`` follows PyTorch's ``AdamW`` convention (the step subtracts
    ``lr(t) * weight_decay * w``); big_vision's ``wd`` is not multiplied by the base lr, so its
    value ``wd_bv`` corresponds to ``weight_decay = wd_bv / lr`` here. Weight decay applies to
    weight matrices and convolution kernels only, never to norms, biases, position or token
    embeddings, ``log_scale`` or ``bias``.

    Attributes:
        lr: peak learning rate, reached at the end of warmup.
        weight_decay: PyTorch ``AdamW`` weight decay coefficient.
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
    """

    name: Literal["sigmoid", "softmax"] = "sigmoid"
    distributed_strategy: Literal["ring", "all_gather"] = "ring"


@dataclasses.dataclass
class DataConfig:
    """Where batches come from when training from the command line.

    Attributes:
        source: ``"demo"`` (Noto emoji + Fashion-MNIST, built offline by ``siglip_data``) or
            ``"webdataset"`` (``shards`` with ``key.jpg|png|webp`` + ``key.txt``).
        shards: WebDataset shard paths or globs for ``source="webdataset"``.
        tokenizer: a SentencePiece ``.model`` for ``source="webdataset"``.
        tokenizer_preset: ``siglip_data.SentencePieceTokenizer`` preset (``"siglip"``, ...).
        root: where the demo datasets are built (and reused).
        batch_size: the GLOBAL batch size, summed over all processes.
        image_size: square image side in pixels.
        text_length: tokens per caption.
        fashion_mnist_fraction: share of each demo batch drawn from Fashion-MNIST.
        augment: random translation of emoji images in the demo data.
    """

    source: Literal["demo", "webdataset"] = "demo"
    shards: list[str] = dataclasses.field(default_factory=list)
    tokenizer: str | None = None
    tokenizer_preset: str = "siglip"
    root: str = "runs/data"
    batch_size: int = 128
    image_size: int = 32
    text_length: int = 16
    fashion_mnist_fraction: float = 0.5
    augment: bool = True


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
        retrieval_shards: held-out image-text shards; with ``data.source="webdataset"`` the
            command line evaluates image<->text Recall@K on them with siglip-eval (when installed).
    """

    every_steps: int = 0
    retrieval_shards: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; printed at start and saved with every checkpoint.

    Attributes:
        steps: total optimizer steps (the cosine schedule ends here).
        seed: seeds model init, data order and augmentation.
        output_dir: checkpoints, ``metrics.jsonl``, TensorBoard logs and ``config.yaml`` go here.
        freeze: ``"none"``, ``"image"`` (LiT: image tower locked, text tower trained) or
            ``"text"`` (the reverse). ``log_scale`` and ``bias`` stay trainable.
        precision: ``"auto"`` (bf16 autocast on GPU, float32 on CPU), ``"fp32"`` or ``"bf16"``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        max_seconds: stop (and checkpoint) after this much training time; 0 means no limit.
        num_threads: ``torch.set_num_threads`` for CPU training; 0 keeps torch's default.
    """

    steps: int = 1000
    seed: int = 0
    output_dir: str = "runs/train"
    freeze: Literal["none", "image", "text"] = "none"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_seconds: float = 0.0
    num_threads: int = 0
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
    logging: LoggingConfig = dataclasses.field(default_factory=LoggingConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        validate_config(self)


class ConfigError(ValueError):
    """A configuration file, override or value is invalid."""


def validate_config(config: TrainConfig) -> None:
    """Check value ranges and choices; raise ``ConfigError`` naming the field."""
    checks: list[tuple[str, Any, bool, str]] = [
        ("steps", config.steps, config.steps >= 1, "an integer >= 1"),
        ("freeze", config.freeze, config.freeze in ("none", "image", "text"), "none|image|text"),
        ("precision", config.precision, config.precision in ("auto", "fp32", "bf16"), "auto|fp32|bf16"),
        ("device", config.device, config.device in ("auto", "cpu", "cuda"), "auto|cpu|cuda"),
        ("max_seconds", config.max_seconds, config.max_seconds >= 0, ">= 0"),
        ("num_threads", config.num_threads, config.num_threads >= 0, ">= 0"),
        ("optimizer.lr", config.optimizer.lr, config.optimizer.lr > 0, "> 0"),
        ("optimizer.weight_decay", config.optimizer.weight_decay, config.optimizer.weight_decay >= 0, ">= 0"),
        ("optimizer.beta1", config.optimizer.beta1, 0 <= config.optimizer.beta1 < 1, "in [0, 1)"),
        ("optimizer.beta2", config.optimizer.beta2, 0 <= config.optimizer.beta2 < 1, "in [0, 1)"),
        ("optimizer.grad_clip", config.optimizer.grad_clip, config.optimizer.grad_clip >= 0, ">= 0"),
        ("optimizer.warmup_steps", config.optimizer.warmup_steps, config.optimizer.warmup_steps >= 0, ">= 0"),
        ("optimizer.min_lr_ratio", config.optimizer.min_lr_ratio, 0 <= config.optimizer.min_lr_ratio <= 1, "in [0, 1]"),
        ("loss.name", config.loss.name, config.loss.name in ("sigmoid", "softmax"), "sigmoid|softmax"),
        ("model.init_scale", config.model.init_scale, config.model.init_scale > 0, "> 0"),
        ("data.source", config.data.source, config.data.source in ("demo", "webdataset"), "demo|webdataset"),
        ("data.batch_size", config.data.batch_size, config.data.batch_size >= 1, ">= 1"),
        ("data.fashion_mnist_fraction", config.data.fashion_mnist_fraction, 0 <= config.data.fashion_mnist_fraction <= 1, "in [0, 1]"),
        ("checkpoint.every_steps", config.checkpoint.every_steps, config.checkpoint.every_steps >= 0, ">= 0"),
        ("checkpoint.keep_last", config.checkpoint.keep_last, config.checkpoint.keep_last >= 0, ">= 0"),
        ("logging.every_steps", config.logging.every_steps, config.logging.every_steps >= 1, ">= 1"),
        ("eval.every_steps", config.eval.every_steps, config.eval.every_steps >= 0, ">= 0"),
    ]  # fmt: skip
    for name, value, ok, expected in checks:
        if not ok:
            raise ConfigError(f"config field {name!r} must be {expected}, got {value!r}")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A plain nested dict of a config dataclass (JSON/YAML serialisable)."""
    return dataclasses.asdict(config)


def _resolve_type(owner: type, field: dataclasses.Field[Any]) -> Any:
    hints = typing.get_type_hints(owner)
    return hints[field.name]


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert a parsed YAML/JSON value to the field's annotated type, or raise ConfigError."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if not isinstance(value, Mapping):
            raise ConfigError(f"config section {where!r} must be a mapping, got {value!r}")
        return _from_mapping(annotation, value, where)
    if origin is Literal:
        if value not in args:
            choices = "|".join(str(a) for a in args)
            raise ConfigError(f"config field {where!r} must be one of {choices}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError("; ".join(errors))
    if origin is list:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config field {where!r} must be a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"config field {where!r} must be true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int | str | float):
            raise ConfigError(f"config field {where!r} must be an integer, got {value!r}")
        try:
            as_float = float(value)
        except ValueError:
            raise ConfigError(f"config field {where!r} must be an integer, got {value!r}") from None
        if not as_float.is_integer():
            raise ConfigError(f"config field {where!r} must be an integer, got {value!r}")
        return int(as_float)
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"config field {where!r} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config field {where!r} must be a number, got {value!r}") from None
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"config field {where!r} must be a string, got {value!r}")
        return value
    return value


def _from_mapping(cls: type[ConfigT], mapping: Mapping[str, Any], where: str = "") -> ConfigT:
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config field(s) {[prefix + u for u in unknown]}; "
            f"known fields of {cls.__name__}: {sorted(fields)}"
        )
    kwargs = {}
    for name, value in mapping.items():
        path = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(value, _resolve_type(cls, fields[name]), path)
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ConfigError(f"cannot build {cls.__name__} from {dict(mapping)!r}: {error}") from None


def config_from_dict(mapping: Mapping[str, Any]) -> TrainConfig:
    """Build a ``TrainConfig`` from a nested mapping; unknown keys and bad types are errors.

    Example:
        >>> config_from_dict({"steps": 20, "optimizer": {"lr": 3e-4}}).optimizer.lr
        0.0003
    """
    return _from_mapping(TrainConfig, mapping)


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
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
    """Turn ``"optimizer.lr=3e-4"`` into ``{"optimizer": {"lr": 3e-4}}`` (value parsed as YAML).

    Raises:
        ConfigError: no ``=`` or an empty key.
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

    Example:
        >>> apply_overrides(TrainConfig(), ["optimizer.lr=3e-4", "freeze=image"]).freeze
        'image'
    """
    data = config_to_dict(config)
    for override in overrides:
        data = _merge(data, parse_override(override))
    return config_from_dict(data)


def build_config(
    *,
    preset: str | None = None,
    files: Iterable[str | os.PathLike[str]] = (),
    overrides: Iterable[str] = (),
) -> TrainConfig:
    """Preset, then config files (later wins), then ``--set`` overrides.

    Args:
        preset: a name from ``list_presets()``; ``None`` starts from the dataclass defaults.
        files: YAML/JSON files, each a (partial) nested mapping of ``TrainConfig`` fields.
        overrides: ``"section.field=value"`` strings.

    Returns:
        The validated ``TrainConfig``.
    """
    from siglip_train._presets import get_preset

    try:
        start = get_preset(preset) if preset else TrainConfig()
    except KeyError as error:
        raise ConfigError(error.args[0]) from None
    data = config_to_dict(start)
    for path in files:
        data = _merge(data, load_config_file(path))
    for override in overrides:
        data = _merge(data, parse_override(override))
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


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same directory and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
