"""ONNX export of each tower: dynamic batch axis, float32 or float16 with float32 LayerNorm.

:func:`export_onnx` traces one tower with ``torch.export`` (the batch axis a symbolic dimension)
and translates it with PyTorch's dynamo ONNX exporter (``torch.onnx.export(dynamo=True)``, which
needs ``onnxscript``) at opset :data:`ONNX_OPSET`. The graph takes what the eager tower takes
(NCHW pixels in [-1, 1], or right-padded int64 token ids) and returns float32 embeddings, not
normalised. Fixed-resolution towers contain no resize: the position grid is resampled when the
checkpoint is loaded (``image_size=``), so the antialiased resize that breaks other SigLIP exports
is not in the graph.

A NaFlex image tower is exported for one sequence length ``L`` (``max_num_patches=L``): it takes
``patches [batch, L, 3 * patch**2]``, ``patch_mask [batch, L]`` (bool) and ``spatial_shapes
[batch, 2]`` (int64), as :meth:`SiglipModel.encode_image_naflex`, for any aspect ratio. Its
position grid is resized per image by a matrix product whose weights the graph computes from
``spatial_shapes`` (``siglip_models._naflex``), so it holds no Resize operator either.

float16 export keeps the numbers that overflow in half precision in float32: the residual stream
(every block adds its float16 attention and MLP output onto a float32 sum) and every LayerNorm
(its input cast to float32, normalised with float32 weights, the result cast back to float16 for
the next matmul). The patch and position embeddings stay float32, as in
:meth:`SiglipModel.to_inference_dtype`. A LayerNorm run in float16 squares activations of a few
hundred into ``inf``; this one does not.

Adding a tower: a wrapper module, its example inputs and their input names in :data:`_TOWERS`
(axis 0 of every input is the batch).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Literal
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from siglip_models._atomic import atomic_write
from siglip_models._atomic import fsync_directory
from siglip_models._layout import config_to_hf_dict
from siglip_models.torch._cpu_inference import unpack
from siglip_models.torch._layers import VisionTower
from siglip_models.torch._model import SiglipModel

#: The ONNX opset the towers are exported at (LayerNormalization is an operator since opset 17;
#: 18 runs on onnxruntime >= 1.14, TensorRT >= 8.6 and OpenVINO). Pass ``opset=20`` for the
#: ``Gelu`` operator instead of its tanh formula written out.
ONNX_OPSET = 18

Tower = Literal["image", "text"]
METADATA_PREFIX = "siglip_models."


class _Float32LayerNorm(nn.Module):
    """LayerNorm computed in float32 whatever the input dtype; the result in ``output_dtype``."""

    def __init__(self, layer_norm: nn.LayerNorm, output_dtype: torch.dtype) -> None:
        super().__init__()
        self.normalized_shape = tuple(layer_norm.normalized_shape)
        self.eps = layer_norm.eps
        self.output_dtype = output_dtype
        self.weight = nn.Parameter(layer_norm.weight.detach().float().clone())
        self.bias = nn.Parameter(layer_norm.bias.detach().float().clone())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        normed = F.layer_norm(
            tokens.float(), self.normalized_shape, self.weight, self.bias, self.eps
        )
        return normed.to(self.output_dtype)


def _half_precision(tower: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``tower`` in ``dtype`` except LayerNorms, residual stream and patch/position embeddings.

    The towers cast their embeddings to the final LayerNorm's weight dtype: float32 here, so the
    residual stream is float32 and torch's type promotion adds each float16 block output to it.
    """
    tower.to(dtype)
    embeddings = getattr(tower, "embeddings", None)
    if embeddings is not None and hasattr(embeddings, "patch_embedding"):
        embeddings.float()  # as to_inference_dtype: patch extraction and positions in float32
    for parent in list(tower.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.LayerNorm):
                setattr(parent, name, _Float32LayerNorm(child, dtype))
    return tower


class _ImageGraph(nn.Module):
    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.tower = tower

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        image_emb: torch.Tensor = self.tower(pixels).float()
        return image_emb


class _TextGraph(nn.Module):
    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.tower = tower

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        text_emb: torch.Tensor = self.tower(token_ids).float()
        return text_emb


class _NaflexImageGraph(nn.Module):
    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.tower = tower

    def forward(
        self, patches: torch.Tensor, patch_mask: torch.Tensor, spatial_shapes: torch.Tensor
    ) -> torch.Tensor:
        tower = cast(VisionTower, self.tower)  # a NaFlex model's vision_model (see _TOWERS)
        image_emb: torch.Tensor = tower.forward_naflex(patches, patch_mask, spatial_shapes).float()
        return image_emb


