"""The JAX trainer: one jitted step over a ``(data, fsdp)`` mesh, the loss by the ring."""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from siglip_loss.jax import l2_normalize
from siglip_loss.jax import sharded_sigmoid_loss
from siglip_loss.jax import softmax_loss
from siglip_train._common import CheckpointError
from siglip_train._common import TrainResult
from siglip_train._common import warmup_cosine_multiplier
from siglip_train._config import ConfigError
from siglip_train._config import TrainConfig
from siglip_train._config import config_to_dict
from siglip_train._config import save_config
from siglip_train._config import validate_config
from siglip_train._logging import LOGGER
from siglip_train._logging import MetricsLogger
from siglip_train.jax._checkpoint import CHECKPOINT_DIR
from siglip_train.jax._checkpoint import OrbaxCheckpoints
from siglip_train.jax._checkpoint import check_shapes
from siglip_train.jax._mesh import BATCH_AXES
from siglip_train.jax._mesh import batch_sharding
from siglip_train.jax._mesh import make_mesh
from siglip_train.jax._mesh import parameter_shardings
from siglip_train.jax._mesh import replicated
from siglip_train.jax._optim import build_optimizer
from siglip_train.jax._optim import parameter_groups

EvalFunction = Callable[[Any], Mapping[str, float]]
Params = dict[str, jax.Array]


def _ring_loss(mesh: Mesh) -> Callable[..., jax.Array]:
    """The sigmoid loss of the batch sharded over every device: the ``ppermute`` ring.

    Each device holds ``[batch / devices, dim]`` embeddings and one visiting text shard at a
    time; nothing of size ``local x global`` exists (``siglip_loss.jax.sharded_sigmoid_loss``).
    """
    rows, whole = PartitionSpec(BATCH_AXES), PartitionSpec()

    def per_device(
        image: jax.Array, text: jax.Array, scale: jax.Array, bias: jax.Array
    ) -> jax.Array:
        return sharded_sigmoid_loss(image, text, scale=scale, bias=bias, axis_name=BATCH_AXES)

    loss: Callable[..., jax.Array] = jax.shard_map(
        per_device, mesh=mesh, in_specs=(rows, rows, whole, whole), out_specs=whole
    )
    return loss


