"""Build the model and batches a config describes, then train (the ``siglip-train train`` path).

Everything is checked before step 1: the tokenizer file, the shards, the model against the
tokenizer (vocabulary) and the data (image size, text length). Checkpoints carry the tokenizer
and the preprocessing settings (``model/tokenizer.model``, ``model/siglip_preprocessing.json``),
which siglip-eval loads by default.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import torch

from siglip_train._atomic import atomic_write_text
from siglip_train._batches import ConfiguredBatches
from siglip_train._config import ConfigError
from siglip_train._config import ModelConfig
from siglip_train._config import TrainConfig
from siglip_train._distributed import DistributedContext
from siglip_train._distributed import close_distributed
from siglip_train._distributed import init_distributed
from siglip_train._logging import LOGGER
from siglip_train._protocol import TwoTowerModel
from siglip_train._sizes import SIZES
from siglip_train._sizes import size_config
from siglip_train._trainer import Trainer

if TYPE_CHECKING:
    from siglip_models.torch import SiglipModel

TOKENIZER_FILE = "tokenizer.model"
PREPROCESSING_FILE = "siglip_preprocessing.json"
PREPROCESSING_FORMAT = "siglip-preprocessing/1"


def resolve_model_directory(path: str | os.PathLike[str], *, field: str) -> Path:
    """An HF model directory from ``path``: itself, or the ``model/`` of a checkpoint.

    Raises:
        ConfigError: ``path`` is neither (naming what was expected and what is there).
    """
    directory = Path(path)
    if (directory / "config.json").is_file():
        return directory
    if (directory / "model" / "config.json").is_file():
        return directory / "model"
    if (directory / "checkpoints").is_dir():
        raise ConfigError(
            f"{field} must be an HF model directory or a checkpoint step_<N> directory, got the "
            f"run directory {str(directory)!r}: name one of its checkpoints/step_<N>"
        )
    if (directory / "sharded").is_dir():
        raise ConfigError(
            f"{field} must be an HF model directory or a checkpoint step_<N> directory with "
            f"model/, got the sharded (strategy=fsdp) checkpoint {str(directory)!r}: export it "
            "first (siglip_train.distributed.export_checkpoint) or resume it with --resume"
        )
    raise ConfigError(
        f"{field} must be an HF model directory (config.json + model.safetensors) or a "
        f"checkpoint step_<N> directory, got {str(directory)!r}"
        + ("" if directory.exists() else " (it does not exist)")
    )


def load_tokenizer(config: TrainConfig) -> Any:
    """The SentencePiece tokenizer ``config.data`` names, checked.

    Raises:
        ConfigError: no tokenizer given, a missing file, or a file SentencePiece cannot read.
    """
    import siglip_data

    data = config.data
    if not data.tokenizer:
        raise ConfigError(
            "config field 'data.tokenizer' must name a SentencePiece .model file (train one "
            "with `siglip-data train-tokenizer captions.txt tokenizer.model`), got none"
        )
    if not Path(data.tokenizer).is_file():
        raise ConfigError(
            f"config field 'data.tokenizer' must name a SentencePiece .model file, got "
            f"{data.tokenizer!r}, which does not exist"
        )
    try:
        return siglip_data.SentencePieceTokenizer(
            data.tokenizer, preset=data.tokenizer_preset, length=data.text_length
        )
    except (ValueError, RuntimeError, OSError) as error:
        raise ConfigError(
            f"config field 'data.tokenizer' ({data.tokenizer!r}) with data.tokenizer_preset="
            f"{data.tokenizer_preset!r} cannot be used: {error}"
        ) from None


def _size_fields(model: ModelConfig) -> list[str]:
    names = ("vocab_size", "patch_size", "width", "depth", "num_heads")
    return [f"model.{name}={getattr(model, name)}" for name in names if getattr(model, name)]


def _check_fits(model: SiglipModel, config: TrainConfig, tokenizer: Any, what: str) -> None:
    """The model's table, text length and image size against the tokenizer and data."""
    text = model.config.text
    if text.vocab_size < tokenizer.vocab_size:
        raise ConfigError(
            f"{what} has a {text.vocab_size}-token table but the tokenizer "
            f"{config.data.tokenizer!r} has {tokenizer.vocab_size} pieces: ids past the table "
            "would fail at step 1. Use a tokenizer of at most that size"
            + (
                "."
                if config.model.init_from
                else f", set model.vocab_size={tokenizer.vocab_size}, or a size whose table "
                "follows the tokenizer (model.name=tiny|small|base)."
            )
        )
    if text.max_length != config.data.text_length:
        raise ConfigError(
            f"{what} reads {text.max_length} tokens per caption but data.text_length is "
            f"{config.data.text_length}: set data.text_length={text.max_length}"
        )
    image_size = model.config.vision.image_size
    if image_size != config.data.image_size:
        if not config.model.resize_position_embedding:
            raise ConfigError(
                f"{what} takes {image_size}x{image_size} images but data.image_size is "
                f"{config.data.image_size}: set data.image_size={image_size}, or "
                "model.resize_position_embedding=true to resample its position grid"
            )
        LOGGER.warning(
            "resizing the position embedding of %s from %d to %d px",
            what,
            image_size,
            config.data.image_size,
        )
        model.resize_position_embedding(config.data.image_size)


