"""Emoji scenes in memory and the recipe's batches: captions, LocCa decoder sequences, ACID
super-batches (``siglip-data build emoji-scenes`` writes the shards)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

LOCCA_TASKS: tuple[str, ...] = ("cap", "aref", "gcap")


@dataclasses.dataclass
class SceneData:
    """One split of an emoji-scenes dataset, decoded.

    Attributes:
        pixels: ``[scenes, size, size, 3]`` uint8.
        captions: the scene captions.
        objects: per scene the objects' metadata (``name``, ``box``, ``category_label``...).
        category_maps: ``[scenes, size, size]`` per-pixel category labels (0 = background).
        image_size: the canvas side.
    """

    pixels: npt.NDArray[np.uint8]
    captions: list[str]
    objects: list[list[dict[str, Any]]]
    category_maps: npt.NDArray[np.int64]
    image_size: int


def load_scenes(
    directory: str | os.PathLike[str], split: str, *, image_size: int | None = None
) -> SceneData:
    """Decode one split of ``siglip-data build emoji-scenes`` output into arrays.

    Args:
        directory: the dataset directory (its ``dataset.json``).
        split: ``"train"``, ``"test"`` or ``"heldout"``.
        image_size: resize the canvases (and scale the boxes and maps) to this side; None keeps
            the stored size.

    Returns:
        :class:`SceneData`.
    """
    from PIL import Image

    import siglip_data

    info = siglip_data.builders.load_dataset_info(directory)
    stored = info.image_size
    size = stored if image_size is None else image_size
    pixels, captions, objects, maps = [], [], [], []
    for shard in info.splits[split].shards:
        for sample in siglip_data.read_shard(shard):
            if sample.image is None or sample.metadata is None:
                continue
            image = siglip_data.preprocess_image(sample.image, size=size, dtype="uint8")
            labels = siglip_data.builders.category_map(sample.metadata)
            if size != stored:
                labels = np.asarray(
                    Image.fromarray(labels.astype(np.uint8)).resize(
                        (size, size), Image.Resampling.NEAREST
                    ),
                    dtype=np.int64,
                )
            scale = size / stored
            items = [
                {**item, "box": [value * scale for value in item["box"]]}
                for item in sample.metadata["objects"]
            ]
            pixels.append(image)
            captions.append(sample.caption or "")
            objects.append(items)
            maps.append(labels)
    return SceneData(np.stack(pixels), captions, objects, np.stack(maps), size)


def scene_corpus(data: SceneData, *, box_bins: int) -> list[str]:
    """Texts to train a tokenizer on: captions, names, task prefixes and every box integer."""
    from siglip_data.grounding import TASK_PREFIXES

    names = sorted({item["name"] for items in data.objects for item in items})
    numbers = " ".join(str(value) for value in range(box_bins))
    return (
        list(data.captions)
        + names * 5
        + [f"{prefix} :" for prefix in TASK_PREFIXES.values()] * 50
        + [numbers] * 50
    )


def decoder_sequence(
    prefix_ids: Sequence[int],
    target_ids: Sequence[int],
    *,
    length: int,
    eos_id: int,
    pad_id: int,
) -> tuple[list[int], list[float]]:
    """``prefix + target + EOS`` padded to ``length``, and the loss weights (target and EOS).

    A target that does not fit is cut (its EOS kept); the prefix is never cut.

    Raises:
        ValueError: the task prefix plus one target token and the EOS do not fit in ``length``.

    Examples:
        >>> decoder_sequence([7, 8], [5, 6, 9], length=6, eos_id=1, pad_id=0)
        ([7, 8, 5, 6, 9, 1], [0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
        >>> decoder_sequence([7, 8], [5, 6, 9], length=5, eos_id=1, pad_id=0)
        ([7, 8, 5, 6, 1], [0.0, 0.0, 1.0, 1.0, 1.0])
    """
    room = length - len(prefix_ids) - 1
    if room < 1:
        raise ValueError(
            f"the task prefix is {len(prefix_ids)} tokens, longer than the decoder sequence of "
            f"{length} allows (prefix + at least one target token + EOS): raise "
            f"recipe.decoder_length or shorten the prefix"
        )
    target = list(target_ids)[:room]
    tokens = [*prefix_ids, *target, eos_id]
    weights = [0.0] * len(prefix_ids) + [1.0] * (len(target) + 1)
    padding = length - len(tokens)
    return tokens + [pad_id] * padding, weights + [0.0] * padding


class SceneBatches:
    """Resumable batches of scenes: pixels, caption tokens and the three LocCa sequences.

    Batch ``step`` is a pure function of ``(seed, step)`` (the same after a resume). Per scene,
    one object (drawn per step) gives the ARef and GCap targets. Keys: ``pixels`` (NHWC uint8),
    ``token_ids`` (int32 ``[batch, text_length]``), ``decoder/<task>/tokens`` (int64
    ``[batch, decoder_length]``), ``decoder/<task>/weights`` (float32, 1 on the target and EOS)
    and ``index`` (the scene indices).

    Args:
        data: the scenes.
        tokenizer: a ``siglip_data.SentencePieceTokenizer`` (its ``length`` is the caption
            length; ``encode_pieces`` gives the decoder ids).
        batch_size: scenes per batch (an ACID super-batch: ``batch / keep_fraction``).
        decoder_length: tokens per decoder sequence.
        box_bins: box quantisation bins.
        seed: data seed.

    Raises:
        ValueError: a task prefix longer than ``decoder_length`` allows, or a box outside the
            canvas (checked for every scene up front).
    """

    def __init__(
        self,
        data: SceneData,
        tokenizer: Any,
        *,
        batch_size: int,
        decoder_length: int = 24,
        box_bins: int = 100,
        seed: int = 0,
    ) -> None:
        from siglip_data.grounding import locca_prompts

        if batch_size > len(data.pixels):
            raise ValueError(f"batch_size {batch_size} exceeds the {len(data.pixels)} scenes")
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        self.step = 0
        self.caption_ids = np.asarray(tokenizer(data.captions), dtype=np.int32)
        eos_id, pad_id = int(tokenizer.eos_id), int(tokenizer.pad_id)
        # Every (scene, object) pair's three sequences, tokenised once.
        self.sequences: list[list[dict[str, tuple[list[int], list[float]]]]] = []
        for caption, items in zip(data.captions, data.objects, strict=True):
            per_object = []
            for item in items:
                prompts = locca_prompts(
                    caption, item["name"], item["box"], image_size=data.image_size, bins=box_bins
                )
                tasks = {}
                for task, (prefix, target) in prompts.items():
                    prefix_ids, target_ids = tokenizer.encode_pieces([prefix, target])
                    tasks[task] = decoder_sequence(
                        prefix_ids, target_ids, length=decoder_length, eos_id=eos_id, pad_id=pad_id
                    )
                per_object.append(tasks)
            self.sequences.append(per_object)

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step, "seed": self.seed, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("seed") != self.seed or state.get("batch_size") != self.batch_size:
            raise ValueError(f"data state {state} was saved with another seed or batch size")
        self.step = int(state["step"])

    def batch(self, step: int) -> dict[str, Any]:
        """Batch number ``step``."""
        rng = np.random.default_rng([self.seed, step])
        index = rng.choice(len(self.data.pixels), self.batch_size, replace=False)
        batch: dict[str, Any] = {
            "pixels": self.data.pixels[index],
            "token_ids": self.caption_ids[index],
            "index": index,
        }
        chosen = [int(rng.integers(0, len(self.sequences[i]))) for i in index]
        for task in LOCCA_TASKS:
            rows = [self.sequences[i][j][task] for i, j in zip(index, chosen, strict=True)]
            batch[f"decoder/{task}/tokens"] = np.array([r[0] for r in rows], dtype=np.int64)
            batch[f"decoder/{task}/weights"] = np.array([r[1] for r in rows], dtype=np.float32)
        return batch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            batch = self.batch(self.step)
            self.step += 1
            yield batch


def train_scene_tokenizer(
    data: SceneData,
    path: str | os.PathLike[str],
    *,
    vocab_size: int = 400,
    length: int = 24,
    box_bins: int = 100,
) -> Any:
    """Train (once) a SentencePiece tokenizer on the scenes' texts; returns the tokenizer."""
    import siglip_data

    path = Path(path)
    if not path.is_file():
        siglip_data.train_sentencepiece(
            scene_corpus(data, box_bins=box_bins), str(path), vocab_size=vocab_size, preset="siglip"
        )
    return siglip_data.SentencePieceTokenizer(str(path), preset="siglip", length=length)