class JaxTrainer:
    """Train a Flax NNX two-tower model on a device mesh, step for step the torch ``Trainer``.

    The model is any ``nnx.Module`` with ``encode_image`` (NHWC pixels), ``encode_text``,
    ``log_scale`` and ``bias`` (``siglip_models.flax.SiglipModel``); the batches any iterable of
    ``{"pixels", "token_ids"}`` (numpy or JAX; uint8 or [-1, 1] float NHWC pixels), each
    process's share of the global batch (``siglip_data.jax.JaxImageTextLoader`` works). An
    iterable with ``state_dict()``/``load_state_dict()`` resumes exactly; another is
    fast-forwarded.

    Each step is one ``jax.jit`` program: the towers run on the batch split over every device of
    the mesh, the sigmoid loss is the ring of ``siglip_loss.jax.sharded_sigmoid_loss`` over the
    whole batch axis, and the optax chain of :func:`build_optimizer` (the torch trainer's AdamW,
    schedule, clipping, lr multipliers and frozen towers) updates the parameters, which live
    sharded by the :func:`fsdp_partition_spec` rule (``config.mesh``).

    Args:
        model: the model; its parameters are copied onto the mesh (``model`` itself is not
            updated: :meth:`model` returns the trained one).
        batches: the batch source.
        config: the run configuration (the torch trainer's ``TrainConfig``).
        mesh: the device mesh (default ``make_mesh(fsdp=config.mesh.fsdp)``).
        eval_fn: ``eval_fn(model) -> {name: value}`` on process 0 every
            ``config.eval.every_steps`` steps and at the end.
        overwrite: start fresh in an ``output_dir`` that holds checkpoints (deleting them).

    Raises:
        TypeError: ``model`` is not an ``nnx.Module`` following the two-tower protocol.
        ConfigError: an invalid config, ``mesh.fsdp`` that does not fit the devices, or an
            option the JAX trainer does not have (``loss.positives`` other than diagonal).

    Examples:
        >>> import shutil, tempfile
        >>> import numpy as np
        >>> from siglip_models.flax import SiglipModel
        >>> from siglip_train import TrainConfig, apply_overrides
        >>> from siglip_train.jax import JaxTrainer
        >>> rng = np.random.default_rng(0)
        >>> batches = [
        ...     {
        ...         "pixels": rng.uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32),
        ...         "token_ids": rng.integers(0, 100, (8, 16)),
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
        >>> result = JaxTrainer(SiglipModel("tiny-test"), batches, config).fit()
        >>> result.step, result.interrupted, result.checkpoint.name
        (2, False, 'step_000000002')
        >>> shutil.rmtree(config.output_dir)
    """

    def __init__(
        self,
        model: Any,
        batches: Any,
        config: TrainConfig,
        *,
        mesh: Mesh | None = None,
        eval_fn: EvalFunction | None = None,
        overwrite: bool = False,
    ) -> None:
        for attribute in ("encode_image", "encode_text", "log_scale", "bias"):
            if not hasattr(model, attribute):
                raise TypeError(
                    f"model must follow the two-tower protocol (encode_image, encode_text, "
                    f"log_scale, bias); {type(model).__name__} has no {attribute!r}"
                )
        if not isinstance(model, nnx.Module):
            raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
        validate_config(config)
        if config.loss.positives != "diagonal":
            raise ConfigError(
                "config field 'loss.positives' must be 'diagonal' for the JAX trainer (several "
                f"positives per row are in the torch trainer only), got {config.loss.positives!r}"
            )
        if config.precision == "bf16":
            raise ConfigError(
                "config field 'precision' must be 'auto' or 'fp32' for the JAX trainer (it trains "
                "in float32; bf16 autocast is in the torch trainer only), got 'bf16'"
            )
        if mesh is None:
            try:
                mesh = make_mesh(fsdp=config.mesh.fsdp)
            except ValueError as error:
                raise ConfigError(f"config field 'mesh.fsdp': {error}") from None
        self.config = config
        self.mesh = mesh
        self.batches = batches
        self.eval_fn = eval_fn
        self.output_dir = Path(config.output_dir)
        self.is_main = jax.process_index() == 0
        split: Any = nnx.split(model, nnx.Param, ...)
        self._graphdef: Any = split[0]
        self._rest: Any = split[2]
        params_state = split[1]
        self._template = nnx.to_flat_state(params_state)
        self.names = ["/".join(str(part) for part in path) for path, _ in self._template]
        host = {name: var.get_value() for name, (_, var) in zip(self.names, self._template)}
        self.param_shardings = parameter_shardings(
            host, mesh, min_shard_bytes=config.mesh.min_shard_bytes
        )
        self.params: Params = {
            name: jax.device_put(jnp.asarray(value), self.param_shardings[name])
            for name, value in host.items()
        }
        self.step = 0
        self.batches_consumed = 0
        self.rng = jax.random.key(config.seed)
        self.opt_state: Any = None
        self.frozen_names: set[str] = set()
        self.groups: dict[str, str] = {}
        self._overwrite = overwrite
        self._resume: str | Path | None = None
        self._train_seconds = 0.0
        self._iterator: Iterator[Mapping[str, Any]] | None = None
        self._peeked: Mapping[str, Any] | None = None
        self._stop_signal: int | None = None
        self._step_fn: Any = None
        self._last_checkpoint: Path | None = None
        self._last_saved_step = -1
        self._checkpoints: OrbaxCheckpoints | None = None
        self._logger = MetricsLogger(
            self.output_dir, enabled=self.is_main, tensorboard=config.logging.tensorboard
        )
        if config.model.grad_checkpointing:
            setter = getattr(model, "set_gradient_checkpointing", None)
            if not callable(setter):
                raise ConfigError(
                    "model.grad_checkpointing=true needs a model with "
                    f"set_gradient_checkpointing(enabled); {type(model).__name__} has none"
                )
            setter(True)
            self._graphdef = nnx.split(model, nnx.Param, ...)[0]

    # ------------------------------------------------------------------------- the model
    def _merge(self, params: Mapping[str, jax.Array]) -> Any:
        flat = [
            (path, variable.replace(params[name]))
            for name, (path, variable) in zip(self.names, self._template)
        ]
        return nnx.merge(self._graphdef, nnx.from_flat_state(flat), self._rest)

    def model(self) -> Any:
        """The model with the current parameters (gathered onto this host)."""
        host = {name: _to_host(value) for name, value in self.params.items()}
        return self._merge({name: jnp.asarray(value) for name, value in host.items()})

    def export(self, path: str | Path) -> Path:
        """Write the current model as an HF-layout directory (``config.json`` +
        ``model.safetensors``) that ``siglip_models.torch``/``flax`` and transformers load.

        Needs a model with ``save_pretrained`` (``siglip_models.flax.SiglipModel``). Every
        process must call it (the parameters are gathered); process 0 writes.
        """
        model = self.model()
        if self.is_main:
            model.save_pretrained(path)
        return Path(path)

    # --------------------------------------------------------------------------- batches
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
            self._iterator = iter(self.batches)  # a finite source: the next epoch
            try:
                batch = next(self._iterator)
            except StopIteration:
                raise ValueError(
                    f"the batch source ({type(self.batches).__name__}) yielded no batch after "
                    f"{self.batches_consumed}: pass a re-iterable or an endless source"
                ) from None
        self.batches_consumed += 1
        return batch

    def _place(self, batch: Mapping[str, Any]) -> dict[str, jax.Array]:
        """This process's rows -> global arrays split over every device of the mesh."""
        from siglip_data import normalize_uint8_pixels

        if "patch_mask" in batch or "spatial_shapes" in batch:
            raise ValueError(
                "batch: a NaFlex batch (patch_mask, spatial_shapes); the JAX trainer takes fixed "
                "resolution NHWC pixels, NaFlex training is in the torch trainer only"
            )
        if "pixels" not in batch or "token_ids" not in batch:
            raise KeyError(
                f"batch: expected the keys 'pixels' and 'token_ids', got {sorted(batch)}"
            )
        pixels = np.asarray(batch["pixels"])
        token_ids = np.asarray(batch["token_ids"]).astype(np.int32)
        if pixels.ndim != 4 or pixels.shape[-1] != 3:
            raise ValueError(
                f"batch['pixels']: expected NHWC [batch, height, width, 3], got shape "
                f"{pixels.shape}"
            )
        pixels = (
            normalize_uint8_pixels(pixels)
            if pixels.dtype == np.uint8
            else pixels.astype(np.float32)
        )
        rows = pixels.shape[0] * jax.process_count()
        devices = self.mesh.devices.size
        if rows % devices:
            raise ValueError(
                f"batch: expected a global batch divisible by the {devices} devices of the "
                f"mesh, got {rows} rows ({pixels.shape[0]} per process x "
                f"{jax.process_count()} process(es)); set data.batch_size to a multiple of "
                f"{devices}"
            )
        sharding = batch_sharding(self.mesh)
        return {
            "pixels": jax.make_array_from_process_local_data(sharding, pixels),
            "token_ids": jax.make_array_from_process_local_data(sharding, token_ids),
        }

    # ----------------------------------------------------------------------------- setup
    def _tower_names(self, batch: Mapping[str, jax.Array]) -> tuple[set[str], set[str]]:
        """Which parameters each tower reads: the inputs its traced program (jaxpr) uses.

        Tracing costs no compilation; it works for any model following the protocol, whatever
        its attribute names (a parameter both towers read is in both sets).
        """
        pixels = jax.ShapeDtypeStruct((1, *batch["pixels"].shape[1:]), batch["pixels"].dtype)
        token_ids = jax.ShapeDtypeStruct(
            (1, *batch["token_ids"].shape[1:]), batch["token_ids"].dtype
        )
        abstract = {n: jax.ShapeDtypeStruct(v.shape, v.dtype) for n, v in self.params.items()}
        found = []
        for method, inputs in (("encode_image", pixels), ("encode_text", token_ids)):

            def encode(params: Params, inputs: jax.Array, method: str = method) -> jax.Array:
                return getattr(self._merge(params), method)(inputs)  # type: ignore[no-any-return]

            closed = jax.make_jaxpr(encode)(abstract, inputs)
            jaxpr = closed.jaxpr
            read = {id(var) for eqn in jaxpr.eqns for var in eqn.invars}
            read |= {id(var) for var in jaxpr.outvars}
            param_vars = jaxpr.invars[: len(self.names)]
            order = sorted(abstract)  # jax flattens a dict in sorted key order
            found.append({name for name, var in zip(order, param_vars) if id(var) in read})
        return found[0], found[1]

    def _setup(self) -> None:
        if self._step_fn is not None:
            return
        config = self.config
        self._checkpoints = OrbaxCheckpoints(
            self.output_dir / CHECKPOINT_DIR, keep_last=config.checkpoint.keep_last
        )
        resume_step = self._resume_step()
        self._peeked = self._next_batch()
        self.batches_consumed -= 1
        first = self._place(self._peeked)
        image_names, text_names = self._tower_names(first)
        frozen: set[str] = set()
        if config.freeze == "image":
            frozen = image_names - text_names
        elif config.freeze == "text":
            frozen = text_names - image_names
        if config.freeze != "none" and not frozen:
            raise ConfigError(
                f"freeze={config.freeze!r} but no parameter belongs only to that tower"
            )
        if config.loss.name == "softmax":
            frozen.add("bias")  # CLIP's softmax has no bias (as in the torch trainer)
        self.frozen_names = frozen
        self.groups = parameter_groups(
            self.names, image_names=image_names, text_names=text_names, frozen_names=frozen
        )
        self.tx = build_optimizer(
            config.optimizer, self.params, groups=self.groups, total_steps=config.steps
        )
        abstract = jax.eval_shape(self.tx.init, self.params)
        self.opt_shardings = self._opt_shardings(abstract)
        self.opt_state = jax.jit(self.tx.init, out_shardings=self.opt_shardings)(self.params)
        if resume_step is not None:
            self._restore(resume_step)
        self._step_fn = self._build_step()

    def _opt_shardings(self, abstract: Any) -> Any:
        """Optimizer-state leaves shaped like a parameter are sharded like it; others replicated."""
        shapes = {name: tuple(value.shape) for name, value in self.params.items()}

        def sharding_of(path: Any, leaf: Any) -> NamedSharding:
            keys = [entry.key for entry in path if isinstance(entry, jax.tree_util.DictKey)]
            for key in reversed(keys):
                if key in shapes and shapes[key] == tuple(leaf.shape):
                    return self.param_shardings[key]
            return replicated(self.mesh)

        return jax.tree_util.tree_map_with_path(sharding_of, abstract)

    def _build_step(self) -> Any:
        config = self.config
        frozen = frozenset(self.frozen_names)
        image_frozen, text_frozen = config.freeze == "image", config.freeze == "text"
        ring = _ring_loss(self.mesh) if config.loss.name == "sigmoid" else None
        tx = self.tx

        def loss_of(params: Params, batch: Mapping[str, jax.Array]) -> jax.Array:
            model = self._merge(params)
            image = model.encode_image(batch["pixels"])
            text = model.encode_text(batch["token_ids"])
            # A frozen tower runs forward only: XLA drops its backward pass.
            image = jax.lax.stop_gradient(image) if image_frozen else image
            text = jax.lax.stop_gradient(text) if text_frozen else text
            image = l2_normalize(image.astype(jnp.float32))
            text = l2_normalize(text.astype(jnp.float32))
            scale = jnp.exp(model.log_scale[...].astype(jnp.float32))
            bias = model.bias[...].astype(jnp.float32)
            if ring is not None:
                return ring(image, text, scale, bias)
            return softmax_loss(image, text, scale=scale)

        def step(
            params: Params, opt_state: Any, batch: Mapping[str, jax.Array]
        ) -> tuple[Params, Any, dict[str, jax.Array]]:
            loss, grads = jax.value_and_grad(loss_of)(params, batch)
            grads = {n: jnp.zeros_like(g) if n in frozen else g for n, g in grads.items()}
            grad_norm = optax.tree.norm(grads)
            updates, opt_state = tx.update(grads, opt_state, params)
            updated = optax.apply_updates(params, updates)
            # Frozen parameters are passed through untouched: bit for bit the loaded values.
            params = {n: params[n] if n in frozen else updated[n] for n in params}
            model = self._merge(params)
            metrics = {
                "loss": loss,
                "grad_norm": grad_norm,
                "scale": jnp.exp(model.log_scale[...].astype(jnp.float32)),
                "bias": model.bias[...].astype(jnp.float32),
            }
            return params, opt_state, metrics

        whole = replicated(self.mesh)
        rows = batch_sharding(self.mesh)
        return jax.jit(
            step,
            in_shardings=(self.param_shardings, self.opt_shardings, rows),
            out_shardings=(self.param_shardings, self.opt_shardings, whole),
            donate_argnums=(0, 1),
        )

    # ------------------------------------------------------------------------ checkpoints
    def resume(self, checkpoint: str | Path = "auto") -> None:
        """Continue on the next ``fit`` from ``checkpoint`` (a ``step_<N>`` directory of this
        run) or, with ``"auto"``, from the newest checkpoint in ``output_dir`` (a fresh start
        when there is none). The mesh may differ from the saving run's."""
        self._resume = checkpoint

    def _resume_step(self) -> int | None:
        assert self._checkpoints is not None
        steps = self._checkpoints.steps()
        if self._resume is None:
            if steps and not self._overwrite:
                raise CheckpointError(
                    f"output_dir {str(self.output_dir)!r} holds checkpoints {steps}: resume "
                    "(--resume auto), choose another output_dir, or overwrite (--overwrite)"
                )
            for step in steps:
                self._checkpoints.manager.delete(step)
            if self.is_main:
                self._logger.truncate_after(0)
            return None
        if str(self._resume) == "auto":
            return steps[-1] if steps else None
        directory = Path(self._resume).absolute()
        matching = [step for step in steps if self._checkpoints.path(step) == directory]
        if not matching:
            raise CheckpointError(
                f"resume: expected a checkpoint of {str(self._checkpoints.root)!r} (steps "
                f"{steps}), got {str(self._resume)!r}"
            )
        return matching[0]

    def _restore(self, step: int) -> None:
        assert self._checkpoints is not None
        source = str(self._checkpoints.path(step))
        meta = self._checkpoints.read_meta(step)
        shapes = {name: list(value.shape) for name, value in self.params.items()}
        check_shapes(meta["param_shapes"], shapes, source=source)
        abstract_params = {
            name: jax.ShapeDtypeStruct(
                value.shape, value.dtype, sharding=self.param_shardings[name]
            )
            for name, value in self.params.items()
        }
        abstract_opt = jax.tree.map(
            lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
            self.opt_state,
            self.opt_shardings,
        )
        self.params, self.opt_state = self._checkpoints.restore(
            step, params=abstract_params, opt_state=abstract_opt
        )
        self.step = int(meta["step"])
        self.batches_consumed = int(meta["batches_consumed"])
        self._train_seconds = float(meta.get("train_seconds", 0.0))
        self.rng = jax.random.wrap_key_data(jnp.asarray(meta["rng"], jnp.uint32))
        data_state = meta.get("data")
        load_state = getattr(self.batches, "load_state_dict", None)
        peeked = self._peeked
        if data_state is not None and callable(load_state):
            load_state(data_state)
            self._iterator = None
            self._peeked = None
        else:
            # No loader state: fast-forward a plain iterable past the consumed batches.
            self._iterator, self._peeked, skip = None, None, self.batches_consumed
            self.batches_consumed = 0
            for _ in range(skip):
                self._next_batch()
        del peeked
        self._last_saved_step = self.step
        self._last_checkpoint = self._checkpoints.path(step)
        self._logger.truncate_after(self.step)
        if self.is_main:
            LOGGER.info("resumed from %s (step %d)", source, self.step)

    def save_checkpoint(self) -> Path:
        """Write the checkpoint of the current step (every process calls it); its directory."""
        self._setup()
        assert self._checkpoints is not None
        if self._last_saved_step == self.step and self._last_checkpoint is not None:
            return self._last_checkpoint
        self._logger.sync()
        state_dict = getattr(self.batches, "state_dict", None)
        meta = {
            "step": self.step,
            "batches_consumed": self.batches_consumed,
            "data": state_dict() if callable(state_dict) else None,
            "rng": np.asarray(jax.random.key_data(self.rng)).tolist(),
            "train_seconds": self._train_seconds,
            "config": config_to_dict(self.config),
            "param_shapes": {name: list(value.shape) for name, value in self.params.items()},
            "mesh": dict(self.mesh.shape),
        }
        path = self._checkpoints.save(
            self.step, params=self.params, opt_state=self.opt_state, meta=meta
        )
        self._last_saved_step = self.step
        self._last_checkpoint = path
        return path

    # -------------------------------------------------------------------------------- fit
    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def request_stop(signum: int, frame: Any) -> None:
            del frame
            if self._stop_signal is not None:
                LOGGER.warning("second signal %d: exiting now, without a checkpoint", signum)
                if signum == signal.SIGINT:
                    raise KeyboardInterrupt
                raise SystemExit(128 + signum)
            self._stop_signal = signum
            LOGGER.warning(
                "signal %d: finishing step %d, saving a checkpoint, then exiting",
                signum,
                self.step + 1,
            )

        return {
            signum: signal.signal(signum, request_stop)
            for signum in (signal.SIGTERM, signal.SIGINT)
        }

    def _lr_of_step(self, step: int) -> float:
        optimizer = self.config.optimizer
        return optimizer.lr * warmup_cosine_multiplier(
            step,
            total_steps=self.config.steps,
            warmup_steps=optimizer.warmup_steps,
            min_lr_ratio=optimizer.min_lr_ratio,
        )

    def _should_stop(self, local_stop: bool) -> bool:
        if jax.process_count() == 1:
            return local_stop
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(np.asarray([local_stop], np.int32))
        return bool(np.max(flags))

    def fit(self, *, max_steps: int | None = None) -> TrainResult:
        """Train until ``config.steps`` (or ``max_steps`` more steps in this call).

        Stops early, after saving a checkpoint, on SIGTERM/SIGINT or after
        ``config.max_seconds``. Writes ``metrics.jsonl`` (and TensorBoard) records like the
        torch trainer, a checkpoint every ``checkpoint.every_steps`` and at the end.

        Returns:
            ``siglip_train.TrainResult``.
        """
        self._setup()
        assert self._checkpoints is not None
        config = self.config
        if self.is_main:
            save_config(config, self.output_dir / "config.yaml")
        end_step = config.steps if max_steps is None else min(config.steps, self.step + max_steps)
        if config.logging.progress_bar:
            self._logger.open_progress(total=config.steps, initial=self.step)
        previous_handlers = self._install_signal_handlers()
        self._stop_signal = None
        last_loss = math.nan
        eval_results: dict[str, float] = {}
        interrupted = False
        try:
            while self.step < end_step:
                started = time.perf_counter()
                batch = self._place(self._next_batch())
                self.rng, _ = jax.random.split(self.rng)
                self.params, self.opt_state, metrics = self._step_fn(
                    self.params, self.opt_state, batch
                )
                loss = float(metrics["loss"])  # waits for the step
                self.step += 1
                step_seconds = time.perf_counter() - started
                self._train_seconds += step_seconds
                last_loss = loss
                rows = int(batch["token_ids"].shape[0])
                samples_per_second = rows / max(step_seconds, 1e-9)
                lr = self._lr_of_step(self.step - 1)
                if self.step % config.logging.every_steps == 0 or self.step == end_step:
                    self._logger.log(
                        self.step,
                        {
                            "loss": loss,
                            "lr": lr,
                            "scale": float(metrics["scale"]),
                            "bias": float(metrics["bias"]),
                            "grad_norm": float(metrics["grad_norm"]),
                            "samples_per_second": samples_per_second,
                            "train_seconds": self._train_seconds,
                        },
                    )
                self._logger.progress(loss=loss, lr=lr, samples_per_second=samples_per_second)
                if config.eval.every_steps and self.step % config.eval.every_steps == 0:
                    eval_results = self.evaluate()
                out_of_time = bool(config.max_seconds and self._train_seconds >= config.max_seconds)
                if self._should_stop(self._stop_signal is not None or out_of_time):
                    interrupted = True
                    break
                every = config.checkpoint.every_steps
                if every and self.step % every == 0 and self.step < end_step:
                    self.save_checkpoint()
            if self.step < config.steps:
                interrupted = True
            evaluated_now = bool(config.eval.every_steps) and (
                self.step % config.eval.every_steps == 0
            )
            if self.eval_fn is not None and not interrupted and not evaluated_now:
                eval_results = self.evaluate()
            checkpoint = self.save_checkpoint()
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            self._logger.close()
        if self._stop_signal is not None:
            LOGGER.warning(
                "stopped by signal %d at step %d; checkpoint %s",
                self._stop_signal,
                self.step,
                checkpoint,
            )
        return TrainResult(
            step=self.step,
            interrupted=interrupted,
            train_seconds=self._train_seconds,
            last_loss=last_loss,
            checkpoint=checkpoint,
            eval=eval_results,
        )

    @property
    def stop_signal(self) -> int | None:
        """The signal that stopped the last ``fit`` (``None``: it was not a signal)."""
        return self._stop_signal

    def evaluate(self) -> dict[str, float]:
        """Run ``eval_fn`` on the current model (process 0) and log its results."""
        results: dict[str, float] = {}
        if self.eval_fn is None:
            return results
        model = self.model()
        if self.is_main:
            results = {k: float(v) for k, v in self.eval_fn(model).items()}
            self._logger.log(self.step, results, kind="eval")
        return results


def _to_host(value: jax.Array) -> np.ndarray:
    """The whole array on this host (gathered from other processes when needed)."""
    if value.is_fully_addressable:
        return np.asarray(jax.device_get(value))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(value, tiled=True))
