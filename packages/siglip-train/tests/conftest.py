"""Test harness for siglip-train: one torch thread, hypothesis profiles, tiny models and batches."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck
from hypothesis import settings

# Two threads on a 2-core machine shared with other jobs make tiny ops 10-100x slower.
torch.set_num_threads(1)

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

# The offline demo datasets come from Debian packages that the tests never install.
DEBIAN_APT_LINE = (
    "apt-get install -y fonts-noto-color-emoji fonts-symbola unicode-data dataset-fashion-mnist"
)
DEBIAN_FILES = (
    Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"),
    Path("/usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf"),
    Path("/usr/share/unicode/emoji/emoji-test.txt"),
    Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"),
)
# The demo's held-out style (Twemoji) comes from an npm tarball that the session fetches.
NPM_PACKAGES = ("emoji-datasource-twitter@16.0.0",)


@pytest.fixture
def debian_data() -> None:
    """Skip (naming the apt / npm line) when the demo's data is missing; fail instead when
    ``SIGLIP_REQUIRE_DATA=1`` (CI installs them, so a missing file there is a failure)."""
    from siglip_data.builders import MissingNpmPackageError
    from siglip_data.builders import npm_tarball

    missing = [str(path) for path in DEBIAN_FILES if not path.exists()]
    commands = [DEBIAN_APT_LINE] if missing else []
    for package in NPM_PACKAGES:
        try:
            npm_tarball(package)
        except MissingNpmPackageError as error:
            missing.append(package)
            commands.append(error.command)
    if not missing:
        return
    message = f"needs {missing}: {' && '.join(commands)}"
    if os.environ.get("SIGLIP_REQUIRE_DATA") == "1":
        pytest.fail(f"SIGLIP_REQUIRE_DATA=1 but the demo data is missing; {message}")
    pytest.skip(message)


def random_batches(count: int, *, batch_size: int = 8, seed: int = 0) -> list[dict]:
    """``count`` batches for the ``tiny-test`` model (32 px, 16 tokens, vocab 100)."""
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            "pixels": torch.rand(batch_size, 3, 32, 32, generator=generator) * 2 - 1,
            "token_ids": torch.randint(0, 100, (batch_size, 16), generator=generator),
        }
        for _ in range(count)
    ]


@pytest.fixture
def make_batches() -> Callable[..., list[dict]]:
    """The :func:`random_batches` factory."""
    return random_batches