def _naflex_examples(model: SiglipModel, length: int) -> tuple[torch.Tensor, ...]:
    features = 3 * model.config.vision.patch_size**2
    return (
        torch.zeros(2, length, features),
        torch.ones(2, length, dtype=torch.bool),
        torch.tensor([[1, length]] * 2),  # int64; the values are not baked into the graph
    )


@dataclasses.dataclass(frozen=True)
class _TowerSpec:
    """How to export one tower: its module, example inputs (given ``L`` for NaFlex) and names."""

    module: Callable[[SiglipModel], nn.Module]
    wrapper: Callable[[nn.Module], nn.Module]
    examples: Callable[[SiglipModel, int], tuple[torch.Tensor, ...]]
    input_names: tuple[str, ...]
    output_name: str


_TOWERS: dict[str, _TowerSpec] = {
    "image": _TowerSpec(
        module=lambda model: model.vision_model,
        wrapper=_ImageGraph,
        # Batch 2: torch.export specialises sizes 0 and 1.
        examples=lambda model, _: (
            torch.zeros(2, 3, model.config.vision.image_size, model.config.vision.image_size),
        ),
        input_names=("pixels",),
        output_name="image_emb",
    ),
    "text": _TowerSpec(
        module=lambda model: model.text_model,
        wrapper=_TextGraph,
        examples=lambda model, _: (
            torch.full((2, model.config.text.max_length), model.config.text.pad_id),
        ),
        input_names=("token_ids",),
        output_name="text_emb",
    ),
    "image_naflex": _TowerSpec(
        module=lambda model: model.vision_model,
        wrapper=_NaflexImageGraph,
        examples=_naflex_examples,
        input_names=("patches", "patch_mask", "spatial_shapes"),
        output_name="image_emb",
    ),
}
_TOWER_NAMES = ("image", "text")


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence what the exporter says about itself (not about the model) while it runs."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping ..."
    try:
        with warnings.catch_warnings():
            # torch.export's own pytree code uses a name that torch deprecated.
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            # Every NaFlex input's axis 0 is the one "batch" Dim; the exporter notes the sharing.
            warnings.filterwarnings(
                "ignore", message=".*axis name: batch will not be used.*", category=UserWarning
            )
            yield
    finally:
        registration.setLevel(level)


def _move_into_place(built: Path, destination: Path) -> None:
    """Move the exported files (weights first, graph last) next to ``destination``, atomically."""
    graph = built / destination.name

    def move(source: Path, target: Path) -> None:
        atomic_write(target, lambda temporary: os.replace(source, temporary))

    for path in sorted(built.iterdir()):
        if path != graph:
            move(path, destination.parent / path.name)
    move(graph, destination)
    fsync_directory(destination.parent)


