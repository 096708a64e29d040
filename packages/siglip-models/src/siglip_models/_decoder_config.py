"""Shape of the SigLIP 2 text decoder (LocCa / CapPa captioning head), framework-free."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from siglip_models._config import SiglipConfig
from siglip_models._config import _check_heads
from siglip_models._config import _check_positive_ints


@dataclasses.dataclass(frozen=True)
class TextDecoderConfig:
    """Shape of the text decoder trained next to the sigmoid loss (SigLIP 2's LocCa decoder).

    Pre-LN blocks of self-attention, cross-attention to the un-pooled image tokens and an MLP;
    learned positions; a final LayerNorm and a linear head to the vocabulary. The input table has
    two rows beyond the vocabulary, never predicted: :attr:`mask_id` (``vocab_size``), the input
    of every position in parallel prediction (CapPa's extra row, so no tokenizer needs a mask
    token), and :attr:`begin_id` (``vocab_size + 1``), the input of position 0 in causal mode
    (the targets are shifted right inside the decoder).

    Args:
        vocab_size: rows of the output head (the tokenizer's vocabulary, 256000 for Gemma).
        max_length: the longest decoder sequence (learned positions).
        width: token width (the text tower's).
        depth: number of decoder blocks (half the text tower's).
        num_heads: attention heads (self- and cross-attention).
        mlp_dim: hidden width of every MLP.
        image_width: width of the image tokens attended to; projected to ``width`` by a linear
            layer when it differs.
        parallel_probability: the chance that :meth:`SiglipTextDecoder.sample_parallel` picks
            parallel prediction for an example (SigLIP 2: 0.5, for the caption target).
        layer_norm_eps: epsilon of every LayerNorm.

    Examples:
        >>> from siglip_models import TextDecoderConfig
        >>> config = TextDecoderConfig(
        ...     vocab_size=100,
        ...     max_length=16,
        ...     width=32,
        ...     depth=1,
        ...     num_heads=2,
        ...     mlp_dim=64,
        ...     image_width=48,
        ... )
        >>> config.mask_id, config.begin_id, config.input_vocab_size
        (100, 101, 102)
    """

    vocab_size: int
    max_length: int
    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    image_width: int
    parallel_probability: float = 0.5
    layer_norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        _check_positive_ints(
            "TextDecoderConfig",
            vocab_size=self.vocab_size,
            max_length=self.max_length,
            width=self.width,
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            image_width=self.image_width,
        )
        _check_heads("TextDecoderConfig", self.width, self.num_heads)
        probability = self.parallel_probability
        if isinstance(probability, bool) or not (
            isinstance(probability, int | float) and 0.0 <= probability <= 1.0
        ):
            raise ValueError(
                f"TextDecoderConfig.parallel_probability must be a float in [0, 1], got {probability!r}"
            )

    @property
    def mask_id(self) -> int:
        """The input id of every position in parallel prediction (``vocab_size``)."""
        return self.vocab_size

    @property
    def begin_id(self) -> int:
        """The input id of position 0 in causal mode (``vocab_size + 1``)."""
        return self.vocab_size + 1

    @property
    def input_vocab_size(self) -> int:
        """Rows of the input token table: the vocabulary, the mask token and the begin token."""
        return self.vocab_size + 2

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.width // self.num_heads

    def num_parameters(self) -> int:
        """Parameters of the decoder, embeddings, projection and head included."""
        width, mlp = self.width, self.mlp_dim
        embeddings = self.input_vocab_size * width + self.max_length * width
        projection = 0 if self.image_width == width else self.image_width * width + width
        attention = 4 * (width * width + width)
        block = 3 * 2 * width + 2 * attention + width * mlp + mlp + mlp * width + width
        head = width * self.vocab_size + self.vocab_size
        return embeddings + projection + self.depth * block + 2 * width + head

    @classmethod
    def from_siglip(
        cls, config: SiglipConfig, *, max_length: int | None = None, **changes: Any
    ) -> TextDecoderConfig:
        """The decoder SigLIP 2 trains with a model: the text tower's width, heads, MLP and
        vocabulary, half its depth (rounded down, at least 1: So400m's 27 gives 13; the paper's
        rounding is not published), cross-attending to the image tower's tokens.

        Args:
            config: the two-tower config.
            max_length: the decoder's longest sequence (default: the text tower's ``max_length``).
            **changes: any other field to override (e.g. ``parallel_probability=0.75``).

        Returns:
            The decoder config.

        Examples:
            >>> from siglip_models import TextDecoderConfig, get_config
            >>> decoder = TextDecoderConfig.from_siglip(get_config("siglip2-base-patch16-256"))
            >>> decoder.depth, decoder.width, decoder.vocab_size, decoder.image_width
            (6, 768, 256000, 768)
        """
        if not isinstance(config, SiglipConfig):
            raise TypeError(
                f"TextDecoderConfig.from_siglip: config must be a SiglipConfig, got {type(config).__name__}"
            )
        text = config.text
        fields: dict[str, Any] = {
            "vocab_size": text.vocab_size,
            "max_length": text.max_length if max_length is None else max_length,
            "width": text.width,
            "depth": max(1, math.floor(text.depth / 2)),
            "num_heads": text.num_heads,
            "mlp_dim": text.mlp_dim,
            "image_width": config.vision.width,
            "layer_norm_eps": text.layer_norm_eps,
        }
        fields.update(changes)
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable); :meth:`from_dict` reads it back."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextDecoderConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)
