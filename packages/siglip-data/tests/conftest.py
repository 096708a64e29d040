"""Shared fixtures: a tiny SentencePiece model trained on the fly and small synthetic shards.

Hypothesis: the ``ci`` profile (derandomized, 20 examples) unless ``HYPOTHESIS_PROFILE`` names
another (``dev``: random, 200 examples). Tests that read the Debian datasets are marked
``@pytest.mark.debian_data("emoji", ...)``: they skip, naming the apt line, when the packages are
missing, unless ``SIGLIP_REQUIRE_DATA=1`` (CI), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import settings

import siglip_data

# function_scoped_fixture: the dataset properties write their shards under tmp_path_factory.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    max_examples=20,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "dev",
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "debian_data(*datasets): reads the Debian packages behind these offline datasets",
    )


@pytest.fixture(autouse=True)
def _require_debian_data(request: pytest.FixtureRequest) -> None:
    """Skip a ``debian_data`` test when its packages are missing; fail under SIGLIP_REQUIRE_DATA=1."""
    marker = request.node.get_closest_marker("debian_data")
    if marker is None:
        return
    try:
        siglip_data.builders.check_debian_packages(*marker.args)
    except siglip_data.builders.MissingDebianPackageError as error:
        if os.environ.get("SIGLIP_REQUIRE_DATA") == "1":
            raise
        pytest.skip(
            f"not installed ({error.command}); SIGLIP_REQUIRE_DATA=1 turns this into a failure"
        )


SYLLABLES = ["ka", "to", "mi", "ra", "ne", "so", "lu", "pe", "di", "go", "fa", "ze", "wo", "chi"]


def make_words(count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words = set()
    while len(words) < count:
        words.add("".join(rng.choice(SYLLABLES, size=rng.integers(1, 4))))
    return sorted(words)


WORDS = make_words(120)


def make_captions(count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    captions = []
    for _ in range(count):
        words = list(rng.choice(WORDS, size=rng.integers(2, 9)))
        if rng.random() < 0.3:
            words[0] = words[0].capitalize()
        captions.append(" ".join(words) + ("." if rng.random() < 0.5 else ""))
    return captions


@pytest.fixture(scope="session")
def spm_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small SentencePiece model per preset, trained on synthetic captions."""
    directory = tmp_path_factory.mktemp("spm")
    captions = make_captions(2000)
    vocab_sizes = {"siglip": 128, "siglip2": 400}  # Gemma-style byte fallback needs 256 bytes
    return {
        preset: siglip_data.train_sentencepiece(
            captions, directory / f"{preset}.model", vocab_size=size, preset=preset
        )
        for preset, size in vocab_sizes.items()
    }


@pytest.fixture(scope="session")
def tokenizer(spm_models: dict[str, Path]) -> siglip_data.SentencePieceTokenizer:
    return siglip_data.SentencePieceTokenizer(spm_models["siglip"], preset="siglip", length=16)


def random_image(rng: np.random.Generator, height: int = 24, width: int = 32) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture
def make_shards(tmp_path: Path) -> Callable[..., list[str]]:
    """Write ``num_samples`` samples into shards of ``per_shard``; keys ``000000000``..."""

    def make(
        num_samples: int, per_shard: int, directory: str = "shards", seed: int = 0
    ) -> list[str]:
        rng = np.random.default_rng(seed)
        captions = make_captions(num_samples, seed=seed)
        samples = [
            (random_image(rng, 12, 16), captions[index], {"index": index})
            for index in range(num_samples)
        ]
        return siglip_data.write_shards(samples, tmp_path / directory, samples_per_shard=per_shard)

    return make


@pytest.fixture(scope="session")
def caption_factory() -> Callable[..., list[str]]:
    """``caption_factory(count, seed=0)``: synthetic captions from a fixed pseudo-word list."""
    return make_captions
