"""A batch in any accepted layout -> the tensors a step needs; which parameters each tower uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from siglip_train._protocol import TwoTowerModel


class NaflexImages(NamedTuple):
    """The image side of a NaFlex batch (``siglip_data.naflex``), as tensors on the device.

    Attributes:
        patches: ``[B, L, 3 * p * p]`` float32 in [-1, 1].
        patch_mask: ``[B, L]`` bool, True for the valid patches (a prefix).
        spatial_shapes: ``[B, 2]`` int64 ``(rows, cols)``.
    """

    patches: torch.Tensor
    patch_mask: torch.Tensor
    spatial_shapes: torch.Tensor


Images = torch.Tensor | NaflexImages
"""Square pixels ``[B, 3, H, W]`` or a NaFlex batch."""


def encode_images(model: Any, images: Images) -> torch.Tensor:
    """``model.encode_image(pixels)``, or ``model.encode_image_naflex(...)`` for NaFlex images."""
    if isinstance(images, NaflexImages):
        naflex: torch.Tensor = model.encode_image_naflex(*images)
        return naflex
    pooled: torch.Tensor = model.encode_image(images)
    return pooled


def first_images(images: Images) -> Images:
    """The first example of ``images`` (a batch of one)."""
    if isinstance(images, NaflexImages):
        return NaflexImages(*(tensor[:1] for tensor in images))
    return images[:1]


def _naflex_to_tensors(batch: Mapping[str, Any], device: torch.device) -> NaflexImages:
    tensors = {
        name: torch.from_numpy(np.asarray(value)) if not torch.is_tensor(value) else value
        for name, value in ((n, batch[n]) for n in ("patches", "patch_mask", "spatial_shapes"))
    }
    patches = tensors["patches"]
    if patches.ndim != 3 or tensors["patch_mask"].shape != patches.shape[:2]:
        raise ValueError(
            "a NaFlex batch needs patches [B, L, 3 * p * p] and patch_mask [B, L], got "
            f"{tuple(patches.shape)} and {tuple(tensors['patch_mask'].shape)}"
        )
    return NaflexImages(
        patches.to(device=device, dtype=torch.float32, non_blocking=True),
        tensors["patch_mask"].to(device=device, dtype=torch.bool, non_blocking=True),
        tensors["spatial_shapes"].to(device=device, dtype=torch.long, non_blocking=True),
    )


def batch_to_tensors(batch: Mapping[str, Any], device: torch.device) -> tuple[Images, torch.Tensor]:
    """``(pixels [B, 3, H, W] float32 in [-1, 1], token_ids [B, L] int64)`` on ``device``.

    Accepts torch or numpy arrays; NHWC arrays (last axis 3) become NCHW; uint8 pixels are mapped
    to [-1, 1] by ``siglip_data.normalize_uint8_pixels`` (the formula of siglip-data's float
    preprocessing, so uint8 and float batches of one image are the same pixels). A NaFlex batch
    (``patches``, ``patch_mask``, ``spatial_shapes``, as ``siglip_data.ImageTextDataset(naflex=
    ...)`` yields; its sequence length may change from batch to batch) gives
    :class:`NaflexImages` in place of the pixels.

    Args:
        batch: a mapping with ``pixels`` (``[B, 3, H, W]`` or ``[B, H, W, 3]``, float in [-1, 1]
            or uint8) or the three NaFlex arrays, and ``token_ids`` (``[B, L]`` integers).
        device: where the tensors go.

    Returns:
        ``(pixels, token_ids)``.

    Raises:
        TypeError: a batch that is no mapping (a tuple from a ``TensorDataset``), or pixels of
            neither a float nor uint8 dtype.
        KeyError: ``pixels`` (or ``patches``) or ``token_ids`` is missing.
        ValueError: shapes that are not ``[B, 3, H, W]`` / ``[B, H, W, 3]`` and ``[B, L]``,
            batch sizes that differ, or float pixels outside [-1, 1].

    Examples:
        >>> batch = {"pixels": np.full((2, 4, 4, 3), 255, np.uint8), "token_ids": np.ones((2, 5))}
        >>> pixels, token_ids = batch_to_tensors(batch, torch.device("cpu"))
        >>> pixels.shape, pixels.max().item(), token_ids.dtype
        (torch.Size([2, 3, 4, 4]), 1.0, torch.int64)
    """
    from siglip_data import normalize_uint8_pixels

    if not isinstance(batch, Mapping):
        what = type(batch).__name__
        if isinstance(batch, tuple | list):
            what += f" of {len(batch)} " + ", ".join(type(item).__name__ for item in batch[:3])
        raise TypeError(
            "a batch must be a mapping {'pixels': [B, 3, H, W], 'token_ids': [B, L]}, got a "
            f"{what} (a DataLoader over a TensorDataset yields tuples: wrap it, e.g. "
            "({'pixels': p, 'token_ids': t} for p, t in loader))"
        )
    if "patches" in batch and "pixels" not in batch:
        if "token_ids" not in batch:
            raise KeyError(f"batch must have 'token_ids'; it has {sorted(batch)}")
        images = _naflex_to_tensors(batch, device)
        ids = batch["token_ids"]
        ids = torch.from_numpy(np.asarray(ids)) if not torch.is_tensor(ids) else ids
        if ids.ndim != 2 or ids.shape[0] != images.patches.shape[0]:
            raise ValueError(
                f"batch['token_ids'] must be [B, L] with B = {images.patches.shape[0]} (patches), "
                f"got {tuple(ids.shape)}"
            )
        return images, ids.to(device=device, dtype=torch.long, non_blocking=True)
    for key in ("pixels", "token_ids"):
        if key not in batch:
            raise KeyError(f"batch must have {key!r}; it has {sorted(map(str, batch))}")
    pixels = batch["pixels"]
    token_ids = batch["token_ids"]
    pixels = torch.from_numpy(np.asarray(pixels)) if not torch.is_tensor(pixels) else pixels
    token_ids = (
        torch.from_numpy(np.asarray(token_ids)) if not torch.is_tensor(token_ids) else token_ids
    )
    if pixels.ndim != 4 or 3 not in (pixels.shape[1], pixels.shape[-1]):
        raise ValueError(
            f"batch['pixels'] must be [B, 3, H, W] or [B, H, W, 3], got {tuple(pixels.shape)}"
        )
    if pixels.shape[1] != 3:
        pixels = pixels.permute(0, 3, 1, 2)
    if pixels.dtype == torch.uint8:
        pixels = torch.from_numpy(normalize_uint8_pixels(pixels.cpu().numpy()))
    elif not pixels.is_floating_point():
        raise TypeError(
            f"batch['pixels'] must be float in [-1, 1] or uint8 in [0, 255], got {pixels.dtype}"
        )
    elif pixels.numel():
        low, high = float(pixels.min()), float(pixels.max())
        if low < -1.001 or high > 1.001:
            hint = (
                " (looks like [0, 255]: pass uint8 pixels, which are scaled for you, or x / 127.5 - 1)"
                if high > 1.001 and low >= 0
                else ""
            )
            raise ValueError(
                f"batch['pixels'] float values must be in [-1, 1], got [{low:.3g}, {high:.3g}]{hint}"
            )
    if token_ids.ndim != 2 or token_ids.shape[0] != pixels.shape[0]:
        raise ValueError(
            f"batch['token_ids'] must be [B, L] with B = {pixels.shape[0]} (pixels), "
            f"got {tuple(token_ids.shape)}"
        )
    pixels = pixels.to(device=device, dtype=torch.float32, non_blocking=True).contiguous()
    token_ids = token_ids.to(device=device, dtype=torch.long, non_blocking=True)
    return pixels, token_ids


def tower_parameter_names(
    model: TwoTowerModel, pixels: Images, token_ids: torch.Tensor
) -> tuple[set[str], set[str]]:
    """Which parameters each tower uses, found by differentiating each tower on one example.

    Works for any model following the protocol, whatever its attribute names. A parameter
    reached by both towers (a shared table) is in both sets.

    Args:
        model: the two-tower model (an ``nn.Module``).
        pixels: ``[batch, 3, H, W]`` (or :class:`NaflexImages`); only the first row is used.
        token_ids: ``[batch, L]``; only the first row is used.

    Returns:
        ``(image_names, text_names)``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    names, parameters = zip(*model.named_parameters(), strict=True)
    found = []
    image_inputs, text_inputs = first_images(pixels), token_ids[:1]
    for encode in (
        lambda: encode_images(model, image_inputs),
        lambda: model.encode_text(text_inputs),
    ):
        with torch.enable_grad():
            output = encode()
            grads = torch.autograd.grad(
                output.float().sum(), parameters, allow_unused=True, materialize_grads=False
            )
        found.append({name for name, grad in zip(names, grads, strict=True) if grad is not None})
    return found[0], found[1]


