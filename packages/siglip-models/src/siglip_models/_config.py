"""Typed configurations of the two towers and the registry of released shapes."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any


def _check_positive_ints(owner: str, **values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{owner}.{name} must be a positive int, got {value!r}")


def _check_heads(owner: str, width: int, num_heads: int) -> None:
    if width % num_heads != 0:
        raise ValueError(
            f"{owner}.width ({width}) must be divisible by {owner}.num_heads ({num_heads})"
        )


def _encoder_parameters(width: int, depth: int, mlp_dim: int) -> int:
    """Parameters of `depth` pre-LN blocks: two LayerNorms, q/k/v/out with bias, a 2-layer MLP."""
    layer_norms = 2 * 2 * width
    attention = 4 * (width * width + width)
    mlp = width * mlp_dim + mlp_dim + mlp_dim * width + width
    return depth * (layer_norms + attention + mlp)


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """Shape of the image tower: a ViT with a learned position embedding and a MAP head.

    Args:
        image_size: side of the square input image in pixels (e.g. 224).
        patch_size: side of a square patch; the conv uses VALID padding, so only
            ``(image_size // patch_size) * patch_size`` pixels per side are seen.
        width: token width D (768 for B).
        depth: number of encoder blocks.
        num_heads: attention heads (also used by the MAP head).
        mlp_dim: hidden width of every MLP (encoder blocks and MAP head).
        layer_norm_eps: epsilon of every LayerNorm (1e-6 in all released models).
        naflex: a SigLIP 2 NaFlex tower: a linear patch embedding on flattened patches and a
            learned ``grid_size x grid_size`` position grid resized to each image's patch grid
            (native aspect ratio, variable sequence length). ``image_size`` is then
            ``grid_size * patch_size`` (256 for the released 16x16 grid of 16-pixel patches);
            inputs need not have that size (see ``encode_image_naflex``).

    Examples:
        >>> from siglip_models import VisionConfig
        >>> VisionConfig(
        ...     image_size=224, patch_size=16, width=768, depth=12, num_heads=12, mlp_dim=3072
        ... ).num_patches
        196
    """

    image_size: int
    patch_size: int
    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    layer_norm_eps: float = 1e-6
    naflex: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.naflex, bool):
            raise ValueError(f"VisionConfig.naflex must be a bool, got {self.naflex!r}")
        _check_positive_ints(
            "VisionConfig",
            image_size=self.image_size,
            patch_size=self.patch_size,
            width=self.width,
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
        )
        _check_heads("VisionConfig", self.width, self.num_heads)
        if self.patch_size > self.image_size:
            raise ValueError(
                f"VisionConfig.patch_size ({self.patch_size}) must not exceed "
                f"image_size ({self.image_size})"
            )

    @property
    def grid_size(self) -> int:
        """Patches per side: ``image_size // patch_size``."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Tokens entering the encoder (no class token): ``grid_size ** 2``."""
        return self.grid_size**2

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.width // self.num_heads

    def num_parameters(self) -> int:
        """Parameters of the tower, MAP head included (the count Hugging Face reports).

        The patch conv (fixed resolution) and the NaFlex linear patch embedding hold the same
        ``3 * patch_size**2 * width + width`` numbers.
        """
        width = self.width
        patch = 3 * self.patch_size**2 * width + width
        position = self.num_patches * width
        encoder = _encoder_parameters(width, self.depth, self.mlp_dim)
        final_norm = 2 * width
        map_head = (
            width  # probe
            + 3 * width * width
            + 3 * width  # packed q/k/v
            + width * width
            + width  # out projection
            + 2 * width  # LayerNorm
            + width * self.mlp_dim
            + self.mlp_dim
            + self.mlp_dim * width
            + width
        )
        return patch + position + encoder + final_norm + map_head


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """Shape of the text tower: token + position embedding, unmasked encoder, last-token head.

    Args:
        vocab_size: rows of the token table (32000 SigLIP English, 250000 i18n, 256000 SigLIP 2).
        max_length: the trained text length L; inputs must be padded to exactly L, because the
            pooled token is position L-1.
        width: token width.
        depth: number of encoder blocks.
        num_heads: attention heads.
        mlp_dim: hidden width of every MLP.
        embed_dim: output width of the linear head (the shared embedding width).
        pad_id: id the tokenizer pads with (1 for SigLIP, 0 for SigLIP 2); recorded for tokenizers
            and written to ``config.json``, not used by the model itself.
        layer_norm_eps: epsilon of every LayerNorm.

    Examples:
        >>> from siglip_models import TextConfig
        >>> TextConfig(
        ...     vocab_size=32000,
        ...     max_length=64,
        ...     width=768,
        ...     depth=12,
        ...     num_heads=12,
        ...     mlp_dim=3072,
        ...     embed_dim=768,
        ... ).head_dim
        64
    """

    vocab_size: int
    max_length: int
    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    embed_dim: int
    pad_id: int = 1
    layer_norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        _check_positive_ints(
            "TextConfig",
            vocab_size=self.vocab_size,
            max_length=self.max_length,
            width=self.width,
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            embed_dim=self.embed_dim,
        )
        _check_heads("TextConfig", self.width, self.num_heads)
        if not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(
                f"TextConfig.pad_id must be in [0, vocab_size={self.vocab_size}), got {self.pad_id}"
            )

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.width // self.num_heads

    def num_parameters(self) -> int:
        """Parameters of the tower, token table and head included."""
        width = self.width
        embeddings = self.vocab_size * width + self.max_length * width
        encoder = _encoder_parameters(width, self.depth, self.mlp_dim)
        final_norm = 2 * width
        head = width * self.embed_dim + self.embed_dim
        return embeddings + encoder + final_norm + head


@dataclasses.dataclass(frozen=True)
class SiglipConfig:
    """A two-tower SigLIP model: image tower, text tower and the learnable logit scale and bias.

    The image embedding is the MAP-head output (width ``vision.width``, no projection); the text
    head maps to ``text.embed_dim``, so the two must be equal.

    Args:
        vision: the image tower.
        text: the text tower.
        log_scale_init: initial ``log_scale``, the natural log of the logit scale t, for training
            from scratch (``math.log(10)``, SigLIP paper 4.8). Was ``init_log_scale``.
        bias_init: initial logit bias for training from scratch (-10). Was ``init_bias``.
        lowercase: whether the tokenizer must lowercase the text (True for every release).

    Raises:
        ValueError: if ``text.embed_dim != vision.width``.

    Examples:
        >>> from siglip_models import get_config
        >>> get_config("siglip-base-patch16-224").embed_dim
        768
    """

    vision: VisionConfig
    text: TextConfig
    log_scale_init: float = math.log(10.0)
    bias_init: float = -10.0
    lowercase: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.vision, VisionConfig):
            raise TypeError(
                f"SiglipConfig.vision must be a VisionConfig, got {type(self.vision).__name__}"
            )
        if not isinstance(self.text, TextConfig):
            raise TypeError(
                f"SiglipConfig.text must be a TextConfig, got {type(self.text).__name__}"
            )
        if self.text.embed_dim != self.vision.width:
            raise ValueError(
                "SiglipConfig: text.embed_dim must equal vision.width (the image embedding is the "
                f"MAP output, unprojected), got text.embed_dim={self.text.embed_dim} and "
                f"vision.width={self.vision.width}"
            )

    @property
    def embed_dim(self) -> int:
        """Width of the shared embedding space."""
        return self.vision.width

    def num_parameters(self) -> int:
        """All parameters: both towers plus ``log_scale`` and ``bias``."""
        return self.vision.num_parameters() + self.text.num_parameters() + 2

    def replace(self, **changes: Any) -> SiglipConfig:
        """A copy with fields replaced; ``vision``/``text`` may be dicts of their own fields.

        Examples:
            >>> from siglip_models import get_config
            >>> get_config("siglip-base-patch16-224").replace(
            ...     vision={"image_size": 384}
            ... ).vision.image_size
            384
        """
        for tower in ("vision", "text"):
            if isinstance(changes.get(tower), dict):
                changes[tower] = dataclasses.replace(getattr(self, tower), **changes[tower])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SiglipConfig:
        """Inverse of :meth:`to_dict`; also reads dicts saved with the old field names.

        Args:
            data: a dict from :meth:`to_dict` (``init_log_scale`` / ``init_bias`` are read as
                ``log_scale_init`` / ``bias_init``).

        Returns:
            The config.
        """
        fields = rename_legacy_fields(data)
        fields["vision"] = VisionConfig(**fields["vision"])
        fields["text"] = TextConfig(**fields["text"])
        return cls(**fields)


