"""A tower exported by ``siglip_models.torch.export_onnx``, run by onnxruntime, numpy in and out."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from siglip_models._config import SiglipConfig
from siglip_models._layout import check_pixels
from siglip_models._layout import check_token_ids
from siglip_models._layout import config_from_hf_dict
from siglip_models._naflex import check_naflex_inputs

_PREFIX = "siglip_models."


class OnnxTower:
    """One exported tower (image, NaFlex image or text) in an onnxruntime session.

    The file's metadata (written by :func:`siglip_models.torch.export_onnx`) says which tower it
    is, what it takes and the model's config; calls check their input against it, as the eager
    model does, and return float32 ``[batch, embed]`` embeddings (not normalised). A NaFlex image
    tower (``max_num_patches`` set) is called with ``(patches, patch_mask, spatial_shapes)``.

    Args:
        path: the ``.onnx`` file (its ``.data`` file, if any, beside it).
        threads: intra-op threads (None: onnxruntime's default, one per physical core).
        providers: onnxruntime execution providers (default ``["CPUExecutionProvider"]``).

    Raises:
        ImportError: onnxruntime is not installed.
        ValueError: the file was not written by ``export_onnx`` (no ``siglip_models.*`` metadata).

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> import torch
        >>> from siglip_models.onnx import OnnxTower
        >>> from siglip_models.torch import SiglipModel
        >>> from siglip_models.torch import export_onnx
        >>> _ = torch.manual_seed(0)
        >>> model = SiglipModel("tiny-test").eval()
        >>> path = export_onnx(model, tempfile.mkdtemp() + "/image.onnx", tower="image")
        >>> tower = OnnxTower(path, threads=1)
        >>> tower.tower, tower.embed_dim
        ('image', 32)
        >>> pixels = np.zeros((5, 3, 32, 32), np.float32)
        >>> tower(pixels).shape
        (5, 32)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
    ) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError(
                f"OnnxTower needs onnxruntime: pip install 'siglip-models[onnx]' ({error})"
            ) from None
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        self.path = os.fspath(path)
        self.session = onnxruntime.InferenceSession(
            self.path, options, providers=list(providers or ["CPUExecutionProvider"])
        )
        metadata = self.session.get_modelmeta().custom_metadata_map
        if _PREFIX + "tower" not in metadata:
            raise ValueError(
                f"OnnxTower: {self.path!r} has no siglip_models metadata; export it with "
                "siglip_models.torch.export_onnx"
            )
        self.tower: str = metadata[_PREFIX + "tower"]
        self.dtype: str = metadata[_PREFIX + "dtype"]
        self.embed_dim = int(metadata[_PREFIX + "embed_dim"])
        self.config: SiglipConfig = config_from_hf_dict(
            json.loads(metadata[_PREFIX + "config"]), source=self.path
        )
        self.input_names: tuple[str, ...] = tuple(i.name for i in self.session.get_inputs())
        self.input_name: str = self.input_names[0]
        #: The sequence length ``L`` of a NaFlex image tower; None for the other towers.
        self.max_num_patches: int | None = (
            int(metadata[_PREFIX + "max_num_patches"])
            if metadata.get(_PREFIX + "max_num_patches")
            else None
        )

    def __call__(
        self, inputs: Any, patch_mask: Any = None, spatial_shapes: Any = None
    ) -> np.ndarray:
        """Embed a batch: NCHW pixels (image tower), NaFlex patches, or token ids (text tower).

        Args:
            inputs: ``[batch, 3, image_size, image_size]`` float in [-1, 1] (image),
                ``[batch, max_num_patches, 3 * patch_size**2]`` patches (NaFlex image) or
                ``[batch, max_length]`` integer ids (text); any array-like.
            patch_mask: NaFlex only: ``[batch, max_num_patches]`` bool (or 0/1), valid first.
            spatial_shapes: NaFlex only: ``[batch, 2]`` integer ``(rows, cols)``.

        Returns:
            ``[batch, embed]`` float32.

        Raises:
            ValueError: a shape (or, for text, a dtype) the tower does not take; NaFlex inputs
                that do not fit each other (as ``encode_image_naflex``), or given to a tower that
                is not NaFlex, or missing for one.
        """
        array = np.asarray(inputs)
        if self.max_num_patches is not None:
            return self._naflex(array, patch_mask, spatial_shapes)
        if patch_mask is not None or spatial_shapes is not None:
            raise ValueError(
                f"OnnxTower: patch_mask / spatial_shapes are NaFlex inputs, and {self.path!r} is "
                f"a {'text' if self.tower == 'text' else 'fixed-resolution image'} tower"
            )
        if self.tower == "text":
            check_token_ids(
                array.shape,
                array.dtype,
                is_integer=bool(np.issubdtype(array.dtype, np.integer)),
                max_length=self.config.text.max_length,
            )
            feed = np.ascontiguousarray(array, dtype=np.int64)
        else:
            check_pixels(array.shape, self.config.vision.image_size, channels_last=False)
            feed = np.ascontiguousarray(array, dtype=np.float32)
        return self._run(feed)

    def _naflex(self, patches: np.ndarray, patch_mask: Any, spatial_shapes: Any) -> np.ndarray:
        if patch_mask is None or spatial_shapes is None:
            raise ValueError(
                f"OnnxTower: {self.path!r} is a NaFlex image tower: call it with (patches, "
                "patch_mask, spatial_shapes) from siglip_data.naflex.collate_naflex"
            )
        mask = np.asarray(patch_mask)
        shapes = np.asarray(spatial_shapes)
        length = self.max_num_patches
        if patches.ndim != 3 or patches.shape[1] != length:
            raise ValueError(
                f"OnnxTower: patches must be [batch, max_num_patches={length}, 3 * patch_size**2] "
                f"(the tower was exported for L = {length}; preprocess with "
                f"max_num_patches={length}), got shape {patches.shape}"
            )
        check_naflex_inputs(patches.shape, mask, shapes, patch_size=self.config.vision.patch_size)
        return self._run(
            np.ascontiguousarray(patches, dtype=np.float32),
            np.ascontiguousarray(mask, dtype=bool),
            np.ascontiguousarray(shapes, dtype=np.int64),
        )

    def _run(self, *feeds: np.ndarray) -> np.ndarray:
        (embeddings,) = self.session.run(None, dict(zip(self.input_names, feeds, strict=True)))
        out: np.ndarray = np.asarray(embeddings, dtype=np.float32)
        return out
