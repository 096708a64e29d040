"""Shared test setup: hypothesis profiles and small checkpoints built locally (never downloaded)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings

# One rule in every package: deterministic ("ci") unless HYPOTHESIS_PROFILE says otherwise. No
# deadline: first calls compile (jit) or warm up kernels.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    max_examples=20,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _random_transformers_model(name: str, seed: int) -> object:
    """A transformers ``SiglipModel`` (``Siglip2Model`` for a NaFlex config) for our registered
    config ``name``, with random weights.

    Built on the meta device and filled directly (transformers' own init of a B/16 takes long on
    two cores). Biases, LayerNorms, probe and logit scale/bias get non-default values too: a port
    that dropped a bias or a LayerNorm affine would still match transformers' zero/one init.
    """
    import torch
    import transformers

    from siglip_models import config_to_hf_dict
    from siglip_models import get_config

    config = get_config(name)
    # NaFlex configs are transformers' Siglip2Model (model_type "siglip2").
    naflex = config.vision.naflex
    config_class = transformers.Siglip2Config if naflex else transformers.SiglipConfig
    model_class = transformers.Siglip2Model if naflex else transformers.SiglipModel
    hf_config = config_class.from_dict(config_to_hf_dict(config))
    with torch.device("meta"):
        model = model_class(hf_config)
    model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter_name, parameter in model.named_parameters():
            if parameter_name == "logit_scale":
                parameter.fill_(2.3)
            elif parameter_name == "logit_bias":
                parameter.fill_(-7.0)
            elif (
                parameter_name.endswith("norm1.weight")
                or "layernorm.weight" in parameter_name
                or parameter_name.endswith(("norm2.weight", "final_layer_norm.weight"))
            ):
                parameter.normal_(1.0, 0.1, generator=generator)
            elif parameter.ndim == 1:
                parameter.normal_(0.0, 0.1, generator=generator)
            elif "embedding" in parameter_name or "probe" in parameter_name:
                parameter.normal_(0.0, 0.5, generator=generator)
            else:
                fan_in = parameter[0].numel()
                parameter.normal_(0.0, fan_in**-0.5, generator=generator)
        # to_empty leaves buffers uninitialised: restore the position ids.
        for module_name, buffer in model.named_buffers():
            if module_name.endswith("position_ids"):
                buffer.copy_(torch.arange(buffer.shape[-1]).expand_as(buffer))
    return model.eval()


@pytest.fixture(scope="session")
def hf_reference(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, Any]]:
    """``hf_reference(config_name)`` -> ``(directory, transformers_model)``, cached per session.

    The transformers model has random weights (see ``_random_transformers_model``) and was saved
    with its own ``save_pretrained`` to ``directory``, so transformers decides key names and
    shapes. Nothing is downloaded.
    """
    cache: dict[str, tuple[Path, Any]] = {}

    def build(name: str) -> tuple[Path, Any]:
        if name not in cache:
            model = _random_transformers_model(name, seed=len(cache))
            directory = tmp_path_factory.mktemp(f"hf-{name}")
            model.save_pretrained(directory)  # type: ignore[attr-defined]
            cache[name] = (directory, model)
        return cache[name]

    return build


@pytest.fixture(scope="session")
def naflex_batch() -> Callable[..., tuple[Any, Any, Any]]:
    """``naflex_batch(shapes, length, seed)`` -> numpy ``(patches, patch_mask, spatial_shapes)``
    for ``tiny-test-naflex`` (4-pixel patches: 48 numbers each): random patches in [-1, 1] for
    images of the given ``(rows, cols)`` grids, padded to ``length`` (the padding random too)."""
    import numpy as np

    def build(shapes: list[tuple[int, int]], length: int, seed: int) -> tuple[Any, Any, Any]:
        rng = np.random.default_rng(seed)
        spatial_shapes = np.asarray(shapes, dtype=np.int64)
        counts = spatial_shapes.prod(axis=1)
        patch_mask = np.arange(length)[None, :] < counts[:, None]
        patches = rng.uniform(-1, 1, (len(shapes), length, 48)).astype(np.float32)
        return patches, patch_mask, spatial_shapes

    return build
