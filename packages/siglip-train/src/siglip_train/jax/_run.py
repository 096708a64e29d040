"""``siglip-train train --framework jax``: the config's model, data and eval, on the JAX trainer.

The same ``TrainConfig`` (files, presets, ``--set``) as the torch path; the model is built by the
torch path's ``build_model`` (same seed, same initial weights) and copied into the Flax model,
the shards are read by ``siglip_data.ImageTextDataset`` through ``siglip_data.jax``'s loader,
periodic retrieval goes through ``siglip_eval.flax``. Multi-host: every process runs this after
``jax.distributed.initialize`` (``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
``JAX_PROCESS_ID`` set: it is called here).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from siglip_train._batches import ConfiguredBatches
from siglip_train._config import ConfigError
from siglip_train._config import TrainConfig
from siglip_train._logging import LOGGER
from siglip_train._run import _check_shards
from siglip_train._run import build_model
from siglip_train._run import checkpoint_assets
from siglip_train._run import load_tokenizer
from siglip_train.jax._trainer import JaxTrainer


def initialize_distributed() -> None:
    """``jax.distributed.initialize`` from the ``JAX_*`` environment, when it names >1 process."""
    processes = int(os.environ.get("JAX_NUM_PROCESSES", "1"))
    if processes > 1 and not jax.distributed.is_initialized():
        jax.distributed.initialize(
            coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
            num_processes=processes,
            process_id=int(os.environ["JAX_PROCESS_ID"]),
        )


def flax_model_of(config: TrainConfig, tokenizer: Any) -> Any:
    """The model ``config.model`` describes, as ``siglip_models.flax.SiglipModel``: the very
    weights the torch path starts from (same builder, same seed)."""
    from siglip_models.flax import SiglipModel

    torch_model = build_model(config, tokenizer=tokenizer)
    model = SiglipModel(torch_model.config)
    model.load_hf_state_dict(
        {key: value.detach().cpu().numpy() for key, value in torch_model.hf_state_dict().items()},
        source="the configured model",
    )
    return model


def _batches(config: TrainConfig, tokenizer: Any) -> ConfiguredBatches:
    import siglip_data
    from siglip_data.jax import JaxImageTextLoader

    data = config.data
    processes, index = jax.process_count(), jax.process_index()
    if data.batch_size % processes:
        raise ConfigError(
            f"data.batch_size ({data.batch_size}) must be divisible by the number of "
            f"processes ({processes})"
        )
    if data.captions_per_image:
        raise ConfigError(
            "config field 'data.captions_per_image' must be 0 for the JAX trainer (several "
            f"captions per image are in the torch trainer only), got {data.captions_per_image}"
        )
    shards, missing = _check_shards(config)
    dataset = siglip_data.ImageTextDataset(
        siglip_data.ShardSource(shards),
        tokenizer=tokenizer,
        image_size=data.image_size,
        batch_size=data.batch_size // processes,
        seed=config.seed,
        drop_last=True,
        topology=siglip_data.Topology(rank=index, world_size=processes),
    )
    return ConfiguredBatches(
        JaxImageTextLoader(dataset), missing_shards=missing, max_bad_shards=data.max_bad_shards
    )


def _retrieval_eval(config: TrainConfig, tokenizer: Any) -> Any:
    """Image<->text Recall@K on ``eval.retrieval_shards`` with siglip-eval's Flax adapter."""
    try:
        import siglip_eval
        from siglip_eval.flax import flax_encoder
    except ImportError:
        LOGGER.warning("siglip-eval[flax] is not installed: no periodic evaluation")
        return None
    dataset = siglip_eval.datasets.retrieval_shards(
        config.eval.retrieval_shards, image_size=config.data.image_size, name="eval"
    )

    def evaluate(model: Any) -> dict[str, float]:
        result = siglip_eval.evaluate_retrieval(
            flax_encoder(model, tokenizer), dataset, progress=False
        )
        return {f"retrieval_{name}": float(value) for name, value in result.metrics.items()}

    return evaluate


def train_from_config(
    config: TrainConfig, *, resume: str | None = None, overwrite: bool = False
) -> int:
    """Train what ``config`` describes with :class:`JaxTrainer`; the process exit code.

    The final checkpoint gets ``model/``: the HF-layout export with the tokenizer and the
    preprocessing settings, which siglip-eval and ``siglip_models`` load.

    Args:
        config: the run.
        resume: ``"auto"``, a checkpoint ``step_<N>`` directory, or ``None`` (a fresh run).
        overwrite: a fresh run may delete the checkpoints in ``output_dir``.

    Returns:
        0, or 128 + the signal that stopped the run.
    """
    initialize_distributed()
    devices = jax.device_count()
    if config.data.batch_size % devices:
        raise ConfigError(
            f"config field 'data.batch_size' must be divisible by the {devices} devices the "
            f"JAX trainer splits it over, got {config.data.batch_size}"
        )
    if config.freeze != "none" and not config.model.init_from:
        build_model(config)  # raises the message that names model.init_from
    if not config.data.shards:
        _check_shards(config)  # raises: data.shards is empty
    tokenizer = load_tokenizer(config)
    model = flax_model_of(config, tokenizer)
    batches = _batches(config, tokenizer)
    eval_fn = None
    if config.eval.every_steps and config.eval.retrieval_shards:
        eval_fn = _retrieval_eval(config, tokenizer)
    trainer = JaxTrainer(model, batches, config, eval_fn=eval_fn, overwrite=overwrite)
    if resume is not None:
        trainer.resume(resume if resume == "auto" else Path(resume))
    result = trainer.fit()
    assert result.checkpoint is not None
    model_directory = trainer.export(result.checkpoint / "model")
    if jax.process_index() == 0:
        checkpoint_assets(config, tokenizer)(model_directory)
    LOGGER.info(
        "finished at step %d (interrupted=%s), %.1f s training, checkpoint %s, mesh %s, loss %.4f",
        result.step,
        result.interrupted,
        result.train_seconds,
        result.checkpoint,
        dict(trainer.mesh.shape),
        result.last_loss if np.isfinite(result.last_loss) else float("nan"),
    )
    stop = trainer.stop_signal
    return 0 if stop is None else 128 + int(stop)
