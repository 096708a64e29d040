"""big_vision two-tower ``.npz`` checkpoints (``vit`` and ``naflex_vit`` image towers) ->
Hugging Face-layout numpy arrays (model-spec 5.3)."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from siglip_models._atomic import atomic_write
from siglip_models._config import SiglipConfig
from siglip_models._config import TextConfig
from siglip_models._config import VisionConfig
from siglip_models._config import get_config
from siglip_models._config import list_configs
from siglip_models._layout import CheckpointError
from siglip_models._layout import hf_parameter_shapes
from siglip_models._layout import validate_parameter_shapes

_PREFIXES = ("params/", "opt/target/")
_STACKED = re.compile(r"^(?P<tower>img/Transformer|txt/Encoder_0)/encoderblock/(?P<rest>.+)$")
_LAYER = re.compile(r"^(img/Transformer|txt/Encoder_0)/encoderblock_(\d+)/")


def _to_float32(array: np.ndarray) -> np.ndarray:
    """bfloat16 arrays come out of ``np.load`` as 2-byte void; widen them bit-exactly."""
    if array.dtype.kind == "V" and array.dtype.itemsize == 2:
        bits = array.view(np.uint16).astype(np.uint32) << 16
        return bits.view(np.float32)
    if array.dtype.kind != "f":
        raise CheckpointError(f"expected floating-point arrays, got dtype {array.dtype}")
    return array.astype(np.float32, copy=False)


def _load_flat(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        raw = {key: archive[key] for key in archive.files}
    for prefix in _PREFIXES:
        if raw and all(key.startswith(prefix) for key in raw):
            raw = {key[len(prefix) :]: value for key, value in raw.items()}
            break
    else:
        # Optimizer state or other trees next to params: keep only params.
        if any(key.startswith("params/") for key in raw):
            raw = {k[len("params/") :]: v for k, v in raw.items() if k.startswith("params/")}
    flat: dict[str, np.ndarray] = {}
    for key, value in raw.items():
        value = _to_float32(value)
        stacked = _STACKED.match(key)
        if stacked:  # scan layout: one array with a leading depth axis
            for index in range(value.shape[0]):
                flat[f"{stacked['tower']}/encoderblock_{index}/{stacked['rest']}"] = value[index]
        else:
            flat[key] = value
    # Legacy big_vision text towers kept a second position embedding inside the encoder.
    legacy = flat.pop("txt/Encoder_0/pos_embedding", None)
    if legacy is not None and "txt/pos_embedding" in flat:
        flat["txt/pos_embedding"] = flat["txt/pos_embedding"] + legacy
    return flat


def _depth(flat: dict[str, np.ndarray], tower: str) -> int:
    indices = {int(m[2]) for key in flat if (m := _LAYER.match(key)) and m[1] == tower}
    if indices != set(range(len(indices))):
        raise CheckpointError(f"{tower}: encoder blocks are not numbered 0..n-1: {sorted(indices)}")
    return len(indices)


def _need(flat: dict[str, np.ndarray], key: str, source: str) -> np.ndarray:
    if key not in flat:
        raise CheckpointError(f"{source}: missing big_vision key {key!r}")
    return flat[key]


def _infer_config(flat: dict[str, np.ndarray], source: str) -> SiglipConfig:
    patch_kernel = _need(flat, "img/embedding/kernel", source)
    naflex = patch_kernel.ndim == 2  # naflex_vit: Dense on flattened (py, px, c) patches
    if naflex:
        patch = math.isqrt(patch_kernel.shape[0] // 3)
        if 3 * patch * patch != patch_kernel.shape[0]:
            raise CheckpointError(
                f"{source}: img/embedding/kernel has shape {patch_kernel.shape}; a NaFlex kernel "
                "must be [3 * patch**2, width]"
            )
        width = patch_kernel.shape[1]
    elif patch_kernel.ndim == 4:
        patch, width = patch_kernel.shape[0], patch_kernel.shape[3]
    else:
        raise CheckpointError(
            f"{source}: img/embedding/kernel has shape {patch_kernel.shape}; expected a 4-D conv "
            "kernel (fixed resolution) or a 2-D Dense kernel (NaFlex)"
        )
    num_patches = _need(flat, "img/pos_embedding", source).reshape(-1, width).shape[0]
    grid = math.isqrt(num_patches)
    if grid * grid != num_patches:
        raise CheckpointError(
            f"{source}: img/pos_embedding has {num_patches} positions, not square"
        )
    block = "img/Transformer/encoderblock_0"
    query = _need(flat, f"{block}/MultiHeadDotProductAttention_0/query/kernel", source)
    mlp = _need(flat, f"{block}/MlpBlock_0/Dense_0/kernel", source)
    vision = VisionConfig(
        image_size=grid * patch,
        patch_size=patch,
        width=width,
        depth=_depth(flat, "img/Transformer"),
        num_heads=query.shape[1],
        mlp_dim=mlp.shape[1],
        naflex=naflex,
    )
    token_table = _need(flat, "txt/Embed_0/embedding", source)
    vocab_size, text_width = token_table.shape
    text_query = _need(
        flat, "txt/Encoder_0/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel", source
    )
    text_mlp = _need(flat, "txt/Encoder_0/encoderblock_0/MlpBlock_0/Dense_0/kernel", source)
    head = flat.get("txt/head/kernel")
    text = TextConfig(
        vocab_size=vocab_size,
        max_length=_need(flat, "txt/pos_embedding", source).reshape(-1, text_width).shape[0],
        width=text_width,
        depth=_depth(flat, "txt/Encoder_0"),
        num_heads=text_query.shape[1],
        mlp_dim=text_mlp.shape[1],
        embed_dim=head.shape[1] if head is not None else text_width,
        pad_id=0 if vocab_size == 256000 else 1,  # Gemma <pad> for SigLIP 2, EOS for SigLIP
    )
    inferred = SiglipConfig(vision=vision, text=text)
    # Prefer a registered release with these exact shapes: it knows the nominal resolution
    # (So400m/14 at 384 sees 378 pixels) and the family's pad id.
    shapes = hf_parameter_shapes(inferred)
    matches = {
        get_config(name)
        for name in list_configs()
        if hf_parameter_shapes(get_config(name)) == shapes
    }
    return matches.pop() if len(matches) == 1 else inferred


def _dense(kernel: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(kernel.T)


def _attention_in(kernel: np.ndarray) -> np.ndarray:
    """``(D, H, hd)`` -> torch ``(H*hd, D)``."""
    return np.ascontiguousarray(kernel.reshape(kernel.shape[0], -1).T)


def _attention_out(kernel: np.ndarray) -> np.ndarray:
    """``(H, hd, D)`` -> torch ``(D, H*hd)``."""
    return np.ascontiguousarray(kernel.reshape(-1, kernel.shape[-1]).T)


def _flatten(array: np.ndarray) -> np.ndarray:
    return array.reshape(-1)


def _rows(array: np.ndarray) -> np.ndarray:
    return array.reshape(-1, array.shape[-1])


def _identity(array: np.ndarray) -> np.ndarray:
    return array


def _conv_kernel(kernel: np.ndarray) -> np.ndarray:
    """``(p, p, 3, D)`` HWIO -> torch ``(D, 3, p, p)``; a NaFlex ``(p*p*3, D)`` Dense -> ``(D, p*p*3)``."""
    if kernel.ndim == 2:
        return _dense(kernel)
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))


def _mapping(config: SiglipConfig) -> dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]]:
    """HF key -> (big_vision key, transform) for every parameter except the packed MAP q/k/v."""
    table: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
        "logit_scale": ("t", _flatten),
        "logit_bias": ("b", _flatten),
        "vision_model.embeddings.patch_embedding.weight": ("img/embedding/kernel", _conv_kernel),
        "vision_model.embeddings.patch_embedding.bias": ("img/embedding/bias", _identity),
        "vision_model.embeddings.position_embedding.weight": ("img/pos_embedding", _rows),
        "vision_model.post_layernorm.weight": ("img/Transformer/encoder_norm/scale", _identity),
        "vision_model.post_layernorm.bias": ("img/Transformer/encoder_norm/bias", _identity),
        "vision_model.head.probe": ("img/MAPHead_0/probe", _identity),
        "vision_model.head.attention.out_proj.weight": (
            "img/MAPHead_0/MultiHeadDotProductAttention_0/out/kernel",
            _attention_out,
        ),
        "vision_model.head.attention.out_proj.bias": (
            "img/MAPHead_0/MultiHeadDotProductAttention_0/out/bias",
            _identity,
        ),
        "vision_model.head.layernorm.weight": ("img/MAPHead_0/LayerNorm_0/scale", _identity),
        "vision_model.head.layernorm.bias": ("img/MAPHead_0/LayerNorm_0/bias", _identity),
        "text_model.embeddings.token_embedding.weight": ("txt/Embed_0/embedding", _identity),
        "text_model.embeddings.position_embedding.weight": ("txt/pos_embedding", _rows),
        "text_model.final_layer_norm.weight": ("txt/Encoder_0/encoder_norm/scale", _identity),
        "text_model.final_layer_norm.bias": ("txt/Encoder_0/encoder_norm/bias", _identity),
        "text_model.head.weight": ("txt/head/kernel", _dense),
        "text_model.head.bias": ("txt/head/bias", _identity),
    }
    for index in (0, 1):
        for kind, transform in (("kernel", _dense), ("bias", _identity)):
            hf_kind = "weight" if kind == "kernel" else "bias"
            table[f"vision_model.head.mlp.fc{index + 1}.{hf_kind}"] = (
                f"img/MAPHead_0/MlpBlock_0/Dense_{index}/{kind}",
                transform,
            )
    towers = (
        ("vision_model", "img/Transformer", config.vision.depth),
        ("text_model", "txt/Encoder_0", config.text.depth),
    )
    for hf_tower, bv_tower, depth in towers:
        for layer in range(depth):
            hf = f"{hf_tower}.encoder.layers.{layer}"
            bv = f"{bv_tower}/encoderblock_{layer}"
            for number in (1, 2):
                norm = f"{bv}/LayerNorm_{number - 1}"
                table[f"{hf}.layer_norm{number}.weight"] = (f"{norm}/scale", _identity)
                table[f"{hf}.layer_norm{number}.bias"] = (f"{norm}/bias", _identity)
            attention = f"{bv}/MultiHeadDotProductAttention_0"
            for projection, name in (("q_proj", "query"), ("k_proj", "key"), ("v_proj", "value")):
                table[f"{hf}.self_attn.{projection}.weight"] = (
                    f"{attention}/{name}/kernel",
                    _attention_in,
                )
                table[f"{hf}.self_attn.{projection}.bias"] = (f"{attention}/{name}/bias", _flatten)
            table[f"{hf}.self_attn.out_proj.weight"] = (f"{attention}/out/kernel", _attention_out)
            table[f"{hf}.self_attn.out_proj.bias"] = (f"{attention}/out/bias", _identity)
            for index in (0, 1):
                dense = f"{bv}/MlpBlock_0/Dense_{index}"
                table[f"{hf}.mlp.fc{index + 1}.weight"] = (f"{dense}/kernel", _dense)
                table[f"{hf}.mlp.fc{index + 1}.bias"] = (f"{dense}/bias", _identity)
    return table


def read_big_vision_npz(
    path: str | os.PathLike[str], config: SiglipConfig | None = None
) -> tuple[SiglipConfig, dict[str, np.ndarray]]:
    """Read a big_vision two-tower checkpoint into Hugging Face key names and layouts.

    Fixed-resolution (``models/vit.py``: conv patch kernel ``(p, p, 3, D)``, positions
    ``(1, N, D)``) and SigLIP 2 NaFlex (``naflex_vit.py``: Dense patch kernel ``(p*p*3, D)``,
    position grid ``(16, 16, D)``) checkpoints load alike. Handles an optional ``params/`` (or ``opt/target/``) prefix, stacked (``encoderblock/`` with
    a leading depth axis) and per-layer (``encoderblock_i/``) encoders, bfloat16 stored as
    2-byte void (widened to float32 exactly), the legacy ``txt/Encoder_0/pos_embedding`` and a
    missing text head (So400m/16-i18n: identity head, zero bias, as the HF conversion writes).

    Args:
        path: the ``.npz`` file.
        config: the config the weights must fit; inferred from the array shapes when None
            (a registered release with the same shapes is returned when there is exactly one).

    Returns:
        ``(config, arrays)`` with float32 arrays under HF ``SiglipModel`` keys.

    Raises:
        CheckpointError: missing, unexpected or mis-shaped arrays, or a config that does not fit.
    """
    source = str(path)
    flat = _load_flat(path)
    inferred = _infer_config(flat, source)
    if config is None:
        config = inferred
    arrays: dict[str, np.ndarray] = {}
    used: set[str] = set()
    missing: list[str] = []
    for hf_key, (bv_key, transform) in _mapping(config).items():
        if bv_key not in flat:
            if not bv_key.startswith("txt/head/"):  # no text head: So400m/16-i18n
                missing.append(bv_key)
            continue
        arrays[hf_key] = transform(flat[bv_key])
        used.add(bv_key)
    if "txt/head/kernel" not in flat and "txt/head/bias" not in flat:
        width = config.text.width
        arrays["text_model.head.weight"] = np.eye(config.text.embed_dim, width, dtype=np.float32)
        arrays["text_model.head.bias"] = np.zeros(config.text.embed_dim, dtype=np.float32)
    attention = "img/MAPHead_0/MultiHeadDotProductAttention_0"
    names = ("query", "key", "value")
    missing.extend(
        f"{attention}/{name}/{kind}"
        for name in names
        for kind in ("kernel", "bias")
        if f"{attention}/{name}/{kind}" not in flat
    )
    if missing:
        shown = ", ".join(missing[:8]) + (
            f" ... ({len(missing) - 8} more)" if len(missing) > 8 else ""
        )
        raise CheckpointError(f"{source}: missing big_vision keys for this config: {shown}")
    if all(f"{attention}/{name}/kernel" in flat for name in names):
        arrays["vision_model.head.attention.in_proj_weight"] = np.concatenate(
            [_attention_in(flat[f"{attention}/{name}/kernel"]) for name in names]
        )
        used.update(f"{attention}/{name}/kernel" for name in names)
    if all(f"{attention}/{name}/bias" in flat for name in names):
        arrays["vision_model.head.attention.in_proj_bias"] = np.concatenate(
            [flat[f"{attention}/{name}/bias"].reshape(-1) for name in names]
        )
        used.update(f"{attention}/{name}/bias" for name in names)
    unexpected = sorted(set(flat) - used)
    if unexpected:
        shown = ", ".join(unexpected[:8]) + (" ..." if len(unexpected) > 8 else "")
        raise CheckpointError(f"{source}: unexpected big_vision keys: {shown}")
    validate_parameter_shapes({k: v.shape for k, v in arrays.items()}, config, source=source)
    return config, arrays


def _inverse(hf_key: str, array: np.ndarray, config: SiglipConfig) -> np.ndarray:
    """HF (torch) layout -> big_vision layout for one parameter (inverse of ``_mapping``)."""
    tower = config.vision if hf_key.startswith("vision_model.") else config.text
    heads = tower.num_heads
    if hf_key == "vision_model.embeddings.patch_embedding.weight":
        return array.T if config.vision.naflex else array.transpose(2, 3, 1, 0)
    if hf_key == "vision_model.embeddings.position_embedding.weight" and config.vision.naflex:
        grid = config.vision.grid_size  # naflex_vit stores the grid as (grid, grid, width)
        return array.reshape(grid, grid, array.shape[-1])
    if hf_key.endswith("position_embedding.weight"):
        return array[None]
    if hf_key.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight")):
        return array.T.reshape(array.shape[1], heads, -1)
    if hf_key.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias")):
        return array.reshape(heads, -1)
    if hf_key.endswith("out_proj.weight"):
        return array.T.reshape(heads, -1, array.shape[0])
    if hf_key.endswith(("fc1.weight", "fc2.weight")) or hf_key == "text_model.head.weight":
        return array.T
    return array


def save_big_vision_npz(
    path: str | os.PathLike[str],
    arrays: dict[str, np.ndarray],
    config: SiglipConfig,
    *,
    stacked: bool = False,
) -> None:
    """Write Hugging Face-layout arrays as a big_vision two-tower ``.npz`` (``params/`` prefix).

    The exact inverse of :func:`read_big_vision_npz`: big_vision's ``load`` (and this package)
    read the file back to the same numbers. Written atomically and durably (temporary file,
    fsync, rename, fsync of the directory).

    Args:
        path: the ``.npz`` to write.
        arrays: HF key -> array (e.g. ``{k: v.numpy() for k, v in model.hf_state_dict().items()}``).
        config: the shapes the arrays must fit.
        stacked: write the scan layout (``encoderblock/`` with a leading depth axis) instead of
            ``encoderblock_i/``.

    Raises:
        CheckpointError: if the arrays do not fit ``config``.

    Examples:
        >>> import pathlib, tempfile
        >>> import numpy as np
        >>> from siglip_models import get_config, hf_parameter_shapes
        >>> from siglip_models import read_big_vision_npz, save_big_vision_npz
        >>> config = get_config("tiny-test")
        >>> rng = np.random.default_rng(0)
        >>> arrays = {k: rng.normal(size=s) for k, s in hf_parameter_shapes(config).items()}
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.npz"
        >>> save_big_vision_npz(path, arrays, config, stacked=True)
        >>> read_config, read_arrays = read_big_vision_npz(path)
        >>> read_config == config
        True
        >>> bool(
        ...     np.allclose(
        ...         read_arrays["vision_model.head.probe"], arrays["vision_model.head.probe"]
        ...     )
        ... )
        True
    """
    arrays = {key: np.asarray(value, dtype=np.float32) for key, value in arrays.items()}
    validate_parameter_shapes({k: v.shape for k, v in arrays.items()}, config, source="arrays")
    flat: dict[str, np.ndarray] = {}
    for hf_key, (bv_key, _) in _mapping(config).items():
        flat[bv_key] = _inverse(hf_key, arrays[hf_key], config)
    width = config.vision.width
    attention = "img/MAPHead_0/MultiHeadDotProductAttention_0"
    packed = arrays["vision_model.head.attention.in_proj_weight"]
    packed_bias = arrays["vision_model.head.attention.in_proj_bias"]
    heads = config.vision.num_heads
    for index, name in enumerate(("query", "key", "value")):
        rows = slice(index * width, (index + 1) * width)
        flat[f"{attention}/{name}/kernel"] = packed[rows].T.reshape(width, heads, -1)
        flat[f"{attention}/{name}/bias"] = packed_bias[rows].reshape(heads, -1)
    if stacked:
        grouped: dict[str, list[tuple[int, np.ndarray]]] = {}
        for key in [k for k in flat if _LAYER.match(k)]:
            match = _LAYER.match(key)
            assert match is not None
            rest = key[match.end() :]
            grouped.setdefault(f"{match[1]}/encoderblock/{rest}", []).append(
                (int(match[2]), flat.pop(key))
            )
        for key, items in grouped.items():
            flat[key] = np.stack([value for _, value in sorted(items, key=lambda item: item[0])])

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            np.savez(handle, **{f"params/{key}": value for key, value in flat.items()})  # type: ignore[arg-type]

    atomic_write(path, write)