# Field names before the one-name-per-concept rename; saved files may still carry them.
_LEGACY_FIELDS = {"init_log_scale": "log_scale_init", "init_bias": "bias_init"}


def rename_legacy_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with the old field names renamed (a new name present wins)."""
    fields = dict(data)
    for old, new in _LEGACY_FIELDS.items():
        if old in fields:
            value = fields.pop(old)
            fields.setdefault(new, value)
    return fields


# Tower shapes of bv `decode_variant` (width, depth, mlp_dim, num_heads).
_VARIANTS: dict[str, tuple[int, int, int, int]] = {
    "B": (768, 12, 3072, 12),
    "L": (1024, 24, 4096, 16),
    "So400m": (1152, 27, 4304, 16),
    "g-opt": (1536, 40, 6144, 16),
}

_REGISTRY: dict[str, SiglipConfig] = {}


def _released(
    image: str,
    patch: int,
    resolution: int,
    *,
    text: str,
    vocab_size: int,
    pad_id: int,
    max_length: int = 64,
    embed_dim: int | None = None,
    naflex: bool = False,
) -> SiglipConfig:
    image_width, image_depth, image_mlp, image_heads = _VARIANTS[image]
    text_width, text_depth, text_mlp, text_heads = _VARIANTS[text]
    return SiglipConfig(
        vision=VisionConfig(
            image_size=resolution,
            patch_size=patch,
            width=image_width,
            depth=image_depth,
            num_heads=image_heads,
            mlp_dim=image_mlp,
            naflex=naflex,
        ),
        text=TextConfig(
            vocab_size=vocab_size,
            max_length=max_length,
            width=text_width,
            depth=text_depth,
            num_heads=text_heads,
            mlp_dim=text_mlp,
            embed_dim=embed_dim if embed_dim is not None else image_width,
            pad_id=pad_id,
        ),
    )


def register_config(name: str, config: SiglipConfig, *, overwrite: bool = False) -> None:
    """Register ``config`` under ``name`` so that :func:`get_config` finds it.

    Args:
        name: registry key (released shapes use the Hugging Face Hub names without ``google/``).
        config: the configuration.
        overwrite: allow replacing an existing entry with a different config.

    Raises:
        TypeError: if ``config`` is not a :class:`SiglipConfig`.
        ValueError: if ``name`` is taken by a different config and ``overwrite`` is False.

    Examples:
        >>> from siglip_models import get_config, register_config
        >>> register_config("my-tiny", get_config("tiny-test"))
        >>> get_config("my-tiny") == get_config("tiny-test")
        True
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_config: name must be a non-empty str, got {name!r}")
    if not isinstance(config, SiglipConfig):
        raise TypeError(
            f"register_config: config must be a SiglipConfig, got {type(config).__name__}"
        )
    existing = _REGISTRY.get(name)
    if existing is not None and existing != config and not overwrite:
        raise ValueError(
            f"register_config: {name!r} is already registered with a different config; "
            "pass overwrite=True to replace it"
        )
    _REGISTRY[name] = config


