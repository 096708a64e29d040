"""The training loop: DDP or FSDP (``_fsdp``), frozen towers, signals, periodic eval.

Checkpoints are written and read by ``_checkpoint`` (sharded ones by ``_dcp``).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from siglip_train._batches import Images
from siglip_train._batches import batch_to_tensors
from siglip_train._batches import encode_images
from siglip_train._batches import tower_parameter_names
from siglip_train._checkpoint import CONFIG_FILE
from siglip_train._checkpoint import capture_rng_state
from siglip_train._checkpoint import prune_checkpoints
from siglip_train._checkpoint import read_manifest
from siglip_train._checkpoint import restore_checkpoint
from siglip_train._checkpoint import verify_checkpoint
from siglip_train._checkpoint import write_checkpoint
from siglip_train._common import CheckpointError
from siglip_train._common import TrainResult
from siglip_train._common import warmup_cosine_multiplier
from siglip_train._config import ConfigError
from siglip_train._config import TrainConfig
from siglip_train._config import config_to_dict
from siglip_train._config import config_to_yaml
from siglip_train._config import validate_config
from siglip_train._distributed import DistributedContext
from siglip_train._distributed import init_distributed
from siglip_train._faults import fault_point
from siglip_train._logging import LOGGER
from siglip_train._logging import MetricsLogger
from siglip_train._losses import default_loss
from siglip_train._losses import ignored_parameters
from siglip_train._optim import build_optimizer
from siglip_train._optim import build_parameter_groups
from siglip_train._optim import build_scheduler
from siglip_train._positives import positive_groups
from siglip_train._protocol import BatchSource
from siglip_train._protocol import ContrastiveLoss
from siglip_train._protocol import TwoTowerModel
from siglip_train._run_identity import RunConflictError
from siglip_train._run_identity import RunPlan
from siglip_train._run_identity import plan_auto
from siglip_train._run_identity import plan_explicit
from siglip_train._run_identity import plan_fresh
from siglip_train._run_identity import write_run_file
from siglip_train._watchdog import StepWatchdog

EvalFunction = Callable[[TwoTowerModel], Mapping[str, float]]


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
    """Train a two-tower model with a contrastive loss; single process or torchrun + DDP / FSDP.

    The model is any ``nn.Module`` with ``encode_image``, ``encode_text``, ``log_scale`` and
    ``bias`` (:class:`~siglip_train.TwoTowerModel`); the loss any function with the siglip-loss
    signature (default: ``config.loss``, in its distributed form under torchrun); the batches any
    iterable of ``{"pixels", "token_ids"}`` dicts, each process's LOCAL share of the global batch.
    An iterable with ``state_dict()``/``load_state_dict()`` resumes exactly; any other is
    fast-forwarded by the number of batches already consumed. ``config.strategy="fsdp"`` shards
    the towers with FSDP2 and writes sharded checkpoints (docs/distributed.md).

    Args:
        model: the model (moved to the configured device).
        batches: the batch source.
        config: the run configuration (``steps``, ``optimizer``, ``freeze``, ...).
        loss_fn: overrides ``config.loss``.
        eval_fn: ``eval_fn(model) -> {name: value}``, called on rank 0 every
            ``config.eval.every_steps`` steps and at the end, in eval mode without gradients.

        overwrite: a fresh run in an ``output_dir`` that holds another run's checkpoints
            deletes them (with that run's metrics and TensorBoard files) instead of refusing.

    Every run has an id (``output_dir/run.json``, every checkpoint manifest, every metrics
    record); see :meth:`resume` for what continues a run and what starts a branch.

    Raises:
        TypeError: ``model`` lacks a member of the protocol, is not an ``nn.Module``, or its
            ``log_scale`` / ``bias`` is no 0-d tensor.
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
        overwrite: bool = False,
    ) -> None:
        for attribute in ("encode_image", "encode_text", "log_scale", "bias"):
            if not hasattr(model, attribute):
                raise TypeError(
                    f"model must follow the two-tower protocol (encode_image, encode_text, "
                    f"log_scale, bias); {type(model).__name__} has no {attribute!r}"
                )
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        for attribute in ("log_scale", "bias"):
            value = getattr(model, attribute)
            if not isinstance(value, torch.Tensor) or value.ndim != 0:
                got = (
                    f"a tensor of shape {tuple(value.shape)}"
                    if isinstance(value, torch.Tensor)
                    else f"{type(value).__name__} {value!r}"
                )
                raise TypeError(
                    f"model.{attribute} must be a 0-d learnable tensor "
                    f"(torch.nn.Parameter(torch.tensor(...))), got {got}"
                )
        validate_config(config)  # also after fields were assigned one by one
        if not getattr(batches, "from_config", False) and (
            config.data.shards or config.data.tokenizer
        ):
            raise ConfigError(
                "config fields 'data.shards' / 'data.tokenizer' name the data `siglip-train "
                "train` reads, but this Trainer was given its batches; they would be ignored: "
                "remove them (config.yaml records the shapes of the batches that ran)"
            )
        self.config = config
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        self.device = self._resolve_device(config)
        self.context: DistributedContext = init_distributed(
            self.device.type,
            timeout_seconds=config.collective_timeout_seconds,
            group_for_one=config.strategy == "fsdp",
        )
        if config.strategy == "fsdp":
            from siglip_train._fsdp import require_process_group

            require_process_group(self.device.type)
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
        self._resume_auto = False
        self._force_resume = False
        self._overwrite = overwrite
        self.run_id: str | None = None
        self._train_seconds = 0.0
        self.checkpoint_assets: Callable[[Path], None] | None = None
        self._watchdog = StepWatchdog(config.step_timeout_seconds, rank=self.context.rank)
        self._step_module: nn.Module | None = None
        # FSDP: the parameters kept replicated (log_scale, bias), whose gradients we average.
        self._replicated: list[nn.Parameter] | None = None
        self._resume_sharded = False
        self._resume_resharded = False
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
    def resume(self, checkpoint: str | os.PathLike[str], *, force: bool = False) -> None:
        """Continue from ``checkpoint`` on the next ``fit``; ``"auto"``: the run's newest one.

        An explicit checkpoint is verified now (manifest hashes, parameter names and shapes,
        world size) and refused if it fails. If it is the newest checkpoint of the run recorded
        in ``output_dir/run.json``, that run continues; any other checkpoint starts a new branch
        (a new run id whose parent is that checkpoint): the checkpoint itself is never deleted,
        checkpoints past it are moved to ``checkpoints/superseded-<run>/`` and the metrics are
        cut back to its step. ``"auto"`` picks the newest checkpoint of the current run that
        verifies, falling back (with a loud warning naming both) past corrupt ones, and starts
        fresh when the run has none.

        Changed hyperparameters are logged; changes that break exact continuation (``seed``,
        the ``data`` fields, the model's architecture, ``freeze``, ``loss.name``) are refused
        unless ``force``.

        Raises:
            CheckpointError: corrupt, incomplete or mismatched checkpoint.
        """
        self._force_resume = force
        if str(checkpoint) == "auto":
            self._resume_auto = True
            self._resume_from = None
            return
        directory = Path(checkpoint)
        verify_checkpoint(directory, self.model, self.context.world_size)
        self._resume_from = directory
        self._resume_auto = False

    def _verify(self, directory: Path) -> int:
        verify_checkpoint(directory, self.model, self.context.world_size)
        return int(read_manifest(directory, verify=False)["step"])

    def _plan(self) -> RunPlan:
        """Rank 0 decides how the run starts (and moves superseded files); every rank learns it."""
        plan: RunPlan | None = None
        if self.context.is_main:
            try:
                if self._resume_auto:
                    plan = plan_auto(self.output_dir, self._verify)
                elif self._resume_from is not None:
                    step = int(read_manifest(self._resume_from, verify=False)["step"])
                    plan = plan_explicit(self.output_dir, self._resume_from, step)
                else:
                    plan = plan_fresh(self.output_dir, overwrite=self._overwrite)
            except RunConflictError as error:
                failure: Exception = CheckpointError(str(error))
            else:
                failure = None  # type: ignore[assignment]
            if self.context.is_distributed:
                dist.broadcast_object_list([plan, str(failure) if failure else None], src=0)
            if failure is not None:
                raise failure
        else:
            shared: list[Any] = [None, None]
            dist.broadcast_object_list(shared, src=0)
            if shared[1] is not None:
                raise CheckpointError(shared[1])
            plan = shared[0]
        assert plan is not None
        return plan

    def _apply_resume(self) -> dict[str, Any] | None:
        plan = self._plan()
        self.run_id = plan.run_id
        self._logger.run_id = plan.run_id
        directory = plan.checkpoint
        self._resume_from = directory
        if directory is None:
            # A fresh start: records an earlier attempt wrote before it was killed (before its
            # first checkpoint) are not this run's history.
            if self.context.is_main:
                self._logger.truncate_after(0)
                write_run_file(self.output_dir, plan)
            return None
        if self.context.is_main:
            write_run_file(self.output_dir, plan)
        restored = restore_checkpoint(
            directory,
            model=self.model,
            batches=self.batches,
            rank=self.context.rank,
            world_size=self.context.world_size,
        )
        self._resume_sharded = restored.sharded
        self._resume_resharded = (
            int(restored.training_state.get("world_size", 1)) != self.context.world_size
        )
        self._check_changes(restored.training_state.get("config"), directory)
        self.step = restored.step
        self.batches_consumed = restored.batches_consumed
        self._train_seconds = float(restored.training_state.get("train_seconds", 0.0))
        self._last_saved_step = self.step if not plan.branch else -1
        self._last_checkpoint = directory
        superseded = (
            f"metrics.superseded-{plan.parent['run_id']}.jsonl"
            if plan.branch and plan.parent is not None
            else None
        )
        self._logger.truncate_after(self.step, keep_dropped_as=superseded)
        return restored.training_state

    # Fields whose change makes a resumed run differ from an uninterrupted one in a way the user
    # cannot have meant silently: the data order and content, the architecture, the parameter
    # groups, the objective.
    _EXACTNESS_FIELDS = ("seed", "freeze", "loss.name", "data.", "model.")
    _UNCOMPARED = ("output_dir", "logging.", "checkpoint.", "num_threads", "eval.")
    _HARMLESS = ("model.grad_checkpointing", "model.init_from", "data.max_bad_shards")

    def _check_changes(self, saved: Any, directory: Path) -> None:
        if not isinstance(saved, Mapping):
            return

        def flat(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
            out: dict[str, Any] = {}
            for key, value in mapping.items():
                if isinstance(value, Mapping):
                    out.update(flat(value, f"{prefix}{key}."))
                else:
                    out[f"{prefix}{key}"] = value
            return out

        before, now = flat(saved), flat(config_to_dict(self.config))
        changed = [
            (key, before.get(key), now.get(key))
            for key in sorted(set(before) | set(now))
            if before.get(key) != now.get(key) and not key.startswith(self._UNCOMPARED)
            and key in before
        ]  # fmt: skip
        if not changed:
            return
        lines = [f"  {key}: {old!r} -> {new!r}" for key, old, new in changed]
        if self.context.is_main:
            LOGGER.warning("resuming %s with a changed config:\n%s", directory, "\n".join(lines))
        breaking = [
            key
            for key, _, _ in changed
            if key.startswith(self._EXACTNESS_FIELDS) and key not in self._HARMLESS
        ]
        if breaking and not self._force_resume:
            raise CheckpointError(
                f"resuming {str(directory)!r} with changed {', '.join(breaking)} would not "
                "continue that run exactly (data order, data or architecture differ): keep "
                "the checkpoint's values, start a new run (another output_dir), or force it "
                "(--force-resume; Trainer.resume(..., force=True))"
            )

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
                if self.batches_consumed == 0:
                    raise ValueError(
                        f"the batch source ({type(self.batches).__name__}) yielded no batch"
                    ) from None
                raise ValueError(
                    f"the batch source ({type(self.batches).__name__}) ran out after "
                    f"{self.batches_consumed} batch(es) and cannot be restarted (a generator or "
                    f"iterator is consumed once), but the run needs {self.config.steps}: pass a "
                    "list or another re-iterable (each pass is an epoch), an endless generator, "
                    f"or set steps <= {self.batches_consumed}"
                ) from None
        self.batches_consumed += 1
        return batch

    def _setup(self) -> None:
        if self.optimizer is not None:
            return
        training_state = self._apply_resume()
        has_state = callable(getattr(self.batches, "state_dict", None))
        if training_state is not None and (not has_state or self._resume_resharded):
            # No loader state to restore: fast-forward a plain iterable to where it stopped.
            skip, self.batches_consumed = self.batches_consumed, 0
            for _ in range(skip):
                self._next_batch()
        self._peeked = self._next_batch()
        self.batches_consumed -= 1  # the peeked batch is consumed by the next step
        pixels, token_ids = batch_to_tensors(self._peeked, self.device)
        raw = self._peeked.get("pixels")  # None for a NaFlex batch (patches)
        if (
            isinstance(pixels, torch.Tensor)
            and getattr(raw, "dtype", None) not in (torch.uint8, np.uint8)
            and float(pixels.min()) >= 0
        ):
            warnings.warn(
                "the first batch's float pixels are all >= 0: images in [0, 1]? The model "
                "expects [-1, 1] (x * 2 - 1), or pass uint8 pixels, which are scaled for you",
                UserWarning,
                stacklevel=3,
            )
        self.image_parameter_names, self.text_parameter_names = tower_parameter_names(
            self._towers, pixels, token_ids
        )
        self._freeze()
        step_module = _TowerPair(
            self._towers,
            image_frozen=self.config.freeze == "image",
            text_frozen=self.config.freeze == "text",
        )
        if self.config.strategy == "fsdp":
            from siglip_train._fsdp import shard_two_towers

            # Before the optimizer: fully_shard replaces the parameters by sharded ones.
            self._replicated = shard_two_towers(
                step_module,
                self.model,
                device_type=self.device.type,
                autocast_dtype=self.autocast_dtype,
            )
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
        if training_state is not None and self._replicated is not None and not self._resume_sharded:
            raise CheckpointError(
                f"checkpoint {str(self._resume_from)!r} was written with strategy=ddp (whole "
                "weights, an optimizer state by parameter index); resuming it with "
                "strategy=fsdp is not supported: resume it with strategy=ddp, or start a new "
                f"FSDP run from its weights (model.init_from={str(self._resume_from)!r})"
            )
        if training_state is not None:
            try:
                if self._resume_sharded:
                    from siglip_train._dcp import SHARDED_DIRECTORY
                    from siglip_train._dcp import load_sharded

                    assert self._resume_from is not None
                    load_sharded(self._resume_from / SHARDED_DIRECTORY, self.model, self.optimizer)
                else:
                    self.optimizer.load_state_dict(training_state["optimizer"])
                self.scheduler.load_state_dict(training_state["scheduler"])
            except (ValueError, KeyError, RuntimeError) as error:
                raise CheckpointError(
                    f"optimizer state of {str(self._resume_from)!r} does not fit this run "
                    f"(different freeze or parameter groups?): {error}"
                ) from None
        if self._replicated is not None:
            self._step_module = step_module  # sharded in place above
        elif self.context.is_distributed:
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
        if self._replicated is not None:
            from siglip_train._fsdp import average_replicated_gradients
            from siglip_train._fsdp import clip_grad_norm

            average_replicated_gradients(self._replicated)
            grad_norm = clip_grad_norm(trainable, clip if clip > 0 else math.inf)
        else:
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
            if self._stop_signal is not None:
                # A second signal: the user does not want to wait for the step and the save.
                LOGGER.warning("second signal %d: exiting now, without a checkpoint", signum)
                if signum == signal.SIGINT:
                    raise KeyboardInterrupt
                raise SystemExit(128 + signum)
            self._stop_signal = signum
            LOGGER.warning(
                "signal %d: finishing step %d, saving a checkpoint, then exiting "
                "(send it again to exit at once)",
                signum,
                self.step + 1,
            )

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
            record: dict[str, Any] = {
                "loss": loss_value,
                "lr": lr,
                "scale": float(self._towers.log_scale.detach().exp()),
                "bias": float(self._towers.bias.detach()),
                "grad_norm": float(grad_norm),
                "samples_per_second": samples_per_second,
                "train_seconds": train_seconds,
            }
            skipped = self.skipped
            if skipped:
                record["skipped"] = skipped
            logger.log(self.step, record)
        logger.progress(loss=float(loss), lr=lr, samples_per_second=samples_per_second)
        return loss_value

    @property
    def skipped(self) -> dict[str, int]:
        """The batch source's skip counters (``{reason: count}``), when it keeps them."""
        counters = getattr(self.batches, "skipped", None)
        if not isinstance(counters, Mapping):
            return {}
        return {str(k): int(v) for k, v in counters.items() if int(v)}

    def _check_bad_shards(self) -> None:
        limit = getattr(self.batches, "max_bad_shards", None)
        if limit is None:
            return
        bad = self.skipped.get("unreadable_shard", 0)
        if bad > limit:
            raise ConfigError(
                f"{bad} shard(s) could not be read (missing, truncated or corrupt; the "
                f"siglip_data log names them) and data.max_bad_shards={limit}: the run stops "
                "rather than train on less data than configured. Fix the shards or raise "
                "data.max_bad_shards"
            )

    def _record_what_runs(self, batch: Mapping[str, Any]) -> None:
        """Write ``config.yaml`` as what runs: the observed batch shapes, and the model."""
        import dataclasses as dc

        config = self.config
        pixels, token_ids = batch_to_tensors(batch, torch.device("cpu"))
        # A NaFlex batch has patches of varying grids, no one image side: keep the configured one.
        if isinstance(pixels, torch.Tensor):
            rows, side = int(pixels.shape[0]), int(pixels.shape[-1])
        else:
            rows, side = int(pixels.patches.shape[0]), config.data.image_size
        data = dc.replace(
            config.data,
            batch_size=rows * self.context.world_size,
            image_size=side,
            text_length=int(token_ids.shape[-1]),
        )
        ran = dc.replace(config, data=data)
        parameters = sum(p.numel() for p in self.model.parameters())
        model_config = getattr(self.model, "config", None)
        header = [
            f"# run {self.run_id}: written by siglip_train.Trainer at the start of training.",
            f"# model: {type(self.model).__name__}, {parameters:,} parameters"
            + (f", {model_config!r}" if model_config is not None else ""),
            f"# batches: {type(self.batches).__name__}; data.batch_size, image_size and "
            "text_length below are the shapes of its first batch.",
        ]
        if not getattr(self.batches, "from_config", False):
            header.append(
                "# model.* and data.* other than those shapes describe how siglip-train train "
                "builds a model and batches; this run was given its own."
            )
        text = "\n".join(header) + "\n" + config_to_yaml(ran)
        from siglip_train._atomic import atomic_write_text

        atomic_write_text(self.output_dir / CONFIG_FILE, text)

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
            LOGGER.info("training config (run %s):\n%s", self.run_id, config_to_yaml(config))
            if self._peeked is not None:  # the first fit() of this trainer
                self._record_what_runs(self._peeked)
            if config.optimizer.warmup_steps >= config.steps:
                LOGGER.warning(
                    "optimizer.warmup_steps=%d >= steps=%d: the whole run is warmup (the lr never "
                    "reaches optimizer.lr); set optimizer.warmup_steps to a fraction of steps, "
                    "e.g. %d",
                    config.optimizer.warmup_steps,
                    config.steps,
                    max(1, config.steps // 10),
                )
        end_step = config.steps if max_steps is None else min(config.steps, self.step + max_steps)
        if config.logging.progress_bar:
            self._logger.open_progress(total=config.steps, initial=self.step)
        previous_handlers = self._install_signal_handlers()
        self._stop_signal = None
        train_seconds = self._train_seconds
        last_loss = math.nan
        eval_results: dict[str, float] = {}
        interrupted = False
        self._watchdog.start()
        try:
            while self.step < end_step:
                started = time.perf_counter()
                self._watchdog.beat(self.step)
                batch = self._next_batch()
                loss, grad_norm = self._train_step(batch)
                self.step += 1
                step_seconds = time.perf_counter() - started
                train_seconds += step_seconds
                self._train_seconds = train_seconds
                fault_point("step.end")
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
                    self._check_bad_shards()
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
            self._check_bad_shards()
            self.save_checkpoint()
            if self.context.is_main and self.config.checkpoint.keep_last > 0:
                # Also when nothing new was saved (a finished run resumed): keep_last holds.
                prune_checkpoints(
                    self.checkpoint_root, self.config.checkpoint.keep_last, self.run_id
                )
        finally:
            self._watchdog.stop()
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            self._logger.close()
        skipped = self.skipped
        if skipped and self.context.is_main:
            LOGGER.warning("the batch source skipped: %s (see the siglip_data log)", skipped)
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
        # FSDP: every rank holds a shard of the towers, so every rank runs eval_fn (its
        # forward passes gather the shards); rank 0 logs.
        everywhere = self._replicated is not None
        if self.eval_fn is not None and (self.context.is_main or everywhere):
            self._watchdog.pause()
            was_training = self.model.training
            self.model.eval()
            with torch.no_grad():
                results = {k: float(v) for k, v in self.eval_fn(self._towers).items()}
            self.model.train(was_training)
            if self.context.is_main:
                self._logger.log(self.step, results, kind="eval")
            self._watchdog.resume()
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
        self._watchdog.pause()
        try:
            return self._save_checkpoint()
        finally:
            self._watchdog.resume()

    def _sharded_saver(self) -> Callable[[Path], None] | None:
        if self._replicated is None:
            return None
        from siglip_train._dcp import save_sharded

        model, optimizer = self.model, self.optimizer
        assert optimizer is not None
        return lambda directory: save_sharded(directory, model, optimizer)

    def _save_checkpoint(self) -> Path:
        assert self.optimizer is not None
        assert self.scheduler is not None
        self._logger.sync()
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
            run_id=self.run_id,
            extra_state={"train_seconds": self._train_seconds, "strategy": self.config.strategy},
            write_assets=self.checkpoint_assets,
            save_sharded=self._sharded_saver(),
        )
        self._last_saved_step = self.step
        self._last_checkpoint = final
        return final