def export_onnx(
    model: SiglipModel,
    path: str | os.PathLike[str],
    *,
    tower: Tower,
    dtype: torch.dtype = torch.float32,
    opset: int = ONNX_OPSET,
    external_data: bool | None = None,
    max_num_patches: int | None = None,
) -> Path:
    """Export one tower of ``model`` to an ONNX file with a dynamic batch axis.

    The graph's input is ``pixels [batch, 3, image_size, image_size]`` float32 in [-1, 1] (image)
    or ``token_ids [batch, max_length]`` int64 (text); its output ``image_emb`` / ``text_emb``
    ``[batch, embed]`` float32, not normalised, equal to ``encode_image`` / ``encode_text``
    within float32 rounding (the tests hold onnxruntime to 1e-5 of eager). ``batch`` is
    symbolic: any batch size runs. The model itself is not changed (the tower is copied).

    A NaFlex model's image tower is exported for one sequence length ``L = max_num_patches``:
    inputs ``patches [batch, L, 3 * patch_size**2]`` float32, ``patch_mask [batch, L]`` bool and
    ``spatial_shapes [batch, 2]`` int64 (what ``siglip_data.naflex.collate_naflex`` gives, the
    shapes cast), any aspect ratio; no Resize operator (the position grid is resized by a matrix
    product computed in the graph).

    ``dtype=torch.float16`` stores the matmul weights in float16 and runs attention and MLP in
    float16, but keeps the residual stream, every LayerNorm and the patch/position embeddings in
    float32, so activations whose squares overflow float16 (a few hundred) stay finite.

    The metadata of the file (``siglip_models.*`` properties) records the tower, its input size,
    the embedding size, the dtype and the model's ``config.json``.

    Args:
        model: the model to export (any dtype; weights are converted in the copy).
        path: the ``.onnx`` file to write (its folder is created). Weights over 2 GB (So400m's
            text tower) go to ``<path>.data`` beside it.
        tower: ``"image"`` or ``"text"``.
        dtype: ``torch.float32`` or ``torch.float16``.
        opset: ONNX opset version (default :data:`ONNX_OPSET`).
        external_data: weights in a separate ``<path>.data`` file (None: only when over 2 GB).
        max_num_patches: the sequence length ``L`` of a NaFlex image tower (required there;
            refused for fixed-resolution and text towers).

    Returns:
        ``path`` as a ``Path``. Both files are written atomically (weights first).

    Raises:
        ValueError: unknown ``tower`` or unsupported ``dtype``; ``max_num_patches`` missing for
            a NaFlex image tower, given for another, or not a positive int.
        ImportError: ``onnxscript`` (the dynamo exporter) is not installed.

    Examples:
        >>> import tempfile
        >>> import torch
        >>> from siglip_models.torch import SiglipModel
        >>> from siglip_models.torch import export_onnx
        >>> _ = torch.manual_seed(0)
        >>> model = SiglipModel("tiny-test").eval()
        >>> path = export_onnx(model, tempfile.mkdtemp() + "/text.onnx", tower="text")
        >>> import onnxruntime
        >>> session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        >>> token_ids = torch.ones(3, 16, dtype=torch.long)
        >>> (text_emb,) = session.run(None, {"token_ids": token_ids.numpy()})
        >>> with torch.inference_mode():
        ...     eager = model.encode_text(token_ids)
        >>> bool(abs(text_emb - eager.numpy()).max() < 1e-5)
        True
    """
    if tower not in _TOWER_NAMES:
        raise ValueError(f"export_onnx: tower must be one of {list(_TOWER_NAMES)}, got {tower!r}")
    naflex = tower == "image" and model.config.vision.naflex
    if naflex:
        if isinstance(max_num_patches, bool) or not isinstance(max_num_patches, int):
            raise ValueError(
                "export_onnx: max_num_patches: a NaFlex image tower is exported for one sequence "
                "length L; pass max_num_patches=L (transformers' default is 256, the releases "
                f"were trained at 128 to 1024), got {max_num_patches!r}"
            )
        if max_num_patches < 1:
            raise ValueError(
                f"export_onnx: max_num_patches must be a positive int, got {max_num_patches}"
            )
    elif max_num_patches is not None:
        what = "a text tower" if tower == "text" else "a fixed-resolution image tower"
        raise ValueError(
            f"export_onnx: max_num_patches applies to NaFlex image towers only, and this is {what} "
            f"(got max_num_patches={max_num_patches!r})"
        )
    if dtype not in (torch.float32, torch.float16):
        raise ValueError(
            f"export_onnx: dtype must be torch.float32 or torch.float16, got {dtype} (bfloat16 "
            "has no CPU kernels in onnxruntime; export float32 and convert with your runtime)"
        )
    try:
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"export_onnx needs onnxscript and onnx: pip install 'siglip-models[torch,onnx]' ({error})"
        ) from None
    spec = _TOWERS["image_naflex" if naflex else tower]
    module = copy.deepcopy(spec.module(model)).float()
    unpack(module)  # oneDNN pre-packed layers do not trace: export the plain ones
    if dtype == torch.float16:
        module = _half_precision(module, dtype)
    graph = spec.wrapper(module).eval()
    examples = spec.examples(model, max_num_patches or 0)
    batch = torch.export.Dim("batch", min=1)
    dynamic_shapes = {name: {0: batch} for name in spec.input_names}
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            graph,
            examples,
            dynamo=True,
            opset_version=opset,
            input_names=list(spec.input_names),
            output_names=[spec.output_name],
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )
    assert program is not None
    config = model.config
    metadata = {
        "tower": tower,
        "dtype": "float16" if dtype == torch.float16 else "float32",
        "opset": str(opset),
        "embed_dim": str(config.text.embed_dim if tower == "text" else config.vision.width),
        "image_size": str(config.vision.image_size),
        "max_length": str(config.text.max_length),
        "patch_size": str(config.vision.patch_size),
        "max_num_patches": str(max_num_patches) if naflex else "",
        "pad_id": str(config.text.pad_id),
        "config": json.dumps(config_to_hf_dict(config), sort_keys=True),
    }
    for key, value in metadata.items():
        program.model.metadata_props[METADATA_PREFIX + key] = value
    destination = Path(path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    built = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}-"))
    try:
        program.save(built / destination.name, external_data=external_data)
        _move_into_place(built, destination)
    finally:
        shutil.rmtree(built, ignore_errors=True)
    return destination
