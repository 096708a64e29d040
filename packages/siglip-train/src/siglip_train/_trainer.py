"""The training loop: DDP, frozen towers, signals, periodic eval; checkpoints in ``_checkpoint``."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from siglip_train._batches import Images
from siglip_train._batches import batch_to_tensors
from siglip_train._batches import encode_images
from siglip_train._batches import tower_parameter_names
from siglip_train._checkpoint import CONFIG_FILE
from siglip_train._checkpoint import CheckpointError
from siglip_train._checkpoint import capture_rng_state
from siglip_train._checkpoint import restore_checkpoint
from siglip_train._checkpoint import verify_checkpoint
from siglip_train._checkpoint import write_checkpoint
from siglip_train._config import ConfigError
from siglip_train._config import TrainConfig
from siglip_train._config import config_to_yaml
from siglip_train._config import save_config
from siglip_train._config import validate_config
from siglip_train._distributed import DistributedContext
from siglip_train._distributed import init_distributed
from siglip_train._logging import LOGGER
from siglip_train._logging import MetricsLogger
from siglip_train._losses import default_loss
from siglip_train._losses import ignored_parameters
from siglip_train._optim import build_optimizer
from siglip_train._optim import build_parameter_groups
from siglip_train._optim import build_scheduler
from siglip_train._optim import warmup_cosine_multiplier
from siglip_train._positives import positive_groups
from siglip_train._protocol import BatchSource
from siglip_train._protocol import ContrastiveLoss
from siglip_train._protocol import TwoTowerModel

EvalFunction = Callable[[TwoTowerModel], Mapping[str, float]]


@dataclasses.dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns.

    Attributes:
        step: optimizer steps completed (counting resumed ones).
        interrupted: stopped early by SIGTERM/SIGINT, ``max_seconds`` or ``fit(max_steps=...)``.
        train_seconds: wall time spent in training steps in this call (no setup, eval, saving).
        last_loss: the global loss of the last step.
        checkpoint: the last checkpoint written, if any.
        eval: the last evaluation results, if any.
    """

    step: int
    interrupted: bool
    train_seconds: float
    last_loss: float
    checkpoint: Path | None
    eval: dict[str, float]


def _l2_normalize(x: torch.Tensor) -> torch.Tensor:
    from siglip_loss.torch import l2_normalize

    normalized: torch.Tensor = l2_normalize(x)
    return normalized


