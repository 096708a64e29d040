"""``torch.compile`` of the towers for inference: one graph for every batch size.

:func:`compile_towers` wraps a :class:`~siglip_models.torch.SiglipModel` in a
:class:`CompiledTowers` whose ``encode_image`` / ``encode_text`` run the towers compiled by
TorchInductor. The batch axis is marked dynamic on each call (``torch._dynamo.mark_dynamic``), so
one graph serves every batch size >= 2 and a new batch size never recompiles; a batch of one gets
its own graph the first time it is seen (torch specialises size 1, and the patch convolution's
oneDNN kernel picks another memory layout at batch 1). Every other size (resolution, text length,
``L`` of a NaFlex tower) stays static, as the code generator likes it: a NaFlex tower compiles one
graph per sequence length ``L`` (``max_num_patches``), whatever the images' aspect ratios, because
the position grid is resized by a matrix product computed from ``spatial_shapes`` inside the graph.

Freezing (the default) makes the weights constants of the graph: Inductor then pre-packs the
matmul weights for oneDNN and fuses bias and GELU into them, which is where the CPU speed comes
from. The weights must not change after the first call (compile again after loading others).

Adding a tower: a method that checks its inputs in Python and calls
``self._run(name, function, *inputs)``; every input's axis 0 is the batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from siglip_models.torch._model import SiglipModel

_Function = Callable[..., torch.Tensor]


def _import_freezing_dependencies() -> None:
    # Inductor's freezing pass imports torch.utils.mkldnn, which decorates with the deprecated
    # torch.jit.script_method at import time: import it once here, that warning silenced.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import torch.utils.mkldnn  # noqa: F401


class CompiledTowers:
    """The towers of a model compiled with ``torch.compile`` (inference only).

    Made by :func:`compile_towers`; see there. Each tower compiles on its first call.

    Args:
        model: the model; its parameters are shared, not copied.
        backend: the ``torch.compile`` backend.
        mode: the ``torch.compile`` mode (None: the default).
        freezing: treat the weights as constants (Inductor only).
    """

    def __init__(
        self,
        model: SiglipModel,
        *,
        backend: str | Callable[..., Any] = "inductor",
        mode: str | None = None,
        freezing: bool = True,
    ) -> None:
        if not isinstance(model, SiglipModel):
            raise TypeError(
                f"compile_towers: expected a siglip_models.torch.SiglipModel, got "
                f"{type(model).__name__}"
            )
        self.model = model.eval()
        self.backend = backend
        self.mode = mode
        self.freezing = freezing
        self._compiled: dict[str, _Function] = {}

    def _run(self, name: str, function: _Function, *inputs: torch.Tensor) -> torch.Tensor:
        """Run ``function(*inputs)`` compiled, the batch axis (0 of every input) dynamic."""
        compiled = self._compiled.get(name)
        if compiled is None:
            freezing = self.freezing and self.backend == "inductor"
            if freezing:
                _import_freezing_dependencies()
            options: dict[str, str | int | bool | Callable[..., Any]] | None = (
                {"freezing": True} if freezing else None
            )
            compiled = torch.compile(
                function, backend=self.backend, mode=self.mode, options=options
            )
            self._compiled[name] = compiled
        if inputs[0].shape[0] >= 2:
            for tensor in inputs:
                torch._dynamo.mark_dynamic(tensor, 0)
        with torch.inference_mode():
            out: torch.Tensor = compiled(*inputs)
        return out

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Image embeddings (not normalised), as :meth:`SiglipModel.encode_image`.

        Args:
            pixels: ``[batch, 3, image_size, image_size]`` float in [-1, 1] (NCHW).

        Returns:
            ``[batch, embed]`` (an inference tensor).

        Raises:
            ValueError: for a shape other than ``[batch, 3, image_size, image_size]``.
        """
        self.model._check_pixels(pixels, "encode_image")
        return self._run("image", self.model.vision_model, pixels)

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Text embeddings (not normalised), as :meth:`SiglipModel.encode_text`.

        Args:
            token_ids: ``[batch, max_length]`` integer ids padded on the right to exactly
                ``config.text.max_length``; no attention mask.

        Returns:
            ``[batch, embed]`` (an inference tensor).

        Raises:
            ValueError: if the ids are not integer or not padded to ``max_length``.
        """
        self.model._check_token_ids(token_ids)
        return self._run("text", self.model.text_model, token_ids)

    def encode_image_naflex(
        self, patches: torch.Tensor, patch_mask: torch.Tensor, spatial_shapes: torch.Tensor
    ) -> torch.Tensor:
        """NaFlex image embeddings (not normalised), as :meth:`SiglipModel.encode_image_naflex`.

        The batch axis is dynamic and the sequence length ``L`` static: one graph per ``L``
        (preprocess with one ``max_num_patches``), whatever the images' grids.

        Args:
            patches: ``[batch, L, 3 * patch_size**2]`` float in [-1, 1].
            patch_mask: ``[batch, L]`` bool (or 0/1), the valid patches first.
            spatial_shapes: ``[batch, 2]`` integer ``(rows, cols)``.

        Returns:
            ``[batch, embed]`` (an inference tensor).

        Raises:
            ValueError: as :meth:`SiglipModel.encode_image_naflex` (a fixed-resolution model, a
                bad shape, a mask that does not match ``spatial_shapes``).
        """
        mask, shapes = self.model._naflex_inputs(
            patches, patch_mask, spatial_shapes, "encode_image_naflex"
        )
        # int64 shapes whatever came (int32 from collate_naflex): one graph for both.
        return self._run(
            f"image_naflex_{patches.shape[1]}",
            self.model.vision_model.forward_naflex,
            patches,
            mask,
            shapes.long(),
        )

    @property
    def compiled_functions(self) -> dict[str, Any]:
        """The compiled function of each tower called so far (name -> ``torch.compile`` output)."""
        return dict(self._compiled)


def compile_towers(
    model: SiglipModel,
    *,
    backend: str | Callable[..., Any] = "inductor",
    mode: str | None = None,
    freezing: bool = True,
) -> CompiledTowers:
    """Compile ``encode_image`` / ``encode_text`` with ``torch.compile`` for fast inference.

    One compiled graph per tower serves every batch size >= 2 (the batch axis is dynamic; batch 1
    compiles its own graph once). A NaFlex model's ``encode_image_naflex`` compiles one graph
    per sequence length ``L``. Outputs equal eager within float32 rounding (the tests hold
    them to 1e-5). Compiling takes a while (tens of seconds per tower for B/16 on a CPU), so it
    pays off for more than a few batches. Calls run under ``torch.inference_mode``.

    Args:
        model: a :class:`~siglip_models.torch.SiglipModel`, put in eval mode.
        backend: the ``torch.compile`` backend (``"inductor"``; ``"aot_eager"`` to debug) or a
            backend function.
        mode: the ``torch.compile`` mode, e.g. ``"max-autotune-no-cudagraphs"`` (None: default).
        freezing: make the weights constants of the graph (Inductor pre-packs and fuses them;
            the weights must not change afterwards). False keeps them as graph inputs.

    Returns:
        A :class:`CompiledTowers` with ``encode_image`` and ``encode_text`` (and
        ``encode_image_naflex`` for a NaFlex model).

    Raises:
        TypeError: if ``model`` is not a ``siglip_models.torch.SiglipModel``.

    Examples:
        >>> import torch
        >>> from siglip_models.torch import SiglipModel
        >>> from siglip_models.torch import compile_towers
        >>> _ = torch.manual_seed(0)
        >>> model = SiglipModel("tiny-test").eval()
        >>> towers = compile_towers(model, backend="aot_eager")  # "inductor" generates code
        >>> pixels = torch.rand(3, 3, 32, 32) * 2 - 1
        >>> with torch.inference_mode():
        ...     eager = model.encode_image(pixels)
        >>> torch.allclose(towers.encode_image(pixels), eager, atol=1e-5)
        True
    """
    return CompiledTowers(model, backend=backend, mode=mode, freezing=freezing)