def get_config(name: str) -> SiglipConfig:
    """The registered configuration called ``name``.

    Raises:
        KeyError: naming the unknown name and listing the known ones.

    Examples:
        >>> from siglip_models import get_config
        >>> get_config("siglip-so400m-patch14-224").text.max_length
        16
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"get_config: unknown config {name!r}; registered: {known}") from None


def list_configs() -> list[str]:
    """Sorted names of every registered configuration.

    Returns:
        The names :func:`get_config` accepts: every released shape and the tiny test configs.

    Examples:
        >>> from siglip_models import list_configs
        >>> "siglip2-base-patch16-224" in list_configs()
        True
    """
    return sorted(_REGISTRY)


def _register_released() -> None:
    # SigLIP (v1): English c4 SentencePiece 32k (pad = EOS = 1); i18n mC4 250k.
    for resolution in (224, 256, 384, 512):
        register_config(
            f"siglip-base-patch16-{resolution}",
            _released("B", 16, resolution, text="B", vocab_size=32000, pad_id=1),
        )
    register_config(
        "siglip-base-patch16-256-multilingual",
        _released("B", 16, 256, text="B", vocab_size=250000, pad_id=1),
    )
    for resolution in (256, 384):
        register_config(
            f"siglip-large-patch16-{resolution}",
            _released("L", 16, resolution, text="L", vocab_size=32000, pad_id=1),
        )
    register_config(
        "siglip-so400m-patch14-224",
        _released("So400m", 14, 224, text="So400m", vocab_size=32000, pad_id=1, max_length=16),
    )
    register_config(
        "siglip-so400m-patch14-384",
        _released("So400m", 14, 384, text="So400m", vocab_size=32000, pad_id=1),
    )
    # No text head in big_vision; checkpoints on disk carry it as an identity (HF conversion).
    register_config(
        "siglip-so400m-patch16-256-i18n",
        _released("So400m", 16, 256, text="So400m", vocab_size=250000, pad_id=1),
    )
    # SigLIP 2 (fixed resolution): Gemma 256k vocabulary, pad 0, EOS 1.
    siglip2: dict[str, Any] = {"vocab_size": 256000, "pad_id": 0}
    register_config("siglip2-base-patch32-256", _released("B", 32, 256, text="B", **siglip2))
    for resolution in (224, 256, 384, 512):
        register_config(
            f"siglip2-base-patch16-{resolution}",
            _released("B", 16, resolution, text="B", **siglip2),
        )
    for resolution in (256, 384, 512):
        register_config(
            f"siglip2-large-patch16-{resolution}",
            _released("L", 16, resolution, text="L", **siglip2),
        )
    for resolution in (224, 384):
        register_config(
            f"siglip2-so400m-patch14-{resolution}",
            _released("So400m", 14, resolution, text="So400m", **siglip2),
        )
    for resolution in (256, 384, 512):
        register_config(
            f"siglip2-so400m-patch16-{resolution}",
            _released("So400m", 16, resolution, text="So400m", **siglip2),
        )
    for resolution in (256, 384):
        register_config(
            f"siglip2-giant-opt-patch16-{resolution}",
            _released("g-opt", 16, resolution, text="So400m", embed_dim=1536, **siglip2),
        )
    # SigLIP 2 NaFlex: a 16x16 position grid of 16-pixel patches (image_size 256 = 16 * 16).
    register_config(
        "siglip2-base-patch16-naflex",
        _released("B", 16, 256, text="B", naflex=True, **siglip2),
    )
    register_config(
        "siglip2-so400m-patch16-naflex",
        _released("So400m", 16, 256, text="So400m", naflex=True, **siglip2),
    )
    # Toy shapes for tests and demos: every code path of the real models, milliseconds per step.
    register_config(
        "tiny-test",
        SiglipConfig(
            vision=VisionConfig(
                image_size=32, patch_size=8, width=32, depth=2, num_heads=4, mlp_dim=37
            ),
            text=TextConfig(
                vocab_size=100,
                max_length=16,
                width=32,
                depth=2,
                num_heads=4,
                mlp_dim=37,
                embed_dim=32,
                pad_id=1,
            ),
        ),
    )
    register_config(
        "tiny-test-text-head",
        SiglipConfig(
            vision=VisionConfig(
                image_size=28, patch_size=7, width=48, depth=2, num_heads=3, mlp_dim=64
            ),
            text=TextConfig(
                vocab_size=64,
                max_length=8,
                width=24,
                depth=1,
                num_heads=2,
                mlp_dim=40,
                embed_dim=48,
                pad_id=0,
            ),
        ),
    )

    # NaFlex toy: a 4x4 position grid of 4-pixel patches (48 numbers a patch), SigLIP 2 text.
    register_config(
        "tiny-test-naflex",
        SiglipConfig(
            vision=VisionConfig(
                image_size=16,
                patch_size=4,
                width=32,
                depth=2,
                num_heads=4,
                mlp_dim=37,
                naflex=True,
            ),
            text=TextConfig(
                vocab_size=100,
                max_length=16,
                width=32,
                depth=2,
                num_heads=4,
                mlp_dim=37,
                embed_dim=32,
                pad_id=0,
            ),
        ),
    )


_register_released()