class _TowerPair(nn.Module):
    """Runs both towers in one ``forward`` so DDP sees (and synchronises) the whole step."""

    def __init__(self, model: TwoTowerModel, *, image_frozen: bool, text_frozen: bool) -> None:
        super().__init__()
        self.model = model
        self.image_frozen = image_frozen
        self.text_frozen = text_frozen

    def forward(
        self, pixels: Images, token_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        grad = torch.is_grad_enabled()
        with torch.set_grad_enabled(grad and not self.image_frozen):
            image_emb = encode_images(self.model, pixels)  # NaFlex: encode_image_naflex
        with torch.set_grad_enabled(grad and not self.text_frozen):
            text_emb = self.model.encode_text(token_ids)
        return image_emb, text_emb, self.model.log_scale, self.model.bias


class Trainer:
    """Train a two-tower model with a contrastive loss; single process or torchrun + DDP.

    The model is any ``nn.Module`` with ``encode_image``, ``encode_text``, ``log_scale`` and
    ``bias`` (:class:`~siglip_train.TwoTowerModel`); the loss any function with the siglip-loss
    signature (default: ``config.loss``, in its distributed form under torchrun); the batches any
    iterable of ``{"pixels", "token_ids"}`` dicts, each process's LOCAL share of the global batch.
    An iterable with ``state_dict()``/``load_state_dict()`` resumes exactly; any other is
    fast-forwarded by the number of batches already consumed.

    Args:
        model: the model (moved to the configured device).
        batches: the batch source.
        config: the run configuration (``steps``, ``optimizer``, ``freeze``, ...).
        loss_fn: overrides ``config.loss``.
        eval_fn: ``eval_fn(model) -> {name: value}``, called on rank 0 every
            ``config.eval.every_steps`` steps and at the end, in eval mode without gradients.

    Raises:
        TypeError: ``model`` lacks a member of the protocol or is not an ``nn.Module``.
        ConfigError: an invalid ``config``, or ``model.grad_checkpointing`` on a model without
            ``set_gradient_checkpointing``.

    Examples:
        >>> import shutil, tempfile, torch
        >>> from siglip_models.torch import SiglipModel
        >>> from siglip_train import TrainConfig, apply_overrides
        >>> _ = torch.manual_seed(0)
        >>> batches = [
        ...     {
        ...         "pixels": torch.rand(4, 3, 32, 32) * 2 - 1,
        ...         "token_ids": torch.randint(0, 100, (4, 16)),
        ...     }
        ... ]
        >>> config = apply_overrides(
        ...     TrainConfig(),
        ...     [
        ...         f"output_dir={tempfile.mkdtemp()}",
        ...         "steps=2",
        ...         "optimizer.warmup_steps=1",
        ...         "logging.progress_bar=false",
        ...         "logging.tensorboard=false",
        ...     ],
        ... )
        >>> result = Trainer(SiglipModel("tiny-test"), batches, config).fit()
        >>> result.step, result.interrupted, result.checkpoint.name
        (2, False, 'step_000000002')
        >>> shutil.rmtree(config.output_dir)
    """

    def __init__(
        self,
        model: TwoTowerModel,
        batches: BatchSource,
        config: TrainConfig,
        *,
        loss_fn: ContrastiveLoss | None = None,
        eval_fn: EvalFunction | None = None,
    ) -> None:
        for attribute in ("encode_image", "encode_text", "log_scale", "bias"):
            if not hasattr(model, attribute):
                raise TypeError(
                    f"model must follow the two-tower protocol (encode_image, encode_text, "
                    f"log_scale, bias); {type(model).__name__} has no {attribute!r}"
                )
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        validate_config(config)  # also after fields were assigned one by one
        self.config = config
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        self.device = self._resolve_device(config)
        self.context: DistributedContext = init_distributed(self.device.type)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.context.local_rank)
        model.to(self.device)
        self.model: nn.Module = model
        self._towers: TwoTowerModel = model
        self.batches = batches
        self.loss_fn = loss_fn or default_loss(config.loss, self.context.world_size)
        self.eval_fn = eval_fn
        self.output_dir = Path(config.output_dir)
        self.checkpoint_root = self.output_dir / "checkpoints"
        self.step = 0
        self.batches_consumed = 0
        self.optimizer: torch.optim.AdamW | None = None
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.image_parameter_names: set[str] = set()
        self.text_parameter_names: set[str] = set()
        self._resume_from: Path | None = None
        self._step_module: nn.Module | None = None
        self._iterator: Iterator[Mapping[str, Any]] | None = None
        self._peeked: Mapping[str, Any] | None = None
        self._stop_signal: int | None = None
        self._last_checkpoint: Path | None = None
        self._last_saved_step = -1
        self._logger = MetricsLogger(
            self.output_dir, enabled=self.context.is_main, tensorboard=config.logging.tensorboard
        )
        if config.model.grad_checkpointing:
            setter = getattr(model, "set_gradient_checkpointing", None)
            if not callable(setter):
                raise ConfigError(
                    "model.grad_checkpointing=true needs a model with "
                    f"set_gradient_checkpointing(enabled); {type(model).__name__} has none"
                )
            setter(True)

    @staticmethod
    def _resolve_device(config: TrainConfig) -> torch.device:
        if config.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("config field 'device' is 'cuda' but no CUDA device is available")
        if config.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(config.device)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """bf16 under ``precision=bf16``, or ``auto`` on GPU; ``None`` means float32."""
        precision = self.config.precision
        if precision == "bf16" or (precision == "auto" and self.device.type == "cuda"):
            return torch.bfloat16
        return None

    # ----------------------------------------------------------------------------- resume
    def resume(self, checkpoint: str | Path) -> None:
        """Continue from ``checkpoint`` (a directory written by this trainer) on the next ``fit``.

        Verifies the manifest hashes, the parameter names and shapes, and the world size.

        Raises:
            CheckpointError: corrupt, incomplete or mismatched checkpoint.
        """
        directory = Path(checkpoint)
        verify_checkpoint(directory, self.model, self.context.world_size)
        self._resume_from = directory

    def _apply_resume(self) -> dict[str, Any] | None:
        directory = self._resume_from
        if directory is None:
            return None
        restored = restore_checkpoint(
            directory, model=self.model, batches=self.batches, rank=self.context.rank
        )
        self.step = restored.step
        self.batches_consumed = restored.batches_consumed
        self._last_saved_step = self.step
        self._last_checkpoint = directory
        self._logger.truncate_after(self.step)
        return restored.training_state

    # ------------------------------------------------------------------------------ setup
    def _next_batch(self) -> Mapping[str, Any]:
        if self._peeked is not None:
            batch, self._peeked = self._peeked, None
            self.batches_consumed += 1
            return batch
        if self._iterator is None:
            self._iterator = iter(self.batches)
        try:
            batch = next(self._iterator)
        except StopIteration:
            # A finite source (a list, one epoch): start the next pass.
            self._iterator = iter(self.batches)
            try:
                batch = next(self._iterator)
            except StopIteration:
                raise ValueError("the batch source yielded no batch") from None
        self.batches_consumed += 1
        return batch

    def _setup(self) -> None:
        if self.optimizer is not None:
            return
        training_state = self._apply_resume()
        has_state = callable(getattr(self.batches, "state_dict", None))
        if training_state is not None and not has_state:
            # No loader state to restore: fast-forward a plain iterable to where it stopped.
            skip, self.batches_consumed = self.batches_consumed, 0
            for _ in range(skip):
                self._next_batch()
        self._peeked = self._next_batch()
        self.batches_consumed -= 1  # the peeked batch is consumed by the next step
        pixels, token_ids = batch_to_tensors(self._peeked, self.device)
        self.image_parameter_names, self.text_parameter_names = tower_parameter_names(
            self._towers, pixels, token_ids
        )
        self._freeze()
        optimizer_config = self.config.optimizer
        groups = build_parameter_groups(
            self.model,
            lr=optimizer_config.lr,
            weight_decay=optimizer_config.weight_decay,
            image_parameter_names=self.image_parameter_names - self.text_parameter_names,
            text_parameter_names=self.text_parameter_names - self.image_parameter_names,
            image_lr_multiplier=optimizer_config.image_lr_multiplier,
            text_lr_multiplier=optimizer_config.text_lr_multiplier,
            logit_lr_multiplier=optimizer_config.logit_lr_multiplier,
        )
        self.optimizer = build_optimizer(
            groups, betas=(optimizer_config.beta1, optimizer_config.beta2), eps=optimizer_config.eps
        )
        self.scheduler = build_scheduler(
            self.optimizer,
            total_steps=self.config.steps,
            warmup_steps=optimizer_config.warmup_steps,
            min_lr_ratio=optimizer_config.min_lr_ratio,
        )
        if training_state is not None:
            try:
                self.optimizer.load_state_dict(training_state["optimizer"])
                self.scheduler.load_state_dict(training_state["scheduler"])
            except (ValueError, KeyError) as error:
                raise CheckpointError(
                    f"optimizer state of {str(self._resume_from)!r} does not fit this run "
                    f"(different freeze or parameter groups?): {error}"
                ) from None
        step_module = _TowerPair(
            self._towers,
            image_frozen=self.config.freeze == "image",
            text_frozen=self.config.freeze == "text",
        )
        if self.context.is_distributed:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self._step_module = DistributedDataParallel(step_module, device_ids=device_ids)
        else:
            self._step_module = step_module

    def _freeze(self) -> None:
        frozen: set[str] = set()
        if self.config.freeze == "image":
            frozen = self.image_parameter_names - self.text_parameter_names
        elif self.config.freeze == "text":
            frozen = self.text_parameter_names - self.image_parameter_names
        frozen -= {"log_scale", "bias"}
        ignored = ignored_parameters(self.config.loss)  # e.g. the softmax loss has no bias
        for name, parameter in self.model.named_parameters():
            if name in frozen or name in ignored:
                parameter.requires_grad_(False)
        if self.config.freeze != "none" and not frozen:
            raise ConfigError(
                f"freeze={self.config.freeze!r} but no parameter belongs only to that tower"
            )

    # ------------------------------------------------------------------------------ steps
    def _train_step(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.optimizer is not None
        assert self.scheduler is not None
        assert self._step_module is not None
        pixels, token_ids = batch_to_tensors(batch, self.device)
        dtype = self.autocast_dtype
        autocast = (
            torch.autocast(device_type=self.device.type, dtype=dtype)
            if dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            image_emb, text_emb, log_scale, bias = self._step_module(pixels, token_ids)
        image_emb = _l2_normalize(image_emb.float())
        text_emb = _l2_normalize(text_emb.float())
        # loss.positives: the rows' group ids (an image and its caption share their row's id).
        groups = positive_groups(batch, self.config.loss.positives, self.device)
        positives = {} if groups is None else {"image_groups": groups, "text_groups": groups}
        loss = self.loss_fn(
            image_emb, text_emb, scale=log_scale.float().exp(), bias=bias.float(), **positives
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        clip = self.config.optimizer.grad_clip
        grad_norm = torch.nn.utils.clip_grad_norm_(
            trainable, clip if clip > 0 else math.inf, foreach=True
        )
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach(), grad_norm.detach()

    def _lr_of_step(self, step: int) -> float:
        optimizer_config = self.config.optimizer
        return optimizer_config.lr * warmup_cosine_multiplier(
            step,
            total_steps=self.config.steps,
            warmup_steps=optimizer_config.warmup_steps,
            min_lr_ratio=optimizer_config.min_lr_ratio,
        )

    def _global_mean(self, value: torch.Tensor) -> float:
        if self.context.is_distributed:
            value = value.clone()
            dist.all_reduce(value)
            value /= self.context.world_size
        return float(value)

    def _should_stop(self, local_stop: bool) -> bool:
        if not self.context.is_distributed:
            return local_stop
        flag = torch.tensor([1.0 if local_stop else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def request_stop(signum: int, frame: Any) -> None:
            del frame
            self._stop_signal = signum

        previous: dict[int, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, request_stop)
        return previous

    def _log_step(
        self,
        loss: torch.Tensor,
        grad_norm: torch.Tensor,
        *,
        at_log: bool,
        samples_per_second: float,
        train_seconds: float,
    ) -> float | None:
        """Write the metrics record (every ``logging.every_steps``) and advance the progress bar.

        Returns the step's loss when it was read (the global mean at a record), else ``None``.
        """
        logger = self._logger
        loss_value = None
        if at_log or logger.shows_progress:
            loss_value = self._global_mean(loss) if at_log else float(loss)
        lr = self._lr_of_step(self.step - 1)
        if at_log:
            record = {
                "loss": loss_value,
                "lr": lr,
                "scale": float(self._towers.log_scale.detach().exp()),
                "bias": float(self._towers.bias.detach()),
                "grad_norm": float(grad_norm),
                "samples_per_second": samples_per_second,
                "train_seconds": train_seconds,
            }
            logger.log(self.step, record)
        logger.progress(loss=float(loss), lr=lr, samples_per_second=samples_per_second)
        return loss_value

    # ------------------------------------------------------------------------------- fit
    def fit(self, *, max_steps: int | None = None) -> TrainResult:
        """Train until ``config.steps`` (or ``max_steps`` more steps in this call).

        Stops early, after saving a checkpoint, on SIGTERM/SIGINT or after
        ``config.max_seconds``; the caller may then exit and later :meth:`resume`.

        Args:
            max_steps: stop after this many steps in this call (the schedule still spans
                ``config.steps``): an interruption on purpose.

        Returns:
            :class:`TrainResult`.
        """
        self._setup()
        config = self.config
        if self.context.is_main:
            LOGGER.info("training config:\n%s", config_to_yaml(config))
            save_config(config, self.output_dir / CONFIG_FILE)
        end_step = config.steps if max_steps is None else min(config.steps, self.step + max_steps)
        if config.logging.progress_bar:
            self._logger.open_progress(total=config.steps, initial=self.step)
        previous_handlers = self._install_signal_handlers()
        self._stop_signal = None
        train_seconds = 0.0
        last_loss = math.nan
        eval_results: dict[str, float] = {}
        interrupted = False
        try:
            while self.step < end_step:
                started = time.perf_counter()
                batch = self._next_batch()
                loss, grad_norm = self._train_step(batch)
                self.step += 1
                step_seconds = time.perf_counter() - started
                train_seconds += step_seconds
                global_batch = len(batch["token_ids"]) * self.context.world_size
                at_log = self.step % config.logging.every_steps == 0 or self.step == end_step
                step_loss = self._log_step(
                    loss,
                    grad_norm,
                    at_log=at_log,
                    samples_per_second=global_batch / max(step_seconds, 1e-9),
                    train_seconds=train_seconds,
                )
                if step_loss is not None:
                    last_loss = step_loss
                if config.eval.every_steps and self.step % config.eval.every_steps == 0:
                    eval_results = self.evaluate()
                out_of_time = bool(config.max_seconds and train_seconds >= config.max_seconds)
                if self._should_stop(self._stop_signal is not None or out_of_time):
                    interrupted = True
                    break
                every = config.checkpoint.every_steps
                if every and self.step % every == 0 and self.step < end_step:
                    self.save_checkpoint()
            if self.step < config.steps:
                interrupted = True
            evaluated_now = (
                bool(config.eval.every_steps) and self.step % config.eval.every_steps == 0
            )
            if self.eval_fn is not None and not interrupted and not evaluated_now:
                eval_results = self.evaluate()
            self.save_checkpoint()
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            self._logger.close()
        if self._stop_signal is not None:
            LOGGER.warning(
                "stopped by signal %d at step %d; checkpoint %s",
                self._stop_signal,
                self.step,
                self._last_checkpoint,
            )
        return TrainResult(
            step=self.step,
            interrupted=interrupted,
            train_seconds=train_seconds,
            last_loss=last_loss,
            checkpoint=self._last_checkpoint,
            eval=eval_results,
        )

    @property
    def stop_signal(self) -> int | None:
        """The signal that stopped the last ``fit`` (``None``: it was not a signal)."""
        return self._stop_signal

    def evaluate(self) -> dict[str, float]:
        """Run ``eval_fn`` on rank 0 (eval mode, no gradients) and log its results."""
        results: dict[str, float] = {}
        if self.eval_fn is not None and self.context.is_main:
            was_training = self.model.training
            self.model.eval()
            with torch.no_grad():
                results = {k: float(v) for k, v in self.eval_fn(self._towers).items()}
            self.model.train(was_training)
            self._logger.log(self.step, results, kind="eval")
        if self.context.is_distributed:
            dist.barrier()
        return results

    def save_checkpoint(self) -> Path:
        """Write a checkpoint of the current step (all ranks must call it); returns its path.

        See ``siglip_train._checkpoint.write_checkpoint``: complete or absent, sha256 manifest,
        only the newest ``checkpoint.keep_last`` kept.
        """
        if self._last_saved_step == self.step and self._last_checkpoint is not None:
            return self._last_checkpoint
        assert self.optimizer is not None
        assert self.scheduler is not None
        state_dict = getattr(self.batches, "state_dict", None)
        rank_state = {
            "rng": capture_rng_state(),
            "batches_consumed": self.batches_consumed,
            "data": state_dict() if callable(state_dict) else None,
        }
        final = write_checkpoint(
            self.checkpoint_root,
            self.step,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            config=self.config,
            rank_state=rank_state,
            context=self.context,
        )
        self._last_saved_step = self.step
        self._last_checkpoint = final
        return final
