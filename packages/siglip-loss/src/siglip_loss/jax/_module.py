"""The learnable shell around the functional JAX loss: a Flax NNX module owning scale and bias."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

try:
    from flax import nnx
except ModuleNotFoundError as error:  # siglip-loss[jax] alone: the functions need no Flax
    raise ModuleNotFoundError(
        "siglip_loss.jax.nnx.SigmoidLoss needs Flax: pip install 'siglip-loss[flax]'",
        name="flax",
    ) from error

from siglip_loss._validation import check_scalar
from siglip_loss.jax._api import sigmoid_loss


class SigmoidLoss(nnx.Module):
    r"""SigLIP's sigmoid loss with a learnable temperature and bias (Flax NNX).

    .. math::
        L = -\frac{1}{N} \sum_{i,j} \log \sigma\big(z_{ij}
        (e^{\text{log\_scale}} \langle x_i, y_j \rangle + \text{bias})\big)

    The module only owns the two parameters; calling it calls :func:`sigmoid_loss` with
    ``scale=exp(log_scale)``. The defaults are the paper's (big_vision ``temperature_init=10``,
    ``bias_init=-10``): ``log_scale = log 10`` and ``bias = -10``, which balances positives and
    negatives for a batch of about 22k (the balanced bias is ``-log(N - 1)``). The scale is not
    clamped.

    Args:
        log_scale_init: initial value of ``log_scale``, the log of the multiplier ``t``.
        bias_init: initial value of ``bias``.
        param_dtype: dtype of the two parameters.
        **loss_options: keyword arguments forwarded to :func:`sigmoid_loss` on every call
            (e.g. ``implementation=...``, ``block_size=...``).

    Attributes:
        log_scale: 0-d ``nnx.Param``.
        bias: 0-d ``nnx.Param``.

    Raises:
        ValueError: an init value is not finite.

    Reference: Zhai et al., "Sigmoid Loss for Language Image Pre-Training", arXiv:2303.15343.

    Examples:
        >>> import jax
        >>> from flax import nnx
        >>> from siglip_loss.jax import l2_normalize
        >>> from siglip_loss.jax.nnx import SigmoidLoss
        >>> loss_fn = SigmoidLoss()
        >>> round(float(loss_fn.scale), 4), float(loss_fn.bias[...])
        (10.0, -10.0)
        >>> image = l2_normalize(jax.random.normal(jax.random.key(0), (8, 16)))
        >>> text = l2_normalize(jax.random.normal(jax.random.key(1), (8, 16)))
        >>> grads = nnx.grad(lambda module: module(image, text))(loss_fn)
        >>> sorted(nnx.to_pure_dict(grads))
        ['bias', 'log_scale']
    """

    def __init__(
        self,
        *,
        log_scale_init: float = math.log(10.0),
        bias_init: float = -10.0,
        param_dtype: Any = jnp.float32,
        **loss_options: Any,
    ) -> None:
        check_scalar("log_scale_init", log_scale_init)
        check_scalar("bias_init", bias_init)
        self.log_scale = nnx.Param(jnp.asarray(log_scale_init, dtype=param_dtype))
        self.bias = nnx.Param(jnp.asarray(bias_init, dtype=param_dtype))
        self.loss_options = tuple(sorted(loss_options.items()))

    @property
    def scale(self) -> jax.Array:
        """The multiplier ``t = exp(log_scale)`` (0-d, differentiable)."""
        return jnp.exp(self.log_scale[...])

    def __call__(
        self,
        image_emb: jax.Array,
        text_emb: jax.Array,
        image_groups: jax.Array | None = None,
        text_groups: jax.Array | None = None,
    ) -> jax.Array:
        """The loss of a batch of matching pairs, or of images and texts with group ids.

        Args:
            image_emb: ``[batch, dim]`` image embeddings, used as given (normalise them first).
            text_emb: ``[batch, dim]`` text embeddings; row ``i`` is the caption of image ``i``
                (``[text_batch, dim]`` with groups).
            image_groups: ``[batch]`` integer group ids (see :func:`sigmoid_loss`), or None.
            text_groups: ``[text_batch]`` integer group ids, or None.

        Returns:
            0-d float32 array (float64 for float64 inputs with x64 enabled).
        """
        return sigmoid_loss(
            image_emb,
            text_emb,
            scale=self.scale,
            bias=self.bias[...],
            image_groups=image_groups,
            text_groups=text_groups,
            **dict(self.loss_options),
        )