def build_model(config: TrainConfig, *, tokenizer: Any = None) -> SiglipModel:
    """The model ``config.model`` describes, checked against the tokenizer and data.

    A size name (``tiny``, ``small``, ``base``) builds a model whose table, image size and text
    length follow the tokenizer and ``config.data``; a registry name builds that architecture at
    the data's image size and text length; ``init_from`` loads pretrained weights.

    Raises:
        ConfigError: an unknown name, fields that would be ignored, or a model that does not fit
            the tokenizer or the data (each message names the field and what to set).
    """
    from siglip_models import get_config
    from siglip_models import list_configs
    from siglip_models.torch import SiglipModel

    model_config = config.model
    if config.freeze != "none" and not model_config.init_from:
        raise ConfigError(
            f"freeze={config.freeze!r} locks a tower, which only makes sense for a pretrained "
            "one: set model.init_from to an HF model directory (e.g. --set "
            "model.init_from=/models/siglip-base-patch16-224)"
        )
    defaults = ModelConfig()
    if model_config.init_from:
        directory = resolve_model_directory(model_config.init_from, field="model.init_from")
        ignored = _size_fields(model_config)
        if model_config.log_scale_init != defaults.log_scale_init:
            ignored.append(f"model.log_scale_init={model_config.log_scale_init}")
        if model_config.bias_init != defaults.bias_init:
            ignored.append(f"model.bias_init={model_config.bias_init}")
        if model_config.name in SIZES:
            ignored.append(f"model.name={model_config.name!r}")
        if ignored:
            raise ConfigError(
                f"model.init_from={model_config.init_from!r} gives the architecture and the "
                f"weights, so {', '.join(ignored)} would be ignored: remove them"
            )
        model = SiglipModel.from_pretrained(directory).train()
        if model_config.name != defaults.name and model_config.name in list_configs():
            expected = get_config(model_config.name)
            loaded = model.config
            at_size = expected.replace(vision={"image_size": loaded.vision.image_size})
            same = at_size.vision == loaded.vision and at_size.text == loaded.text
            if not same:
                raise ConfigError(
                    f"model.name={model_config.name!r} names another architecture than the "
                    f"weights in model.init_from={model_config.init_from!r}: leave model.name "
                    "at its default or name the architecture of those weights"
                )
        if tokenizer is not None:
            _check_fits(model, config, tokenizer, f"the model in {str(directory)!r}")
        return model
    torch.manual_seed(config.seed)
    if model_config.name in SIZES:
        if tokenizer is None and not model_config.vocab_size:
            raise ConfigError(
                f"model.name={model_config.name!r} takes its vocabulary from the tokenizer: set "
                "data.tokenizer or model.vocab_size"
            )
        try:
            siglip_config = size_config(
                model_config.name,
                vocab_size=model_config.vocab_size or tokenizer.vocab_size,
                image_size=config.data.image_size,
                text_length=config.data.text_length,
                pad_id=tokenizer.pad_id if tokenizer is not None else 1,
                patch_size=model_config.patch_size,
                width=model_config.width,
                depth=model_config.depth,
                num_heads=model_config.num_heads,
            )
        except ValueError as error:
            raise ConfigError(f"model.name={model_config.name!r}: {error}") from None
    else:
        try:
            registered = get_config(model_config.name)
        except KeyError:
            raise ConfigError(
                f"config field 'model.name' must be a size ({', '.join(SIZES)}) or a "
                f"siglip_models registry name ({', '.join(list_configs())}), got "
                f"{model_config.name!r}"
            ) from None
        changes: dict[str, Any] = {
            "vision": {"image_size": config.data.image_size},
            "text": {"max_length": config.data.text_length},
        }
        if model_config.vocab_size:
            changes["text"]["vocab_size"] = model_config.vocab_size
        if model_config.patch_size:
            changes["vision"]["patch_size"] = model_config.patch_size
        for name in ("width", "depth", "num_heads"):
            if getattr(model_config, name):
                raise ConfigError(
                    f"model.{name} reshapes a size (model.name=tiny|small|base), not the "
                    f"registered {model_config.name!r}: use a size, or remove model.{name}"
                )
        try:
            siglip_config = registered.replace(**changes)
        except ValueError as error:
            raise ConfigError(
                f"model.name={model_config.name!r} with the data's sizes: {error}"
            ) from None
        if siglip_config != registered:
            LOGGER.info(
                "model %s built at %d px and %d tokens (the data's), %d-token table",
                model_config.name,
                config.data.image_size,
                config.data.text_length,
                siglip_config.text.vocab_size,
            )
    model = SiglipModel(siglip_config)
    with torch.no_grad():
        model.log_scale.fill_(model_config.log_scale_init)
        model.bias.fill_(model_config.bias_init)
    if tokenizer is not None:
        _check_fits(model, config, tokenizer, f"model {model_config.name!r}")
    return model.train()


