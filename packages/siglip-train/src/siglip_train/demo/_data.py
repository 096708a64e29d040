"""The demo's data: Noto emoji + Fashion-MNIST built offline by siglip-data, held in memory."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from siglip_train._atomic import atomic_write
from siglip_train._atomic import atomic_write_text
from siglip_train._logging import LOGGER

# Emoji caption templates; the zero-shot group prompts use the last form.
EMOJI_NAME_TEMPLATES: tuple[str, ...] = ("{name}", "an emoji of {name}.", "{subgroup}: {name}")
EMOJI_GROUP_TEMPLATE = "{group} emoji"
# How often each emoji caption form is drawn: name, "an emoji of", subgroup, group.
EMOJI_CAPTION_WEIGHTS: tuple[float, ...] = (0.5, 0.2, 0.15, 0.15)
CACHE_VERSION = 1


@dataclasses.dataclass
class DemoData:
    """Every array the demo trains and evaluates on, at one image size.

    Attributes:
        emoji_train_pixels: ``[N_train, S, S, 3]`` uint8 emoji of the train split.
        emoji_train_captions: ``[N_train, 4, L]`` int32 token ids of each emoji's four caption
            forms (name, "an emoji of", subgroup, group; see ``EMOJI_CAPTION_WEIGHTS``).
        emoji_heldout_pixels: ``[N_heldout, S, S, 3]`` uint8 held-out emoji (unseen base names).
        emoji_heldout_names: the held-out emoji's Unicode names (retrieval captions).
        emoji_heldout_groups: ``[N_heldout]`` int group label of each held-out emoji.
        emoji_groups: the Unicode group names (index = label).
        fashion_train_pixels: ``[60000, S, S, 3]`` uint8 Fashion-MNIST train images.
        fashion_train_labels: ``[60000]`` int labels.
        fashion_test_pixels: ``[10000, S, S, 3]`` uint8 test images.
        fashion_test_labels: ``[10000]`` int labels.
        fashion_captions: ``[classes, templates, L]`` int32 token ids of every template caption.
        fashion_class_names: how captions name each class.
        fashion_templates: the caption templates (one ``{}``).
        tokenizer_file: the SentencePiece model trained on the captions.
    """

    emoji_train_pixels: npt.NDArray[np.uint8]
    emoji_train_captions: npt.NDArray[np.int32]
    emoji_heldout_pixels: npt.NDArray[np.uint8]
    emoji_heldout_names: list[str]
    emoji_heldout_groups: npt.NDArray[np.int64]
    emoji_groups: list[str]
    fashion_train_pixels: npt.NDArray[np.uint8]
    fashion_train_labels: npt.NDArray[np.int64]
    fashion_test_pixels: npt.NDArray[np.uint8]
    fashion_test_labels: npt.NDArray[np.int64]
    fashion_captions: npt.NDArray[np.int32]
    fashion_class_names: list[str]
    fashion_templates: list[str]
    tokenizer_file: str

    def tokenizer(self, length: int) -> Any:
        """The ``siglip_data.SentencePieceTokenizer`` the captions were tokenised with.

        Args:
            length: tokens per caption (padded or cut to it).

        Returns:
            The tokenizer.
        """
        from siglip_data import SentencePieceTokenizer

        return SentencePieceTokenizer(self.tokenizer_file, preset="siglip", length=length)


def _emoji_caption_forms(metadata: dict[str, Any]) -> list[str]:
    name = metadata["name"]
    subgroup = metadata["subgroup"].replace("-", " ")
    return [
        EMOJI_NAME_TEMPLATES[0].format(name=name),
        EMOJI_NAME_TEMPLATES[1].format(name=name),
        EMOJI_NAME_TEMPLATES[2].format(subgroup=subgroup, name=name),
        EMOJI_GROUP_TEMPLATE.format(group=metadata["group"].lower()),
    ]


def _load_split(shards: tuple[str, ...], image_size: int) -> tuple[np.ndarray, list[dict]]:
    from siglip_data import preprocess_image
    from siglip_data import read_shard

    pixels = []
    metadata = []
    for shard in shards:
        for sample in read_shard(shard):
            if sample.image is None:
                continue
            pixels.append(preprocess_image(sample.image, size=image_size, dtype="uint8"))
            metadata.append(sample.metadata or {})
    return np.stack(pixels), metadata


def prepare_demo_data(
    root: str | os.PathLike[str],
    *,
    image_size: int = 32,
    text_length: int = 16,
    vocab_size: int = 1000,
    limit: int | None = None,
) -> DemoData:
    """Build (once) the emoji and Fashion-MNIST shards, a tokenizer, and load everything.

    Shards are built by ``siglip_data.builders.build_emoji`` / ``build_fashion_mnist`` under ``root`` and
    reused; the decoded arrays are cached in ``root/cache-v<N>-<size>px.npz`` (written
    atomically). The builders read Debian packages (fonts-noto-color-emoji, unicode-data,
    dataset-fashion-mnist), which this function never installs.

    Args:
        root: data directory.
        image_size: side of the square images the model sees.
        text_length: tokens per caption.
        vocab_size: SentencePiece vocabulary size.
        limit: build only the first ``limit`` emoji and Fashion-MNIST images per split (tests);
            the datasets then live in ``root/limit-<N>/`` and the vocabulary has at most 200
            pieces.

    Returns:
        :class:`DemoData`.

    Raises:
        siglip_data.builders.MissingDebianPackageError: a Debian package is not installed; the message
            holds the command that installs it.
    """
    import siglip_data

    root = Path(root) if limit is None else Path(root) / f"limit-{limit}"
    root.mkdir(parents=True, exist_ok=True)
    emoji_dir = root / "emoji"
    fashion_dir = root / "fashion-mnist"
    if not (emoji_dir / "dataset.json").is_file():
        LOGGER.warning("building the emoji shards in %s", emoji_dir)
        siglip_data.builders.build_emoji(emoji_dir, image_size=64, limit=limit)
    if not (fashion_dir / "dataset.json").is_file():
        LOGGER.warning("building the Fashion-MNIST shards in %s", fashion_dir)
        siglip_data.builders.build_fashion_mnist(fashion_dir, limit=limit)
    emoji_info = siglip_data.builders.load_dataset_info(emoji_dir)
    fashion_info = siglip_data.builders.load_dataset_info(fashion_dir)
    cache = root / f"cache-v{CACHE_VERSION}-{image_size}px.npz"
    meta_cache = cache.with_suffix(".json")
    if cache.is_file() and meta_cache.is_file():
        arrays = dict(np.load(cache))
        metadata = json.loads(meta_cache.read_text())
    else:
        LOGGER.warning("decoding the shards at %d px into %s", image_size, cache)
        arrays = {}
        metadata = {}
        for name, info, split in (
            ("emoji_train", emoji_info, "train"),
            ("emoji_heldout", emoji_info, "heldout"),
            ("fashion_train", fashion_info, "train"),
            ("fashion_test", fashion_info, "test"),
        ):
            arrays[name], metadata[name] = _load_split(info.splits[split].shards, image_size)
        # The arrays first, the metadata last: the pair counts as a cache only when both exist.
        atomic_write(cache, lambda temporary: _save_npz(temporary, arrays))
        atomic_write_text(meta_cache, json.dumps(metadata))
    groups = [name for name in emoji_info.class_names]
    emoji_forms = [_emoji_caption_forms(m) for m in metadata["emoji_train"]]
    fashion_names = list(fashion_info.caption_names)
    fashion_templates = list(fashion_info.caption_templates)
    fashion_texts = [t.format(c) for c in fashion_names for t in fashion_templates]
    if limit is not None:
        vocab_size = min(vocab_size, 200)  # a few hundred captions cannot fill 1,000 pieces
    tokenizer_file = root / f"tokenizer-{vocab_size}.model"
    if not tokenizer_file.is_file():
        corpus = [text for forms in emoji_forms for text in forms] + fashion_texts * 20
        corpus += [EMOJI_GROUP_TEMPLATE.format(group=g.lower()) for g in groups] * 20
        siglip_data.train_sentencepiece(
            corpus, str(tokenizer_file), vocab_size=vocab_size, preset="siglip"
        )
    tokenizer = siglip_data.SentencePieceTokenizer(
        str(tokenizer_file), preset="siglip", length=text_length
    )
    flat = [text for forms in emoji_forms for text in forms]
    emoji_captions = tokenizer(flat).reshape(len(emoji_forms), 4, text_length)
    fashion_captions = tokenizer(fashion_texts).reshape(
        len(fashion_names), len(fashion_templates), text_length
    )

    def labels(split: str, key: str) -> npt.NDArray[np.int64]:
        return np.array([m[key] for m in metadata[split]], dtype=np.int64)

    return DemoData(
        emoji_train_pixels=arrays["emoji_train"],
        emoji_train_captions=emoji_captions.astype(np.int32),
        emoji_heldout_pixels=arrays["emoji_heldout"],
        emoji_heldout_names=[m["name"] for m in metadata["emoji_heldout"]],
        emoji_heldout_groups=labels("emoji_heldout", "group_label"),
        emoji_groups=groups,
        fashion_train_pixels=arrays["fashion_train"],
        fashion_train_labels=labels("fashion_train", "label"),
        fashion_test_pixels=arrays["fashion_test"],
        fashion_test_labels=labels("fashion_test", "label"),
        fashion_captions=fashion_captions.astype(np.int32),
        fashion_class_names=fashion_names,
        fashion_templates=fashion_templates,
        tokenizer_file=str(tokenizer_file),
    )


def _save_npz(path: Path, arrays: dict[str, Any]) -> None:
    # Through a file handle: np.savez(path) would append ".npz" to a temp name without it.
    with path.open("wb") as handle:
        np.savez(handle, **arrays)


def _translate(pixels: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
    """Shift each image by up to ``max_shift`` pixels, filling with white (the emoji background)."""
    if max_shift <= 0 or len(pixels) == 0:
        return pixels
    count, height, width, _ = pixels.shape
    padded = np.pad(
        pixels, ((0, 0), (max_shift,) * 2, (max_shift,) * 2, (0, 0)), constant_values=255
    )
    offsets = rng.integers(0, 2 * max_shift + 1, size=(count, 2))
    return np.stack(
        [padded[i, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(offsets)]
    )


class DemoBatches:
    """Mixed emoji + Fashion-MNIST batches, resumable, identical on every rank.

    Batch ``step`` is a pure function of ``(seed, step)``: the global batch is drawn, then this
    rank keeps its ``[rank * n, (rank + 1) * n)`` slice, so a 2-process run sees exactly the
    samples of a 1-process run. Emoji are shifted by up to ``image_size // 10`` pixels
    (``augment``) and captioned with a random caption form; Fashion-MNIST images get a random
    template caption.

    Args:
        data: the arrays.
        batch_size: GLOBAL batch size.
        fashion_mnist_fraction: share of Fashion-MNIST samples in each batch.
        seed: data seed.
        rank: this process's rank.
        world_size: number of processes (must divide ``batch_size``).
        augment: random translation of emoji.
    """

    def __init__(
        self,
        data: DemoData,
        *,
        batch_size: int,
        fashion_mnist_fraction: float = 0.5,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        augment: bool = True,
    ) -> None:
        if batch_size % world_size:
            raise ValueError(
                f"batch_size ({batch_size}) must be divisible by world_size ({world_size})"
            )
        self.data = data
        self.batch_size = batch_size
        self.fashion_count = round(batch_size * fashion_mnist_fraction)
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.augment = augment
        self.step = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step, "seed": self.seed, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("seed") != self.seed or state.get("batch_size") != self.batch_size:
            raise ValueError(
                f"data state {state} was saved with another seed or batch size "
                f"(now seed={self.seed}, batch_size={self.batch_size})"
            )
        self.step = int(state["step"])

    def batch(self, step: int) -> dict[str, Any]:
        """The local batch number ``step`` (NHWC uint8 ``pixels``, int32 ``token_ids``)."""
        data = self.data
        rng = np.random.default_rng([self.seed, step])
        fashion_index = rng.integers(0, len(data.fashion_train_labels), self.fashion_count)
        emoji_count = self.batch_size - self.fashion_count
        emoji_index = rng.choice(len(data.emoji_train_pixels), emoji_count, replace=False)
        templates = rng.integers(0, data.fashion_captions.shape[1], self.fashion_count)
        forms = rng.choice(len(EMOJI_CAPTION_WEIGHTS), emoji_count, p=EMOJI_CAPTION_WEIGHTS)
        emoji_pixels = data.emoji_train_pixels[emoji_index]
        if self.augment:
            emoji_pixels = _translate(emoji_pixels, rng, max(1, emoji_pixels.shape[1] // 10))
        pixels = np.concatenate([data.fashion_train_pixels[fashion_index], emoji_pixels])
        token_ids = np.concatenate(
            [
                data.fashion_captions[data.fashion_train_labels[fashion_index], templates],
                data.emoji_train_captions[emoji_index, forms],
            ]
        )
        order = rng.permutation(self.batch_size)
        local_size = self.batch_size // self.world_size
        local = order[self.rank * local_size : (self.rank + 1) * local_size]
        return {"pixels": pixels[local], "token_ids": token_ids[local]}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            batch = self.batch(self.step)
            self.step += 1
            yield batch
