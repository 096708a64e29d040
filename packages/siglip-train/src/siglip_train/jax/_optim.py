"""The optax chain of the JAX trainer, step for step the torch trainer's AdamW.

``clip (torch's rule) -> per group: Adam, decoupled weight decay on weights only, lr schedule``;
groups are the image tower, the text tower, the rest (``log_scale``, ``bias``: their own lr
multiplier) and the frozen parameters (no update at all).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Mapping
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from siglip_train._common import NO_DECAY_NAME_PATTERNS
from siglip_train._config import OptimizerConfig

Params = Mapping[str, Any]
GROUPS = ("image", "text", "shared", "frozen")


def decays(name: str, ndim: int) -> bool:
    """Whether the parameter ``name`` (``/``-separated path) of rank ``ndim`` gets weight decay.

    The torch trainer's rule in Flax names: weight matrices and convolution kernels (rank >= 2)
    decay; token tables (``.../embedding`` of ``nnx.Embed``), position embeddings, the MAP
    probe, ``log_scale``, ``bias``, norms and biases do not.

    Examples:
        >>> from siglip_train.jax import decays
        >>> decays("text_model/head/kernel", 2), decays("text_model/head/bias", 1)
        (True, False)
        >>> decays("text_model/embeddings/token_embedding/embedding", 2)
        False
    """
    if ndim < 2 or name.rsplit("/", 1)[-1] == "embedding":
        return False
    dotted = name.replace("/", ".")
    return not any(re.search(pattern, dotted) for pattern in NO_DECAY_NAME_PATTERNS)


def warmup_cosine_schedule(
    peak: float, *, total_steps: int, warmup_steps: int, min_lr_ratio: float
) -> Callable[[jax.Array], jax.Array]:
    r"""``count -> peak * m(count)``, the torch trainer's multiplier as an optax schedule.

    .. math::
        m(s) = (s + 1) / w \ (s < w), \quad
        r + (1 - r) \tfrac{1}{2}\big(1 + \cos(\pi \min(1, \tfrac{s - w}{\max(1, T - w)}))\big)

    ``s`` is the 0-based index of the update about to be applied (optax's ``count``).

    Examples:
        >>> import jax.numpy as jnp
        >>> from siglip_train.jax import warmup_cosine_schedule
        >>> schedule = warmup_cosine_schedule(1.0, total_steps=100, warmup_steps=10, min_lr_ratio=0)
        >>> round(float(schedule(jnp.int32(0))), 6), float(schedule(jnp.int32(100)))
        (0.1, 0.0)
    """
    warmup = max(warmup_steps, 1)
    decay_steps = max(1, total_steps - warmup_steps)

    def schedule(count: jax.Array) -> jax.Array:
        step = jnp.asarray(count).astype(jnp.float32)
        warm = (step + 1.0) / warmup
        progress = jnp.clip((step - warmup_steps) / decay_steps, 0.0, 1.0)
        cosine = min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + jnp.cos(math.pi * progress))
        return peak * jnp.where(step < warmup_steps, warm, cosine)

    return schedule


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """Scale the updates by ``min(1, max_norm / (norm + 1e-6))``: ``torch.nn.utils.clip_grad_norm_``.

    optax's own ``clip_by_global_norm`` divides by ``norm`` (no ``1e-6``); this one matches the
    torch trainer to the last bit of the rule. ``max_norm <= 0`` disables clipping.
    """

    def init(params: Any) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        del params
        if max_norm <= 0:
            return updates, state
        norm = optax.tree.norm(updates)
        factor = jnp.minimum(1.0, max_norm / (norm + 1e-6))
        return jax.tree.map(lambda g: g * factor.astype(g.dtype), updates), state

    return optax.GradientTransformation(init, update)


class AdamState(NamedTuple):
    """Step count and the two moments of :func:`scale_by_adam`."""

    steps: jax.Array
    mu: Any
    nu: Any


def scale_by_adam(*, b1: float, b2: float, eps: float) -> optax.GradientTransformation:
    r"""Adam's direction, in ``torch.optim.AdamW``'s order of operations.

    .. math::
        m \leftarrow m + (1 - \beta_1)(g - m), \quad v \leftarrow \beta_2 v + (1 - \beta_2) g^2,
        \quad u = \frac{m / (1 - \beta_1^t)}{\sqrt{v} / \sqrt{1 - \beta_2^t} + \epsilon}

    (optax's ``scale_by_adam`` is the same up to rounding; this one also works under
    ``jax_numpy_dtype_promotion=strict``, where optax raises on ``float ** int32``.)
    """

    def init(params: Any) -> AdamState:
        zeros = jax.tree.map(jnp.zeros_like, params)
        return AdamState(jnp.zeros([], jnp.int32), zeros, jax.tree.map(jnp.zeros_like, params))

    def update(updates: Any, state: Any, params: Any = None) -> tuple[Any, AdamState]:
        del params
        count = state.steps + 1
        mu = jax.tree.map(lambda m, g: m + (1.0 - b1) * (g - m), state.mu, updates)
        nu = jax.tree.map(lambda v, g: b2 * v + (1.0 - b2) * g * g, state.nu, updates)
        steps = count.astype(jnp.float32)
        correction1 = 1.0 - jnp.float32(b1) ** steps
        correction2_sqrt = jnp.sqrt(1.0 - jnp.float32(b2) ** steps)
        direction = jax.tree.map(
            lambda m, v: (m / (jnp.sqrt(v) / correction2_sqrt + eps)) / correction1, mu, nu
        )
        return direction, AdamState(count, mu, nu)

    return optax.GradientTransformation(init, update)


def parameter_groups(
    names: Collection[str],
    *,
    image_names: Collection[str],
    text_names: Collection[str],
    frozen_names: Collection[str],
) -> dict[str, str]:
    """name -> ``"image"``, ``"text"``, ``"shared"`` (in neither or both towers) or ``"frozen"``."""
    groups = {}
    for name in names:
        in_image, in_text = name in image_names, name in text_names
        if name in frozen_names:
            groups[name] = "frozen"
        elif in_image and not in_text:
            groups[name] = "image"
        elif in_text and not in_image:
            groups[name] = "text"
        else:
            groups[name] = "shared"
    return groups


def build_optimizer(
    config: OptimizerConfig,
    params: Params,
    *,
    groups: Mapping[str, str],
    total_steps: int,
) -> optax.GradientTransformation:
    """The optax chain for ``config``: clip, then AdamW per group with its lr multiplier.

    Each group's update is ``-lr(t) * (adam(g) + weight_decay * w)`` (PyTorch ``AdamW`` units;
    decay only where :func:`decays`), ``lr(t) = config.lr * multiplier * m(t)`` with
    :func:`warmup_cosine_schedule`; frozen parameters get an update of exactly zero.

    Args:
        config: the optimizer section of the ``TrainConfig``.
        params: flat ``{name: array}`` (only shapes are read).
        groups: name -> group (:func:`parameter_groups`).
        total_steps: the run's ``steps`` (the cosine ends there).

    Returns:
        An ``optax.GradientTransformation`` over flat ``{name: array}`` trees.
    """
    multipliers = {
        "image": config.image_lr_multiplier,
        "text": config.text_lr_multiplier,
        "shared": config.logit_lr_multiplier,
    }
    decay = {name for name, value in params.items() if decays(name, len(value.shape))}

    def decay_mask(tree: Mapping[str, Any]) -> dict[str, bool]:
        return {name: name in decay for name in tree}

    transforms: dict[str, optax.GradientTransformation] = {"frozen": optax.set_to_zero()}
    for group, multiplier in multipliers.items():
        schedule = warmup_cosine_schedule(
            config.lr * multiplier,
            total_steps=total_steps,
            warmup_steps=config.warmup_steps,
            min_lr_ratio=config.min_lr_ratio,
        )
        transforms[group] = optax.chain(
            scale_by_adam(b1=config.beta1, b2=config.beta2, eps=config.eps),
            optax.add_decayed_weights(config.weight_decay, mask=decay_mask),
            optax.scale_by_learning_rate(schedule),
        )
    return optax.chain(
        clip_by_global_norm(config.grad_clip),
        optax.multi_transform(transforms, dict(groups)),
    )