def _check_shards(config: TrainConfig) -> tuple[list[str], int]:
    """The shard paths, with missing ones dropped when ``data.max_bad_shards`` tolerates them."""
    import siglip_data

    data = config.data
    if not data.shards:
        raise ConfigError(
            "config field 'data.shards' is empty; give shard paths, patterns or a folder of "
            "shards (siglip-train train --data DIR)"
        )
    try:
        # Entry by entry: a folder of shards is expanded wherever it appears in the list.
        shards = [shard for entry in data.shards for shard in siglip_data.resolve_shards(entry)]
    except ValueError as error:
        raise ConfigError(f"config field 'data.shards' ({data.shards!r}): {error}") from None
    missing = [shard for shard in shards if not Path(shard).is_file()]
    if len(missing) > data.max_bad_shards:
        raise ConfigError(
            f"{len(missing)} of the {len(shards)} shards data.shards names do not exist "
            f"(first: {missing[:3]}); data.max_bad_shards={data.max_bad_shards} tolerates "
            f"{data.max_bad_shards}: fix the paths or raise data.max_bad_shards"
        )
    if missing:
        LOGGER.warning(
            "%d of %d shards are missing and skipped (data.max_bad_shards=%d): %s",
            len(missing),
            len(shards),
            data.max_bad_shards,
            missing[:5],
        )
    present = [shard for shard in shards if shard not in missing]
    if not present:
        raise ConfigError(f"config field 'data.shards' ({data.shards!r}): no shard exists")
    return present, len(missing)


def _webdataset_batches(config: TrainConfig, context: DistributedContext, tokenizer: Any) -> Any:
    import siglip_data
    from siglip_data.torch import ImageTextLoader

    data = config.data
    if data.batch_size % context.world_size:
        raise ConfigError(
            "config field 'data.batch_size' (the global batch, split evenly over the ranks) "
            f"must be divisible by the number of processes {context.world_size}, got "
            f"{data.batch_size}"
        )
    shards, missing = _check_shards(config)
    dataset = siglip_data.ImageTextDataset(
        siglip_data.ShardSource(shards),
        tokenizer=tokenizer,
        image_size=data.image_size,
        batch_size=data.batch_size // context.world_size,
        seed=config.seed,
        drop_last=True,
        topology=siglip_data.Topology(rank=context.rank, world_size=context.world_size),
        captions_per_image=data.captions_per_image or None,
    )
    return ConfiguredBatches(
        ImageTextLoader(dataset), missing_shards=missing, max_bad_shards=data.max_bad_shards
    )


def checkpoint_assets(config: TrainConfig, tokenizer: Any) -> Any:
    """A function writing the tokenizer and preprocessing settings into a checkpoint's model/."""
    source = Path(config.data.tokenizer or "")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    settings = {
        "format": PREPROCESSING_FORMAT,
        "tokenizer": TOKENIZER_FILE,
        "tokenizer_sha256": digest,
        "tokenizer_preset": config.data.tokenizer_preset,
        "vocab_size": int(tokenizer.vocab_size),
        "text_length": config.data.text_length,
        "image_size": config.data.image_size,
        "resample": "bicubic",  # siglip_data.DecodeOptions' default, which the loader uses
    }

    def write(model_directory: Path) -> None:
        model_directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, model_directory / TOKENIZER_FILE)
        atomic_write_text(
            model_directory / PREPROCESSING_FILE, json.dumps(settings, indent=2) + "\n"
        )

    return write


