"""Test harness for siglip-eval: hypothesis profiles and a toy encoder with known embeddings.

Hypothesis profiles, chosen by ``HYPOTHESIS_PROFILE`` (default ``ci``, the same rule in every
package): ``ci`` is derandomized (the same 20 examples on every run) with no deadline; ``dev`` is
random with 200 examples. Tests set no example counts of their own above the profile's.

Tests that build an offline dataset from Debian packages call the ``debian_data`` fixture
(``debian_data("emoji-multilingual")``): it skips, naming the install command, when the packages
are missing, unless ``SIGLIP_REQUIRE_DATA=1`` (CI installs them), where it fails.
"""

from __future__ import annotations

import importlib.util
import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import settings

from siglip_eval import Encoder

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

if importlib.util.find_spec("torch") is not None:
    import torch

    # Tiny models on a 2-core machine shared with other jobs: extra threads only contend.
    torch.set_num_threads(1)

COLORS = {"red": (1.0, -1.0, -1.0), "green": (-1.0, 1.0, -1.0), "blue": (-1.0, -1.0, 1.0)}


def color_encoder(name: str = "color-toy") -> Encoder:
    """Images embed to their mean RGB; a text embeds to the RGB of the color it names.

    A prompt naming "red" maps to (1, -1, -1) etc., so zero-shot on solid-color images is exact.
    """

    def encode_images(pixels: np.ndarray) -> np.ndarray:
        return pixels.reshape(len(pixels), -1, 3).mean(axis=1)

    def encode_texts(texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            words = set(re.findall(r"[a-z]+", text.lower()))
            match = [rgb for color, rgb in COLORS.items() if color in words]
            if len(match) != 1:
                raise AssertionError(f"toy encoder cannot embed {text!r}")
            rows.append(match[0])
        return np.asarray(rows)

    return Encoder(encode_images=encode_images, encode_texts=encode_texts, name=name)


def solid_images(colors: list[str], size: int = 8, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = np.stack([np.broadcast_to(np.asarray(COLORS[c]), (size, size, 3)) for c in colors])
    return (pixels + noise * rng.normal(size=pixels.shape)).astype(np.float32)


def require_debian_data(*datasets: str) -> None:
    """Skip (or fail under ``SIGLIP_REQUIRE_DATA=1``) when a Debian dataset is not installed."""
    import siglip_data

    try:
        siglip_data.builders.check_debian_packages(*datasets)
    except siglip_data.builders.MissingDebianPackageError as error:
        if os.environ.get("SIGLIP_REQUIRE_DATA") == "1":
            raise
        pytest.skip(f"needs the Debian packages: {error.command}")


@pytest.fixture(scope="session")
def debian_data() -> object:
    """``debian_data("emoji-multilingual")``: skip or fail as the module docstring says."""
    return require_debian_data


@pytest.fixture
def encoder() -> Encoder:
    return color_encoder()


class Toys:
    """The toy helpers, handed to tests as a fixture (pytest's importlib mode cannot import
    conftest as a module)."""

    colors = COLORS
    color_encoder = staticmethod(color_encoder)
    solid_images = staticmethod(solid_images)


@pytest.fixture
def toys() -> type[Toys]:
    return Toys