class ConfiguredBatches:
    """The loader ``siglip-train train`` builds from ``config.data`` (marks batches as configured).

    Delegates iteration, ``state_dict``/``load_state_dict``, ``epoch`` and ``skipped`` to
    ``loader``; ``skipped`` also counts the shards found missing before the run started, and
    ``max_bad_shards`` tells the trainer how many bad shards to tolerate per epoch.
    """

    from_config = True

    def __init__(self, loader: Any, *, missing_shards: int, max_bad_shards: int) -> None:
        self.loader = loader
        self.missing_shards = missing_shards
        self.tolerated = max_bad_shards

    @property
    def max_bad_shards(self) -> int:
        """Bad shards tolerated so far: ``data.max_bad_shards`` per epoch begun."""
        return self.tolerated * (int(getattr(self.loader, "epoch", 0)) + 1)

    @property
    def skipped(self) -> dict[str, int]:
        """The loader's skip counters, with the missing shards counted as unreadable."""
        counters = dict(getattr(self.loader, "skipped", {}))
        if self.missing_shards:
            counters["unreadable_shard"] = counters.get("unreadable_shard", 0) + (
                self.missing_shards * (int(getattr(self.loader, "epoch", 0)) + 1)
            )
        return counters

    def state_dict(self) -> Any:
        return self.loader.state_dict()

    def load_state_dict(self, state: Any) -> None:
        self.loader.load_state_dict(state)

    def __iter__(self) -> Any:
        return iter(self.loader)
