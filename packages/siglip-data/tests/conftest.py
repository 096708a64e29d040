"""Shared fixtures: a tiny SentencePiece model trained on the fly and small synthetic shards."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import hypothesis
import numpy as np
import pytest

import siglip_data

hypothesis.settings.register_profile("ci", derandomize=True, deadline=None, max_examples=25)
hypothesis.settings.register_profile("dev", deadline=None, max_examples=25)
hypothesis.settings.load_profile("ci" if os.environ.get("CI") else "dev")

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
