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

EMOJI_NAME_TEMPLATES: tuple[str, ...] = ("{name}", "an emoji of {name}.", "{subgroup}: {name}")
"""The emoji caption forms over a name (retrieval prompts are the bare name, the first form)."""
EMOJI_GROUP_TEMPLATE = "{group} emoji"
"""The group caption form and the group zero-shot prompt (``group`` lowercased)."""
EMOJI_CAPTION_WEIGHTS: tuple[float, ...] = (0.5, 0.2, 0.15, 0.15)
"""How often each emoji caption form is drawn in training: name, "an emoji of", subgroup, group."""
DEMO_TRAIN_STYLES: tuple[str, ...] = ("noto", "symbola")
"""The emoji styles the demo trains on (``siglip_data.builders.EMOJI_STYLES`` keys)."""
DEMO_HELDOUT_STYLE = "twemoji"
"""The style the demo never trains on and evaluates on (cross-style scores)."""
CACHE_VERSION = 2


@dataclasses.dataclass
class EmojiEvalSet:
    """One emoji retrieval set: images, their names (the candidates) and their groups.

    Attributes:
        pixels: ``[N, S, S, 3]`` uint8 images (composited onto white).
        names: the Unicode names, one per image, all distinct.
        groups: ``[N]`` int group label of each image.
        description: what the set measures, for reports.
    """

    pixels: npt.NDArray[np.uint8]
    names: list[str]
    groups: npt.NDArray[np.int64]
    description: str = ""


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
        emoji_train_flippable: ``[N_train]`` whether a mirror image keeps each training emoji's
            meaning (``None``: all).
        emoji_eval_sets: more retrieval sets by name (``"crossstyle_heldout"``, ...).
        emoji_train_styles: the styles of the training emoji.
        emoji_heldout_style: the style never trained on (``None``: none).
        text_statistics: how the emoji names tokenise (collisions, unknown tokens, ...).
        split_counts: ``{group: {"train": n, "heldout": n}}`` over every emoji name.
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
    emoji_train_flippable: npt.NDArray[np.bool_] | None = None
    emoji_eval_sets: dict[str, EmojiEvalSet] = dataclasses.field(default_factory=dict)
    emoji_train_styles: list[str] = dataclasses.field(default_factory=lambda: ["noto"])
    emoji_heldout_style: str | None = None
    text_statistics: dict[str, int] = dataclasses.field(default_factory=dict)
    split_counts: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)

    def tokenizer(self, length: int) -> Any:
        """The ``siglip_data.SentencePieceTokenizer`` the captions were tokenised with.

        Args:
            length: tokens per caption (padded or cut to it).

        Returns:
            The tokenizer.
        """
        from siglip_data import SentencePieceTokenizer

        return SentencePieceTokenizer(self.tokenizer_file, preset="siglip", length=length)


def emoji_caption_forms(name: str, *, subgroup: str, group: str) -> list[str]:
    """The demo's four captions of one emoji, in ``EMOJI_CAPTION_WEIGHTS`` order.

    Args:
        name: the Unicode name (``"grinning face"``).
        subgroup: its Unicode subgroup (``"face-smiling"``; hyphens become spaces).
        group: its Unicode group (``"Smileys & Emotion"``; lowercased).

    Returns:
        ``[name, "an emoji of <name>.", "<subgroup>: <name>", "<group> emoji"]``.

    Examples:
        >>> from siglip_train.demo import emoji_caption_forms
        >>> emoji_caption_forms("grinning face", subgroup="face-smiling", group="Smileys & Emotion")
        ['grinning face', 'an emoji of grinning face.', 'face smiling: grinning face', 'smileys & emotion emoji']
    """
    return [
        EMOJI_NAME_TEMPLATES[0].format(name=name),
        EMOJI_NAME_TEMPLATES[1].format(name=name),
        EMOJI_NAME_TEMPLATES[2].format(subgroup=subgroup.replace("-", " "), name=name),
        EMOJI_GROUP_TEMPLATE.format(group=group.lower()),
    ]