def _has_siglip_eval() -> bool:
    try:
        import siglip_eval  # noqa: F401
    except ImportError:
        LOGGER.warning(
            "siglip-eval is not installed: no periodic evaluation (pip install siglip-eval)"
        )
        return False
    return True


def _retrieval_eval(config: TrainConfig, tokenizer: Any) -> Any:
    """Periodic image<->text Recall@K on ``eval.retrieval_shards`` via siglip-eval, if installed."""
    if not _has_siglip_eval():
        return None
    import siglip_eval
    from siglip_eval.torch import torch_encoder

    dataset = siglip_eval.datasets.retrieval_shards(
        config.eval.retrieval_shards, image_size=config.data.image_size, name="eval"
    )

    def evaluate(trained: TwoTowerModel) -> dict[str, float]:
        result = siglip_eval.evaluate_retrieval(
            torch_encoder(trained, tokenizer), dataset, progress=False
        )
        return {f"retrieval_{name}": float(value) for name, value in result.metrics.items()}

    return evaluate


def train_from_config(
    config: TrainConfig,
    *,
    resume: str | None = None,
    overwrite: bool = False,
    force_resume: bool = False,
) -> int:
    """Train what ``config`` describes; returns the process exit code (128 + signal if stopped).

    Under torchrun every process runs this.

    Args:
        config: the run.
        resume: ``"auto"``, a checkpoint or run directory, or ``None`` (a fresh run).
        overwrite: a fresh run may replace another run's checkpoints in ``output_dir``.
        force_resume: resume even when the config changed in a way that breaks exactness.
    """
    device_type = (
        "cuda"
        if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
        else "cpu"
    )
    context = init_distributed(device_type, timeout_seconds=config.collective_timeout_seconds)
    stop_signal = _fit(config, context, resume, overwrite, force_resume)
    if context.initialized_here:
        close_distributed()  # _fit has returned: its DDP/FSDP objects are out of scope
    if stop_signal is not None:
        return 128 + int(stop_signal)
    return 0


def _fit(
    config: TrainConfig,
    context: DistributedContext,
    resume: str | None,
    overwrite: bool,
    force_resume: bool,
) -> int | None:
    """Build data, model and trainer, train; returns the signal that stopped training, if any."""
    if config.freeze != "none" and not config.model.init_from:
        build_model(config)  # raises the message that names model.init_from
    if not config.data.shards:
        _check_shards(config)  # raises: data.shards is empty
    tokenizer = load_tokenizer(config)
    model = build_model(config, tokenizer=tokenizer)
    batches = _webdataset_batches(config, context, tokenizer)
    eval_fn = None
    if config.eval.every_steps and config.eval.retrieval_shards:
        eval_fn = _retrieval_eval(config, tokenizer)
    trainer = Trainer(model, batches, config, eval_fn=eval_fn, overwrite=overwrite)
    trainer.checkpoint_assets = checkpoint_assets(config, tokenizer)
    if resume is not None:
        trainer.resume(_resume_target(resume, config.output_dir), force=force_resume)
    result = trainer.fit()
    LOGGER.info(
        "finished run %s at step %d (interrupted=%s), %.1f s training, checkpoint %s%s",
        trainer.run_id,
        result.step,
        result.interrupted,
        result.train_seconds,
        result.checkpoint,
        f", skipped {trainer.skipped}" if trainer.skipped else "",
    )
    return trainer.stop_signal


def _resume_target(resume: str, output_dir: str) -> str | Path:
    """``auto``; a checkpoint directory; a run directory: ``auto`` for ``output_dir`` itself,
    else its newest checkpoint (which starts a branch here)."""
    from siglip_train._checkpoint import resolve_resume_path
    from siglip_train._common import CheckpointError

    path = Path(resume)
    if resume == "auto" or (path.is_dir() and path.resolve() == Path(output_dir).resolve()):
        return "auto"
    found = resolve_resume_path(resume, Path(output_dir))
    if found is None:
        raise CheckpointError(f"--resume {resume!r}: no checkpoint found there")
    return found
