"""Build the model and batches a config describes, then train (the ``siglip-train train`` path)."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import torch
import torch.distributed as dist

from siglip_train._checkpoint import resolve_resume_path
from siglip_train._config import ConfigError
from siglip_train._config import TrainConfig
from siglip_train._distributed import DistributedContext
from siglip_train._distributed import init_distributed
from siglip_train._logging import LOGGER
from siglip_train._protocol import TwoTowerModel
from siglip_train._trainer import Trainer

if TYPE_CHECKING:
    from siglip_models.torch import SiglipModel


def build_model(config: TrainConfig, *, vocab_size: int | None = None) -> SiglipModel:
    """The ``siglip_models`` model ``config.model`` names, or the one in ``init_from``."""
    from siglip_models.torch import SiglipModel

    if config.freeze != "none" and not config.model.init_from:
        raise ConfigError(
            f"freeze={config.freeze!r} locks a tower, which only makes sense for a pretrained "
            "one: set model.init_from to an HF model directory (e.g. --set "
            "model.init_from=/models/siglip-base-patch16-224)"
        )
    if config.model.init_from:
        if not Path(config.model.init_from).is_dir():
            raise ConfigError(
                f"config field 'model.init_from' must be an HF model directory, got "
                f"{config.model.init_from!r} (not a directory)"
            )
        return SiglipModel.from_pretrained(config.model.init_from).train()
    torch.manual_seed(config.seed)
    model = SiglipModel(config.model.name)
    if vocab_size is not None and model.config.text.vocab_size < vocab_size:
        raise ConfigError(
            f"model {config.model.name!r} has a {model.config.text.vocab_size}-token table but "
            f"the tokenizer has {vocab_size} tokens"
        )
    with torch.no_grad():
        model.log_scale.fill_(config.model.log_scale_init)
        model.bias.fill_(config.model.bias_init)
    return model.train()


def _webdataset_batches(config: TrainConfig, context: DistributedContext) -> Any:
    import siglip_data
    from siglip_data.torch import ImageTextLoader

    data = config.data
    if not data.shards:
        raise ConfigError("config field 'data.shards' is empty; give shard paths or patterns")
    if not data.tokenizer:
        raise ConfigError("config field 'data.tokenizer' must name a SentencePiece .model file")
    if data.batch_size % context.world_size:
        raise ConfigError(
            f"data.batch_size ({data.batch_size}) must be divisible by the number of "
            f"processes ({context.world_size})"
        )
    tokenizer = siglip_data.SentencePieceTokenizer(
        data.tokenizer, preset=data.tokenizer_preset, length=data.text_length
    )
    dataset = siglip_data.ImageTextDataset(
        siglip_data.ShardSource(data.shards),
        tokenizer=tokenizer,
        image_size=data.image_size,
        batch_size=data.batch_size // context.world_size,
        seed=config.seed,
        drop_last=True,
        topology=siglip_data.Topology(rank=context.rank, world_size=context.world_size),
        captions_per_image=data.captions_per_image or None,
    )
    return ImageTextLoader(dataset)


def _has_siglip_eval() -> bool:
    try:
        import siglip_eval  # noqa: F401
    except ImportError:
        LOGGER.warning(
            "siglip-eval is not installed: no periodic evaluation (pip install siglip-eval)"
        )
        return False
    return True


def _retrieval_eval(config: TrainConfig) -> Any:
    """Periodic image<->text Recall@K on ``eval.retrieval_shards`` via siglip-eval, if installed."""
    if not _has_siglip_eval():
        return None
    import siglip_data
    import siglip_eval
    from siglip_eval.torch import torch_encoder

    if not config.data.tokenizer:
        raise ConfigError(
            "config field 'data.tokenizer' must name a SentencePiece .model file when "
            "'eval.retrieval_shards' is set (the captions must be tokenized as in training)"
        )
    tokenizer = siglip_data.SentencePieceTokenizer(
        config.data.tokenizer, preset=config.data.tokenizer_preset, length=config.data.text_length
    )
    dataset = siglip_eval.datasets.retrieval_shards(
        config.eval.retrieval_shards, image_size=config.data.image_size, name="eval"
    )

    def evaluate(trained: TwoTowerModel) -> dict[str, float]:
        result = siglip_eval.evaluate_retrieval(
            torch_encoder(trained, tokenizer), dataset, progress=False
        )
        return {f"retrieval_{name}": float(value) for name, value in result.metrics.items()}

    return evaluate


def train_from_config(config: TrainConfig, *, resume: str | None = None) -> int:
    """Train what ``config`` describes; returns the process exit code (128 + signal if stopped).

    Under torchrun every process runs this.
    """
    device_type = (
        "cuda"
        if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
        else "cpu"
    )
    context = init_distributed(device_type)
    stop_signal = _fit(config, context, resume)
    if context.initialized_here:
        # _fit has returned, so DDP, its reducer and the last step's tensors are gone (gc breaks
        # their cycles). Left alive past destroy_process_group, they make gloo abort the process
        # at interpreter exit, about 1 run in 10 on the CI machine.
        gc.collect()
        dist.destroy_process_group()
    if stop_signal is not None:
        return 128 + int(stop_signal)
    return 0


def _fit(config: TrainConfig, context: DistributedContext, resume: str | None) -> int | None:
    """Build data, model and trainer, train; returns the signal that stopped training, if any."""
    model = build_model(config)
    batches = _webdataset_batches(config, context)
    eval_fn = None
    if config.eval.every_steps and config.eval.retrieval_shards:
        eval_fn = _retrieval_eval(config)
    trainer = Trainer(model, batches, config, eval_fn=eval_fn)
    if resume is not None:
        checkpoint = resolve_resume_path(resume, Path(config.output_dir))
        if checkpoint is not None:
            trainer.resume(checkpoint)
        else:
            LOGGER.info("--resume auto: no checkpoint in %s, starting fresh", config.output_dir)
    result = trainer.fit()
    LOGGER.info(
        "finished at step %d (interrupted=%s), %.1f s training, checkpoint %s",
        result.step,
        result.interrupted,
        result.train_seconds,
        result.checkpoint,
    )
    return trainer.stop_signal