def _emoji_caption_forms(metadata: dict[str, Any]) -> list[str]:
    return emoji_caption_forms(
        metadata["name"], subgroup=metadata["subgroup"], group=metadata["group"]
    )


def _load_rgba(shards: tuple[str, ...], image_size: int) -> tuple[np.ndarray, list[dict]]:
    """Decode RGBA PNG shards at ``image_size`` (premultiplied resize: no dark fringes)."""
    import io

    from PIL import Image

    from siglip_data import read_shard

    pixels = []
    metadata = []
    for shard in shards:
        for sample in read_shard(shard):
            if sample.image is None:
                continue
            image = Image.open(io.BytesIO(sample.image)).convert("RGBA")
            if image.size != (image_size, image_size):
                image = (
                    image.convert("RGBa")
                    .resize((image_size, image_size), Image.Resampling.BICUBIC)
                    .convert("RGBA")
                )
            pixels.append(np.asarray(image, dtype=np.uint8))
            metadata.append(sample.metadata or {})
    if not pixels:
        return np.zeros((0, image_size, image_size, 4), dtype=np.uint8), metadata
    return np.stack(pixels), metadata


def _on_white(pixels: np.ndarray) -> npt.NDArray[np.uint8]:
    """RGBA -> RGB on white, through the same code as training (augmentation off)."""
    from siglip_data.augment import BatchAugmentation
    from siglip_data.augment import augment_batch

    if len(pixels) == 0:
        return np.zeros((*pixels.shape[:3], 3), dtype=np.uint8)
    return augment_batch(pixels, config=BatchAugmentation.off(), seed=0, step=0)


