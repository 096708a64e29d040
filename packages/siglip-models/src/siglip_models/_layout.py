"""The Hugging Face ``SiglipModel`` checkpoint layout: key names, shapes, config.json.

Framework-free: both the PyTorch and the Flax models read and write exactly these keys.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from typing import TypeVar

from siglip_models._atomic import atomic_write
from siglip_models._atomic import atomic_write_text
from siglip_models._config import SiglipConfig
from siglip_models._config import TextConfig
from siglip_models._config import VisionConfig
from siglip_models._config import rename_legacy_fields

_Array = TypeVar("_Array")

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
# Non-persistent HF buffers that old transformers versions sometimes saved; they carry no weights.
IGNORED_SUFFIXES = (".position_ids",)


class CheckpointError(ValueError):
    """A checkpoint does not fit the model: missing, unexpected or mis-shaped weights."""


# ---------------------------------------------------------------- input checks (torch and Flax)
def check_pixels(shape: tuple[int, ...], image_size: int, *, channels_last: bool) -> None:
    """Check a pixel batch's shape: NCHW (PyTorch) or NHWC (Flax), at the model's resolution.

    Raises:
        ValueError: for another rank or channel count, or another resolution.
    """
    if channels_last:
        layout, channel_axis, height_axis = "[batch, height, width, 3] (NHWC)", 3, 1
    else:
        layout, channel_axis, height_axis = "[batch, 3, height, width] (NCHW)", 1, 2
    if len(shape) != 4 or shape[channel_axis] != 3:
        raise ValueError(f"pixels must be {layout}, got shape {tuple(shape)}")
    height, width = shape[height_axis], shape[height_axis + 1]
    if height != image_size or width != image_size:
        raise ValueError(
            f"pixels must be {image_size}x{image_size} for this model, got {height}x{width}; "
            "resize the image, or call resize_position_embedding() to run at another resolution"
        )


def check_token_ids(
    shape: tuple[int, ...], dtype: Any, *, is_integer: bool, max_length: int
) -> None:
    """Check a batch of token ids: ``[batch, max_length]`` integers (padded, never masked).

    Raises:
        ValueError: for another shape, or ids that are not integers.
    """
    if len(shape) != 2 or shape[1] != max_length:
        raise ValueError(
            f"token_ids must be [batch, {max_length}] (padded to the trained length "
            f"{max_length}: the pooled token is the last position), got shape {tuple(shape)}"
        )
    if not is_integer:
        raise ValueError(f"token_ids must hold integers, got dtype {dtype}")


# ---------------------------------------------------------------- parameter names
# Our 0-d scalar parameters and the HF keys (shape (1,)) they are stored under; the other
# PyTorch parameters already carry their HF names.
SCALAR_KEYS = {"log_scale": "logit_scale", "bias": "logit_bias"}
# Flax leaf names that differ from the HF (torch) ones.
_NNX_LEAVES = {"kernel": "weight", "scale": "weight", "embedding": "weight"}


def nnx_path_to_hf_key(path: tuple[Any, ...]) -> str:
    """Flax NNX parameter path -> Hugging Face key (same module names; leaf names differ)."""
    if len(path) == 1 and str(path[0]) in SCALAR_KEYS:
        return SCALAR_KEYS[str(path[0])]
    *modules, leaf = (str(part) for part in path)
    return ".".join([*modules, _NNX_LEAVES.get(leaf, leaf)])


def hf_to_nnx_layout(path: tuple[Any, ...], array: _Array) -> _Array:
    """An HF (torch-layout) array -> the NNX layout of the parameter at ``path``.

    Dense kernels are ``(in, out)`` (torch ``(out, in)``); conv kernels HWIO (torch OIHW); the
    scalars are 0-d (HF ``(1,)``).
    """
    value: Any = array
    if len(path) == 1 and str(path[0]) in SCALAR_KEYS:
        return value.reshape(())  # type: ignore[no-any-return]
    if str(path[-1]) == "kernel":
        return value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T  # type: ignore[no-any-return]
    return array


def nnx_to_hf_layout(path: tuple[Any, ...], array: _Array) -> _Array:
    """Inverse of :func:`hf_to_nnx_layout`."""
    value: Any = array
    if len(path) == 1 and str(path[0]) in SCALAR_KEYS:
        return value.reshape(1)  # type: ignore[no-any-return]
    if str(path[-1]) == "kernel":
        return value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T  # type: ignore[no-any-return]
    return array


def _encoder_shapes(prefix: str, width: int, depth: int, mlp_dim: int) -> dict[str, tuple]:
    shapes: dict[str, tuple] = {}
    for index in range(depth):
        layer = f"{prefix}.encoder.layers.{index}"
        for norm in ("layer_norm1", "layer_norm2"):
            shapes[f"{layer}.{norm}.weight"] = (width,)
            shapes[f"{layer}.{norm}.bias"] = (width,)
        for projection in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[f"{layer}.self_attn.{projection}.weight"] = (width, width)
            shapes[f"{layer}.self_attn.{projection}.bias"] = (width,)
        shapes[f"{layer}.mlp.fc1.weight"] = (mlp_dim, width)
        shapes[f"{layer}.mlp.fc1.bias"] = (mlp_dim,)
        shapes[f"{layer}.mlp.fc2.weight"] = (width, mlp_dim)
        shapes[f"{layer}.mlp.fc2.bias"] = (width,)
    return shapes


def hf_parameter_shapes(config: SiglipConfig) -> dict[str, tuple]:
    """Every key of a Hugging Face ``SiglipModel`` state dict for ``config``, with its shape.

    Examples:
        >>> from siglip_models import get_config, hf_parameter_shapes
        >>> hf_parameter_shapes(get_config("tiny-test"))["vision_model.head.probe"]
        (1, 1, 32)
    """
    vision, text = config.vision, config.text
    width = vision.width
    patch = vision.patch_size
    shapes: dict[str, tuple] = {"logit_scale": (1,), "logit_bias": (1,)}
    shapes["text_model.embeddings.token_embedding.weight"] = (text.vocab_size, text.width)
    shapes["text_model.embeddings.position_embedding.weight"] = (text.max_length, text.width)
    shapes.update(_encoder_shapes("text_model", text.width, text.depth, text.mlp_dim))
    shapes["text_model.final_layer_norm.weight"] = (text.width,)
    shapes["text_model.final_layer_norm.bias"] = (text.width,)
    shapes["text_model.head.weight"] = (text.embed_dim, text.width)
    shapes["text_model.head.bias"] = (text.embed_dim,)
    shapes["vision_model.embeddings.patch_embedding.weight"] = (
        (width, 3 * patch * patch) if vision.naflex else (width, 3, patch, patch)
    )
    shapes["vision_model.embeddings.patch_embedding.bias"] = (width,)
    shapes["vision_model.embeddings.position_embedding.weight"] = (vision.num_patches, width)
    shapes.update(_encoder_shapes("vision_model", width, vision.depth, vision.mlp_dim))
    shapes["vision_model.post_layernorm.weight"] = (width,)
    shapes["vision_model.post_layernorm.bias"] = (width,)
    shapes["vision_model.head.probe"] = (1, 1, width)
    shapes["vision_model.head.attention.in_proj_weight"] = (3 * width, width)
    shapes["vision_model.head.attention.in_proj_bias"] = (3 * width,)
    shapes["vision_model.head.attention.out_proj.weight"] = (width, width)
    shapes["vision_model.head.attention.out_proj.bias"] = (width,)
    shapes["vision_model.head.layernorm.weight"] = (width,)
    shapes["vision_model.head.layernorm.bias"] = (width,)
    shapes["vision_model.head.mlp.fc1.weight"] = (vision.mlp_dim, width)
    shapes["vision_model.head.mlp.fc1.bias"] = (vision.mlp_dim,)
    shapes["vision_model.head.mlp.fc2.weight"] = (width, vision.mlp_dim)
    shapes["vision_model.head.mlp.fc2.bias"] = (width,)
    return shapes


_PATCH_KEY = "vision_model.embeddings.patch_embedding.weight"


def _summarise(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def validate_parameter_shapes(
    found: Mapping[str, tuple], config: SiglipConfig, *, source: str
) -> None:
    """Check that a checkpoint holds exactly the keys and shapes ``config`` needs.

    Args:
        found: key -> shape of every tensor in the checkpoint (HF key names).
        config: the configuration the weights must fit.
        source: where the weights came from, quoted in the error.

    Raises:
        CheckpointError: listing missing keys, unexpected keys, or each shape mismatch with the
            key, the shape the config implies and the shape found.
    """
    expected = hf_parameter_shapes(config)
    present = {k: tuple(v) for k, v in found.items() if not k.endswith(IGNORED_SUFFIXES)}
    missing = sorted(set(expected) - set(present))
    unexpected = sorted(set(present) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing keys: {_summarise(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_summarise(unexpected)}")
    mismatched = [
        f"{key}: config expects {expected[key]}, checkpoint has {present[key]}"
        for key in sorted(set(expected) & set(present))
        if tuple(expected[key]) != present[key]
    ]
    if mismatched:
        problems.append("shape mismatch (config/weights mismatch): " + "; ".join(mismatched[:8]))
        if len(mismatched) > 8:
            problems[-1] += f"; ... ({len(mismatched) - 8} more)"
        patch_shape = present.get(_PATCH_KEY)
        if patch_shape is not None and len(patch_shape) != len(expected[_PATCH_KEY]):
            problems.append(
                "a NaFlex checkpoint (2-D linear patch embedding, model_type 'siglip2') and a "
                "fixed-resolution one (4-D patch conv, model_type 'siglip') do not load into "
                "each other; use the config that matches the checkpoint"
                if len(patch_shape) == 2
                else "a fixed-resolution checkpoint (4-D patch conv) does not load into a NaFlex "
                "config; use the config that matches the checkpoint"
            )
    if problems:
        raise CheckpointError(
            f"weights from {source} do not fit the config: " + " | ".join(problems)
        )


def config_to_hf_dict(config: SiglipConfig) -> dict[str, Any]:
    """The ``config.json`` a transformers ``SiglipModel`` writes for this shape.

    Args:
        config: the configuration.

    Returns:
        A JSON-serialisable dict; the ``siglip_models`` entry (``log_scale_init``, ``bias_init``,
        ``lowercase``) is ignored by transformers and read back by :func:`config_from_hf_dict`.

    Examples:
        >>> from siglip_models import config_to_hf_dict, get_config
        >>> hf = config_to_hf_dict(get_config("siglip-base-patch16-224"))
        >>> hf["model_type"], hf["vision_config"]["patch_size"], hf["text_config"]["pad_token_id"]
        ('siglip', 16, 1)
        >>> config_to_hf_dict(get_config("siglip2-base-patch16-naflex"))["model_type"]
        'siglip2'
    """
    if config.vision.naflex:
        return _naflex_to_hf_dict(config)
    vision, text = config.vision, config.text
    return {
        "architectures": ["SiglipModel"],
        "model_type": "siglip",
        "initializer_factor": 1.0,
        "text_config": {
            "model_type": "siglip_text_model",
            "vocab_size": text.vocab_size,
            "hidden_size": text.width,
            "intermediate_size": text.mlp_dim,
            "num_hidden_layers": text.depth,
            "num_attention_heads": text.num_heads,
            "max_position_embeddings": text.max_length,
            "projection_size": text.embed_dim,
            "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": text.layer_norm_eps,
            "attention_dropout": 0.0,
            "pad_token_id": text.pad_id,
            "eos_token_id": 1,
            "bos_token_id": None,
        },
        "vision_config": {
            "model_type": "siglip_vision_model",
            "hidden_size": vision.width,
            "intermediate_size": vision.mlp_dim,
            "num_hidden_layers": vision.depth,
            "num_attention_heads": vision.num_heads,
            "num_channels": 3,
            "image_size": vision.image_size,
            "patch_size": vision.patch_size,
            "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": vision.layer_norm_eps,
            "attention_dropout": 0.0,
            "vision_use_head": True,
        },
        # Not read by transformers; lets this package restore the from-scratch init values.
        "siglip_models": {
            "log_scale_init": config.log_scale_init,
            "bias_init": config.bias_init,
            "lowercase": config.lowercase,
        },
    }


def _naflex_to_hf_dict(config: SiglipConfig) -> dict[str, Any]:
    """The ``config.json`` of a transformers ``Siglip2Model`` (SigLIP 2 NaFlex)."""
    vision, text = config.vision, config.text
    return {
        "architectures": ["Siglip2Model"],
        "model_type": "siglip2",
        "initializer_factor": 1.0,
        "text_config": {
            "model_type": "siglip2_text_model",
            "vocab_size": text.vocab_size,
            "hidden_size": text.width,
            "intermediate_size": text.mlp_dim,
            "num_hidden_layers": text.depth,
            "num_attention_heads": text.num_heads,
            "max_position_embeddings": text.max_length,
            "projection_size": text.embed_dim,
            "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": text.layer_norm_eps,
            "attention_dropout": 0.0,
            "pad_token_id": text.pad_id,
            "eos_token_id": 1,
            "bos_token_id": None,
        },
        "vision_config": {
            "model_type": "siglip2_vision_model",
            "hidden_size": vision.width,
            "intermediate_size": vision.mlp_dim,
            "num_hidden_layers": vision.depth,
            "num_attention_heads": vision.num_heads,
            "num_channels": 3,
            "num_patches": vision.num_patches,
            "patch_size": vision.patch_size,
            "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": vision.layer_norm_eps,
            "attention_dropout": 0.0,
            "vision_use_head": True,
        },
        "siglip_models": {
            "log_scale_init": config.log_scale_init,
            "bias_init": config.bias_init,
            "lowercase": config.lowercase,
        },
    }


# transformers' defaults: Hub config.json files store only the values that differ from them.
_HF_VISION_DEFAULTS = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 224,
    "patch_size": 16,
}
_HF_NAFLEX_VISION_DEFAULTS = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "num_patches": 256,
    "patch_size": 16,
}
_HF_TEXT_DEFAULTS = {
    "vocab_size": 32000,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 64,
}


def config_from_hf_dict(data: Mapping[str, Any], *, source: str = "config.json") -> SiglipConfig:
    """Read a transformers ``SiglipConfig`` / ``Siglip2Config`` dict (an HF ``config.json``).

    ``model_type`` ``"siglip"`` is a fixed-resolution model (SigLIP and SigLIP 2);
    ``"siglip2"`` is a SigLIP 2 NaFlex model (``VisionConfig.naflex``; its square
    ``num_patches`` position grid gives ``image_size = sqrt(num_patches) * patch_size``).

    Args:
        data: the parsed ``config.json``.
        source: where it came from, quoted in errors.

    Returns:
        The :class:`~siglip_models.SiglipConfig`.

    Raises:
        CheckpointError: for an unsupported model type, an activation other than tanh-GELU, a
            model without the MAP head or a NaFlex grid that is not square. Fields a Hub
            ``config.json`` omits take transformers' defaults, as transformers does.

    Examples:
        >>> from siglip_models import config_from_hf_dict, config_to_hf_dict, get_config
        >>> config = get_config("siglip2-so400m-patch14-384")
        >>> config_from_hf_dict(config_to_hf_dict(config)) == config
        True
    """
    model_type = data.get("model_type")
    if model_type not in ("siglip", "siglip2"):
        raise CheckpointError(
            f"{source}: expected model_type 'siglip' (fixed resolution) or 'siglip2' (NaFlex), "
            f"got {model_type!r}"
        )
    naflex = model_type == "siglip2"
    vision_defaults = _HF_NAFLEX_VISION_DEFAULTS if naflex else _HF_VISION_DEFAULTS
    vision = {**vision_defaults, **(data.get("vision_config") or {})}
    text = {**_HF_TEXT_DEFAULTS, **(data.get("text_config") or {})}
    for name, section in (("vision_config", vision), ("text_config", text)):
        activation = section.get("hidden_act", "gelu_pytorch_tanh")
        if activation not in ("gelu_pytorch_tanh", "gelu_new", "gelu_fast"):
            raise CheckpointError(
                f"{source}: {name}.hidden_act must be the tanh GELU ('gelu_pytorch_tanh'), "
                f"got {activation!r}"
            )
    if not vision.get("vision_use_head", True):
        raise CheckpointError(f"{source}: vision_config.vision_use_head=false is not supported")
    if vision.get("num_channels", 3) != 3:
        raise CheckpointError(
            f"{source}: vision_config.num_channels must be 3, got {vision['num_channels']}"
        )
    patch_size = vision["patch_size"]
    if naflex:
        grid = math.isqrt(int(vision["num_patches"]))
        if grid * grid != int(vision["num_patches"]):
            raise CheckpointError(
                f"{source}: vision_config.num_patches must be a square (the position grid), "
                f"got {vision['num_patches']}"
            )
        side = patch_size[0] if isinstance(patch_size, (list, tuple)) else patch_size
        vision["image_size"] = grid * int(side)
    image_size = vision["image_size"]
    for name, value in (("image_size", image_size), ("patch_size", patch_size)):
        if isinstance(value, (list, tuple)) and len(set(value)) != 1:
            raise CheckpointError(f"{source}: vision_config.{name} must be square, got {value!r}")
    if isinstance(image_size, (list, tuple)):
        image_size = image_size[0]
    if isinstance(patch_size, (list, tuple)):
        patch_size = patch_size[0]
    text_width = text["hidden_size"]
    extras = rename_legacy_fields(data.get("siglip_models") or {})
    pad_id = text.get("pad_token_id")
    return SiglipConfig(
        vision=VisionConfig(
            image_size=int(image_size),
            patch_size=int(patch_size),
            width=vision["hidden_size"],
            depth=vision["num_hidden_layers"],
            num_heads=vision["num_attention_heads"],
            mlp_dim=vision["intermediate_size"],
            layer_norm_eps=float(vision.get("layer_norm_eps", 1e-6)),
            naflex=naflex,
        ),
        text=TextConfig(
            vocab_size=text["vocab_size"],
            max_length=text["max_position_embeddings"],
            width=text_width,
            depth=text["num_hidden_layers"],
            num_heads=text["num_attention_heads"],
            mlp_dim=text["intermediate_size"],
            embed_dim=text.get("projection_size") or text_width,
            pad_id=1 if pad_id is None else int(pad_id),
            layer_norm_eps=float(text.get("layer_norm_eps", 1e-6)),
        ),
        **{k: extras[k] for k in ("log_scale_init", "bias_init", "lowercase") if k in extras},
    )


# A siglip-train run keeps each checkpoint's model in <run>/checkpoints/step_<N>/model/.
TRAINING_CHECKPOINTS = "checkpoints"
TRAINING_STEP_PREFIX = "step_"
TRAINING_MODEL_SUBDIRECTORY = "model"


def _newest_step_model(checkpoints: Path) -> Path | None:
    steps = [
        path
        for path in checkpoints.glob(f"{TRAINING_STEP_PREFIX}*")
        if path.name[len(TRAINING_STEP_PREFIX) :].isdigit()
        and (path / TRAINING_MODEL_SUBDIRECTORY / CONFIG_NAME).is_file()
    ]
    if not steps:
        return None
    newest = max(steps, key=lambda path: int(path.name[len(TRAINING_STEP_PREFIX) :]))
    return newest / TRAINING_MODEL_SUBDIRECTORY


def resolve_model_directory(path: str | os.PathLike[str]) -> Path:
    """The directory holding ``config.json`` for a model directory, checkpoint or training run.

    Accepts, in this order: a Hugging Face ``SiglipModel`` directory (``config.json`` +
    ``model.safetensors``); a siglip-train checkpoint ``step_<N>/`` (its ``model/``); a
    checkpoints directory (the newest ``step_<N>/model/``); a run directory (the newest
    ``checkpoints/step_<N>/model/``). The newest step counts only when its ``config.json``
    exists: the config is written after the weights, so a half-written step is skipped.

    Args:
        path: one of the above.

    Returns:
        The model directory.

    Raises:
        FileNotFoundError: none of the above; the message names any ``config.json`` found up to
            four levels below ``path`` (where the model is) or says that there is none.

    Examples:
        >>> import json, pathlib, tempfile
        >>> from siglip_models import config_to_hf_dict, get_config, resolve_model_directory
        >>> run = pathlib.Path(tempfile.mkdtemp())
        >>> for step in (100, 2000):
        ...     model = run / "checkpoints" / f"step_{step:09d}" / "model"
        ...     model.mkdir(parents=True)
        ...     _ = (model / "config.json").write_text(json.dumps({}))
        >>> resolve_model_directory(run).relative_to(run).as_posix()
        'checkpoints/step_000002000/model'
        >>> resolve_model_directory(str(run / "checkpoints" / "step_000000100")).parent.name
        'step_000000100'
    """
    root = Path(path)
    if (root / CONFIG_NAME).is_file():
        return root
    if (root / TRAINING_MODEL_SUBDIRECTORY / CONFIG_NAME).is_file():
        return root / TRAINING_MODEL_SUBDIRECTORY
    for checkpoints in (root / TRAINING_CHECKPOINTS, root):
        found = _newest_step_model(checkpoints) if checkpoints.is_dir() else None
        if found is not None:
            return found
    if not root.exists():
        raise FileNotFoundError(f"model directory {str(path)!r} does not exist")
    nearby = sorted(
        str(candidate.parent)
        for depth in range(1, 5)
        for candidate in root.glob("*/" * depth + CONFIG_NAME)
    )
    where = (
        f"; config.json files below it: {', '.join(repr(p) for p in nearby[:5])} (pass one of"
        " these directories)"
        if nearby
        else "; there is no config.json below it either"
    )
    raise FileNotFoundError(
        f"no {CONFIG_NAME} in {str(path)!r}: expected a Hugging Face SiglipModel directory "
        f"(config.json + model.safetensors), a siglip-train checkpoint (step_<N>/ holding "
        f"model/), or a run directory (checkpoints/step_<N>/model/){where}"
    )


def read_hf_config(directory: str | os.PathLike[str]) -> SiglipConfig:
    """The :class:`~siglip_models.SiglipConfig` of an HF checkpoint directory (its ``config.json``).

    Args:
        directory: the checkpoint directory, or a siglip-train checkpoint / run directory
            (see :func:`resolve_model_directory`).

    Returns:
        The configuration, without reading any weights.

    Raises:
        FileNotFoundError: no ``config.json`` there (the message says where one is).
        CheckpointError: if the config describes an unsupported model.

    Examples:
        >>> import json, pathlib, tempfile
        >>> from siglip_models import config_to_hf_dict, get_config, read_hf_config
        >>> directory = pathlib.Path(tempfile.mkdtemp())
        >>> hf = config_to_hf_dict(get_config("tiny-test"))
        >>> _ = (directory / "config.json").write_text(json.dumps(hf))
        >>> read_hf_config(directory).vision.image_size
        32
    """
    path = resolve_model_directory(directory) / CONFIG_NAME
    with path.open(encoding="utf-8") as handle:
        return config_from_hf_dict(json.load(handle), source=str(path))


def weight_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The safetensors file(s) of an HF directory: one file, or the shards of an index.

    Raises:
        FileNotFoundError: if there is neither ``model.safetensors`` nor an index, or only a
            pickle (``pytorch_model.bin``), which this package refuses to load.
    """
    root = Path(directory)
    single = root / WEIGHTS_NAME
    if single.is_file():
        return [single]
    index = root / WEIGHTS_INDEX_NAME
    if index.is_file():
        with index.open(encoding="utf-8") as handle:
            weight_map = json.load(handle)["weight_map"]
        return [root / name for name in sorted(set(weight_map.values()))]
    pickled = " (only a pickle, pytorch_model.bin, which is never loaded)" * (
        (root / "pytorch_model.bin").is_file()
    )
    raise FileNotFoundError(
        f"no {WEIGHTS_NAME} or {WEIGHTS_INDEX_NAME} in {str(directory)!r}{pickled}"
    )


def read_hf_directory(
    directory: str | os.PathLike[str], load_file: Callable[[str], Mapping[str, _Array]]
) -> tuple[SiglipConfig, dict[str, _Array]]:
    """The config and every weight of an HF directory, each file read with ``load_file``.

    Raises:
        FileNotFoundError: no ``config.json``, or no safetensors weights.
        CheckpointError: if the config describes an unsupported model.
    """
    directory = resolve_model_directory(directory)
    config = read_hf_config(directory)
    arrays: dict[str, _Array] = {}
    for file in weight_files(directory):
        arrays.update(load_file(str(file)))
    return config, arrays


def write_hf_directory(
    directory: str | os.PathLike[str], config: SiglipConfig, save_weights: Callable[[Path], None]
) -> None:
    """Write ``model.safetensors`` through ``save_weights(temporary_path)``, then ``config.json``.

    Each file is written atomically and durably (temporary file, fsync, rename, fsync of the
    directory): a crash leaves the old file or the new one, never part of one.
    """
    root = Path(directory)
    atomic_write(root / WEIGHTS_NAME, save_weights)
    atomic_write_text(
        root / CONFIG_NAME, json.dumps(config_to_hf_dict(config), indent=2, sort_keys=True) + "\n"
    )
