"""The learnable shell around the functional torch loss: it owns ``log_scale`` and ``bias``."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from siglip_loss._validation import check_scalar
from siglip_loss.torch._api import sigmoid_loss


class SigmoidLoss(nn.Module):
    r"""SigLIP's sigmoid loss with a learnable temperature and bias.

    .. math::
        L = -\frac{1}{N} \sum_{i,j} \log \sigma\big(z_{ij}
        (e^{\text{log\_scale}} \langle x_i, y_j \rangle + \text{bias})\big)

    The module only owns the two parameters; ``forward`` calls :func:`sigmoid_loss` with
    ``scale=exp(log_scale)``. The defaults are the paper's: ``log_scale = log 10`` and
    ``bias = -10``, which balances positives and negatives for a batch of about 22k
    (the balanced bias is ``-log(N - 1)``); pass ``bias_init=-math.log(batch - 1)`` for small
    batches. The scale is not clamped (big_vision does not clamp; released checkpoints reach
    ``scale`` of about 112).

    Args:
        log_scale_init: initial value of ``log_scale``, the log of the multiplier ``t``.
        bias_init: initial value of ``bias``.
        **loss_options: keyword arguments forwarded to :func:`sigmoid_loss` on every call
            (e.g. ``implementation=...``, ``block_size=...``).

    Attributes:
        log_scale: 0-d float32 ``nn.Parameter``.
        bias: 0-d float32 ``nn.Parameter``.

    Raises:
        ValueError: an init value is not finite.

    Reference: Zhai et al., "Sigmoid Loss for Language Image Pre-Training", arXiv:2303.15343.

    Examples:
        >>> import torch
        >>> from siglip_loss.torch import SigmoidLoss, l2_normalize
        >>> _ = torch.manual_seed(0)
        >>> loss_fn = SigmoidLoss()
        >>> round(loss_fn.scale.item(), 4), loss_fn.bias.item()
        (10.0, -10.0)
        >>> image, text = l2_normalize(torch.randn(8, 16)), l2_normalize(torch.randn(8, 16))
        >>> loss = loss_fn(image, text)
        >>> loss.backward()
        >>> loss_fn.log_scale.grad is not None and loss_fn.bias.grad is not None
        True
    """

    def __init__(
        self,
        *,
        log_scale_init: float = math.log(10.0),
        bias_init: float = -10.0,
        **loss_options: Any,
    ) -> None:
        super().__init__()
        check_scalar("log_scale_init", log_scale_init)
        check_scalar("bias_init", bias_init)
        self.log_scale_init = float(log_scale_init)
        self.bias_init = float(bias_init)
        self.loss_options = dict(loss_options)
        self.log_scale = nn.Parameter(torch.tensor(self.log_scale_init, dtype=torch.float32))
        self.bias = nn.Parameter(torch.tensor(self.bias_init, dtype=torch.float32))

    @property
    def scale(self) -> torch.Tensor:
        """The multiplier ``t = exp(log_scale)`` (0-d, differentiable)."""
        return self.log_scale.exp()

    def reset_parameters(self) -> None:
        """Set ``log_scale`` and ``bias`` back to their init values."""
        with torch.no_grad():
            self.log_scale.fill_(self.log_scale_init)
            self.bias.fill_(self.bias_init)

    def forward(
        self,
        image_emb: torch.Tensor,
        text_emb: torch.Tensor,
        image_groups: torch.Tensor | None = None,
        text_groups: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The loss of a batch of matching pairs, or of images and texts with group ids.

        Args:
            image_emb: ``[batch, dim]`` image embeddings, used as given (normalise them first).
            text_emb: ``[batch, dim]`` text embeddings; row ``i`` is the caption of image ``i``
                (``[text_batch, dim]`` with groups).
            image_groups: ``[batch]`` integer group ids (see :func:`sigmoid_loss`), or None.
            text_groups: ``[text_batch]`` integer group ids, or None.

        Returns:
            0-d float32 tensor (float64 for float64 inputs).
        """
        return sigmoid_loss(
            image_emb,
            text_emb,
            scale=self.scale,
            bias=self.bias,
            image_groups=image_groups,
            text_groups=text_groups,
            **self.loss_options,
        )

    def extra_repr(self) -> str:
        options = "".join(f", {key}={value!r}" for key, value in self.loss_options.items())
        return f"log_scale_init={self.log_scale_init:.6g}, bias_init={self.bias_init:.6g}{options}"