def name_statistics(tokenizer: Any, names: list[str]) -> dict[str, int]:
    """How distinct names tokenise: collisions (names sharing their ids), unknown and cut tokens.

    Args:
        tokenizer: a ``siglip_data.SentencePieceTokenizer``.
        names: distinct names.

    Returns:
        ``{"names", "names_with_a_collision", "unknown_tokens", "truncated_names",
        "text_length"}``.
    """
    ids = np.asarray(tokenizer(names))
    rows = [row.tobytes() for row in ids.astype(np.int32)]
    counts: dict[bytes, int] = {}
    for row in rows:
        counts[row] = counts.get(row, 0) + 1
    unknown_id = next(index for index, piece in tokenizer.preset.pieces if piece == "<unk>")
    pieces = tokenizer.encode_pieces(names)
    return {
        "names": len(names),
        "names_with_a_collision": sum(1 for row in rows if counts[row] > 1),
        "unknown_tokens": int(sum(piece == unknown_id for row in pieces for piece in row)),
        "truncated_names": sum(1 for row in pieces if len(row) > tokenizer.length - 1),
        "text_length": int(tokenizer.length),
    }


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
    text_length: int = 24,
    vocab_size: int = 1000,
    limit: int | None = None,
    train_styles: tuple[str, ...] = DEMO_TRAIN_STYLES,
    heldout_style: str | None = DEMO_HELDOUT_STYLE,
    npm_cache: str | os.PathLike[str] | None = None,
) -> DemoData:
    """Build (once) the emoji styles and Fashion-MNIST shards, a tokenizer, and load everything.

    Shards are built by ``siglip_data.builders.build_emoji_style`` (one directory per style,
    ``root/emoji-<style>``, all with the same name-level split) and ``build_fashion_mnist`` under
    ``root`` and reused; the decoded arrays are cached in ``root/cache-v<N>-<styles>-<size>px.npz``
    (written atomically). The builders read Debian packages (fonts-noto-color-emoji,
    fonts-symbola, unicode-data, dataset-fashion-mnist) and, for Twemoji, an ``npm pack``
    tarball in ``npm_cache``; this function installs and downloads nothing.

    Training emoji: the ``train`` split of every style in ``train_styles`` (RGBA, so that
    augmentation can vary the background). Evaluation sets: ``emoji_heldout_*`` is the held-out
    split of the first training style; ``emoji_eval_sets`` holds the held-out split of the other
    training styles (``"<style>_heldout"``) and, for ``heldout_style``, its held-out names
    (``"crossstyle_heldout"``) and as many names seen in training (``"crossstyle_seen_names"``,
    a fixed random subset), so both cross-style scores rank the same number of candidates.

    The tokenizer is trained on the training captions plus one line of every character of the
    emoji names (character coverage 1), so no name has an unknown token and held-out words are
    spelled from pieces, never learned from held-out captions.

    Args:
        root: data directory.
        image_size: side of the square images the model sees.
        text_length: tokens per caption (24: no emoji name is cut, none collides).
        vocab_size: SentencePiece vocabulary size.
        limit: build only the first ``limit`` emoji and Fashion-MNIST images per split (tests);
            the datasets then live in ``root/limit-<N>/`` and the vocabulary has at most 200
            pieces.
        train_styles: styles to train on (``siglip_data.builders.EMOJI_STYLES`` keys).
        heldout_style: a style never trained on, evaluated on (``None``: no cross-style sets).
        npm_cache: where npm tarballs are (default ``siglip_data.builders.default_npm_cache()``).

    Returns:
        :class:`DemoData`.

    Raises:
        siglip_data.builders.MissingDebianPackageError: a Debian package is not installed; the
            message holds the command that installs it.
        siglip_data.builders.MissingNpmPackageError: the held-out style's npm tarball is not
            cached; the message holds the ``npm pack`` command.
        ValueError: no training style, or the held-out style is also a training style.
    """
    import siglip_data

    if not train_styles:
        raise ValueError("train_styles is empty: the demo needs at least one emoji style")
    if heldout_style is not None and heldout_style in train_styles:
        raise ValueError(f"heldout_style {heldout_style!r} is also in train_styles {train_styles}")
    root = Path(root) if limit is None else Path(root) / f"limit-{limit}"
    root.mkdir(parents=True, exist_ok=True)
    styles = [*train_styles, *([heldout_style] if heldout_style else [])]
    # Check every package before the first (long) build, so one message names all of them.
    for style in styles:
        siglip_data.builders.check_debian_packages(
            siglip_data.builders.EMOJI_STYLES[style].debian_dataset
        )
        package = siglip_data.builders.EMOJI_STYLES[style].npm_package
        if package:
            siglip_data.builders.npm_tarball(package, npm_cache)
    siglip_data.builders.check_debian_packages("fashion-mnist")
    infos = {}
    for style in styles:
        directory = root / f"emoji-{style}"
        if not (directory / "dataset.json").is_file():
            LOGGER.warning("building the %s emoji shards in %s", style, directory)
            siglip_data.builders.build_emoji_style(
                directory, style=style, image_size=64, npm_cache=npm_cache, limit=limit
            )
        infos[style] = siglip_data.builders.load_dataset_info(directory)
    fashion_dir = root / "fashion-mnist"
    if not (fashion_dir / "dataset.json").is_file():
        LOGGER.warning("building the Fashion-MNIST shards in %s", fashion_dir)
        siglip_data.builders.build_fashion_mnist(fashion_dir, limit=limit)
    fashion_info = siglip_data.builders.load_dataset_info(fashion_dir)
    cache = root / f"cache-v{CACHE_VERSION}-{'-'.join(styles)}-{image_size}px.npz"
    meta_cache = cache.with_suffix(".json")
    if cache.is_file() and meta_cache.is_file():
        arrays = dict(np.load(cache))
        metadata = json.loads(meta_cache.read_text())
    else:
        LOGGER.warning("decoding the shards at %d px into %s", image_size, cache)
        arrays = {}
        metadata = {}
        for style in styles:
            for split in ("train", "heldout"):
                arrays[f"{style}_{split}"], metadata[f"{style}_{split}"] = _load_rgba(
                    infos[style].splits[split].shards, image_size
                )
        for split in ("train", "test"):
            arrays[f"fashion_{split}"], metadata[f"fashion_{split}"] = _load_split(
                fashion_info.splits[split].shards, image_size
            )
        # The arrays first, the metadata last: the pair counts as a cache only when both exist.
        atomic_write(cache, lambda temporary: _save_npz(temporary, arrays))
        atomic_write_text(meta_cache, json.dumps(metadata))
    groups = list(infos[styles[0]].class_names)
    train_metadata = [m for style in train_styles for m in metadata[f"{style}_train"]]
    emoji_forms = [_emoji_caption_forms(m) for m in train_metadata]
    fashion_names = list(fashion_info.caption_names)
    fashion_templates = list(fashion_info.caption_templates)
    fashion_texts = [t.format(c) for c in fashion_names for t in fashion_templates]
    # Every distinct name of every style and split (the first style draws them all).
    all_names = list(
        dict.fromkeys(
            m["name"] for key in sorted(metadata) if key[:7] != "fashion" for m in metadata[key]
        )
    )
    if limit is not None:
        vocab_size = min(vocab_size, 200)  # a few hundred captions cannot fill 1,000 pieces
    tokenizer_file = (
        root / f"tokenizer-v{CACHE_VERSION}-{'-'.join(train_styles)}-{vocab_size}.model"
    )
    if not tokenizer_file.is_file():
        unique_forms = list(dict.fromkeys(text for forms in emoji_forms for text in forms))
        corpus = unique_forms + fashion_texts * 20
        corpus += [EMOJI_GROUP_TEMPLATE.format(group=g.lower()) for g in groups] * 20
        # The alphabet of the names (characters only, no words): no unknown tokens.
        corpus += [" ".join(sorted({c for name in all_names for c in name.lower() if c != " "}))]
        siglip_data.train_sentencepiece(
            corpus,
            str(tokenizer_file),
            vocab_size=vocab_size,
            preset="siglip",
            character_coverage=1.0,
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

    def eval_set(key: str, description: str, index: np.ndarray | None = None) -> EmojiEvalSet:
        chosen = np.arange(len(metadata[key])) if index is None else index
        return EmojiEvalSet(
            pixels=_on_white(arrays[key][chosen]),
            names=[metadata[key][i]["name"] for i in chosen],
            groups=labels(key, "group_label")[chosen],
            description=description,
        )

    first = train_styles[0]
    eval_sets = {
        f"{style}_heldout": eval_set(f"{style}_heldout", f"{style} (trained style), held-out names")
        for style in train_styles[1:]
    }
    if heldout_style is not None:
        heldout = eval_set(
            f"{heldout_style}_heldout", f"{heldout_style} (never trained on), held-out names"
        )
        seen_count = min(len(heldout.names), len(metadata[f"{heldout_style}_train"]))
        seen_index = np.sort(
            np.random.default_rng(0).choice(
                len(metadata[f"{heldout_style}_train"]), seen_count, replace=False
            )
        )
        eval_sets["crossstyle_heldout"] = heldout
        eval_sets["crossstyle_seen_names"] = eval_set(
            f"{heldout_style}_train",
            f"{heldout_style} (never trained on), names seen in training",
            seen_index,
        )
    split_counts: dict[str, dict[str, int]] = {}
    for split in ("train", "heldout"):
        for m in metadata[f"{first}_{split}"]:
            counts = split_counts.setdefault(m["group"], {"train": 0, "heldout": 0})
            counts[split] += 1
    return DemoData(
        emoji_train_pixels=np.concatenate([arrays[f"{style}_train"] for style in train_styles]),
        emoji_train_captions=emoji_captions.astype(np.int32),
        emoji_heldout_pixels=_on_white(arrays[f"{first}_heldout"]),
        emoji_heldout_names=[m["name"] for m in metadata[f"{first}_heldout"]],
        emoji_heldout_groups=labels(f"{first}_heldout", "group_label"),
        emoji_groups=groups,
        fashion_train_pixels=arrays["fashion_train"],
        fashion_train_labels=labels("fashion_train", "label"),
        fashion_test_pixels=arrays["fashion_test"],
        fashion_test_labels=labels("fashion_test", "label"),
        fashion_captions=fashion_captions.astype(np.int32),
        fashion_class_names=fashion_names,
        fashion_templates=fashion_templates,
        tokenizer_file=str(tokenizer_file),
        emoji_train_flippable=np.array([bool(m["flippable"]) for m in train_metadata]),
        emoji_eval_sets=eval_sets,
        emoji_train_styles=list(train_styles),
        emoji_heldout_style=heldout_style,
        text_statistics=name_statistics(tokenizer, all_names),
        split_counts=split_counts,
    )


def _save_npz(path: Path, arrays: dict[str, Any]) -> None:
    # Through a file handle: np.savez(path) would append ".npz" to a temp name without it.
    with path.open("wb") as handle:
        np.savez(handle, **arrays)


class DemoBatches:
    """Mixed emoji + Fashion-MNIST batches, resumable, identical on every rank.

    Batch ``step`` is a pure function of ``(seed, step)``: the global batch is drawn, then this
    rank keeps its ``[rank * n, (rank + 1) * n)`` slice, so a 2-process run sees exactly the
    samples of a 1-process run. Emoji are augmented (``augment``:
    ``siglip_data.augment.augment_batch`` with ``augmentation``, itself a pure function of
    ``(seed, step)``, mirrored only where ``data.emoji_train_flippable`` allows) or only
    composited onto white, and captioned with a random caption form; Fashion-MNIST images get a
    random template caption and no augmentation. The resume state is the step (plus the seed,
    batch size and augmentation fingerprint, checked on load).

    Args:
        data: the arrays.
        batch_size: GLOBAL batch size.
        fashion_mnist_fraction: share of Fashion-MNIST samples in each batch.
        seed: data seed.
        rank: this process's rank.
        world_size: number of processes (must divide ``batch_size``).
        augment: augment the emoji (training); ``False``: only composite them onto white.
        augmentation: what augmenting does (default ``siglip_data.augment.BatchAugmentation()``).
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
        augmentation: Any = None,
    ) -> None:
        from siglip_data.augment import BatchAugmentation

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
        self.augmentation = (
            (augmentation or BatchAugmentation()) if augment else BatchAugmentation.off()
        )
        self.step = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "augmentation": self.augmentation.fingerprint(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("seed") != self.seed or state.get("batch_size") != self.batch_size:
            raise ValueError(
                f"data state {state} was saved with another seed or batch size "
                f"(now seed={self.seed}, batch_size={self.batch_size})"
            )
        saved = state.get("augmentation", self.augmentation.fingerprint())
        if saved != self.augmentation.fingerprint():
            raise ValueError(
                f"data state was saved with another augmentation ({saved}, now "
                f"{self.augmentation.fingerprint()}): the resumed batches would differ"
            )
        self.step = int(state["step"])

    def batch(self, step: int) -> dict[str, Any]:
        """The local batch number ``step`` (NHWC uint8 ``pixels``, int32 ``token_ids``)."""
        from siglip_data.augment import augment_batch

        data = self.data
        rng = np.random.default_rng([self.seed, step])
        fashion_index = rng.integers(0, len(data.fashion_train_labels), self.fashion_count)
        emoji_count = self.batch_size - self.fashion_count
        emoji_index = rng.choice(len(data.emoji_train_pixels), emoji_count, replace=False)
        templates = rng.integers(0, data.fashion_captions.shape[1], self.fashion_count)
        forms = rng.choice(len(EMOJI_CAPTION_WEIGHTS), emoji_count, p=EMOJI_CAPTION_WEIGHTS)
        flippable = (
            None if data.emoji_train_flippable is None else data.emoji_train_flippable[emoji_index]
        )
        emoji_pixels = augment_batch(
            data.emoji_train_pixels[emoji_index],
            config=self.augmentation,
            seed=self.seed,
            step=step,
            flippable=flippable,
        )
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
