"""Evaluation datasets: labelled images for classification, images with captions for retrieval.

A dataset streams ``ImageBatch`` objects (pixels ``[batch, height, width, 3]`` float32 in [-1, 1],
item keys, and labels or captions), so 50,000 ImageNet images never sit in memory at once. Readers:

- arrays (``classification_arrays``, ``retrieval_arrays``),
- an image folder with one sub-folder per class (``image_folder``),
- the Karpathy-split JSON of COCO / Flickr30k (``karpathy_json``) and a JSON-lines file
  (``retrieval_jsonl``),
- siglip-data WebDataset shards (``classification_shards``, ``retrieval_shards``).

Every reader decodes and resizes through one pipeline, ``siglip_data.preprocess_image`` (EXIF
orientation, transparency on white, 16-bit scaling, squash resize, ``x * 2 / 255 - 1``), so the
reader you pick never changes the pixels.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from typing import Literal

import numpy as np
from PIL import Image
from PIL import UnidentifiedImageError

from siglip_data import DecodeOptions
from siglip_data import normalize_uint8_pixels
from siglip_data import preprocess_image
from siglip_eval._validation import check_captions
from siglip_eval._validation import check_class_names
from siglip_eval._validation import check_every_class_present
from siglip_eval._validation import stack_pixels

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm")

# PIL image -> [height, width, 3] float32 in [-1, 1], or a siglip_data.naflex.NaflexPatches
# record (NaFlex models: e.g. functools.partial(naflex_preprocess, max_num_patches=256)).
Preprocess = Callable[[Image.Image], Any]
# siglip_data.preprocess_image kernels (siglip-data checks the name: DecodeOptions).
Resample = Literal["bicubic", "bilinear", "pil_bilinear"]


@dataclasses.dataclass
class ImageBatch:
    """One batch of a dataset.

    Attributes:
        pixels: ``[batch, height, width, 3]`` float32 in [-1, 1], or a
            ``siglip_data.naflex.NaflexBatch`` when the reader's ``preprocess`` gives NaFlex
            records (an encoder over a NaFlex model takes it as it is).
        keys: ``[batch]`` item names (file paths, shard keys, row numbers) used in errors and caches.
        labels: ``[batch]`` int class indices (classification) or None.
        captions: per image, its list of captions (retrieval) or None.
    """

    pixels: Any
    keys: list[str]
    labels: np.ndarray | None = None
    captions: list[list[str]] | None = None


@dataclasses.dataclass
class ClassificationDataset:
    """Labelled images: ``batches(batch_size)`` yields ``ImageBatch`` with ``labels`` set.

    Attributes:
        name: dataset name (errors, cache keys, reports).
        class_names: ``[classes]`` names used in the prompts, index = label.
        batches: ``batch_size -> Iterator[ImageBatch]``; may be called once per evaluation.
        size: number of images when known (progress bar), else None.
    """

    name: str
    class_names: list[str]
    batches: Callable[[int], Iterator[ImageBatch]]
    size: int | None = None


@dataclasses.dataclass
class RetrievalDataset:
    """Images with one or more captions each: ``batches`` yields ``ImageBatch`` with ``captions``.

    Attributes:
        name: dataset name (errors, cache keys, reports).
        batches: ``batch_size -> Iterator[ImageBatch]``; may be called once per evaluation.
        size: number of images when known (progress bar), else None.
    """

    name: str
    batches: Callable[[int], Iterator[ImageBatch]]
    size: int | None = None


def load_image(path: str | os.PathLike[str], preprocess: Preprocess, *, dataset: str) -> Any:
    """Decode the image file at ``path`` and preprocess it, naming the file and dataset on failure.

    Returns ``[height, width, 3]`` float32 pixels, or the NaFlex record a NaFlex ``preprocess``
    made.
    """
    try:
        with Image.open(path) as image:
            image.load()
            pixels = preprocess(image)
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"dataset {dataset!r}: image file {str(path)!r} does not exist"
        ) from error
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(
            f"dataset {dataset!r}: cannot decode image {str(path)!r}: {error}"
        ) from error
    return _check_pixels(pixels, dataset=dataset, key=str(path))


def _check_pixels(pixels: Any, *, dataset: str, key: str) -> Any:
    from siglip_data.naflex import NaflexPatches

    if isinstance(pixels, NaflexPatches):
        return pixels
    array = np.asarray(pixels)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(
            f"dataset {dataset!r}: expected preprocessed pixels of shape [height, width, 3] for item"
            f" {key!r}, got shape {array.shape}"
        )
    return array.astype(np.float32, copy=False)


def check_image_options(image_size: int, resample: Resample) -> None:
    """Reject a bad ``image_size`` or ``resample`` when the reader is made, not at the first batch."""
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, (int, np.integer))
        or image_size < 1
    ):
        raise ValueError(f"image_size: expected a positive int, got {image_size!r}")
    DecodeOptions(resample=resample)  # siglip-data owns the list of kernels and the message


def _default_preprocess(
    image_size: int, resample: Resample, preprocess: Preprocess | None
) -> Preprocess:
    if preprocess is not None:
        return preprocess
    check_image_options(image_size, resample)
    return functools.partial(preprocess_image, size=int(image_size), resample=resample)


def classification_arrays(
    pixels: Any, labels: Any, class_names: Sequence[str], *, name: str = "arrays"
) -> ClassificationDataset:
    """A classification dataset over in-memory arrays.

    Args:
        pixels: ``[images, height, width, 3]`` float in [-1, 1] (uint8 in [0, 255] is converted
            with ``siglip_data.normalize_uint8_pixels``).
        labels: ``[images]`` int class indices.
        class_names: ``[classes]`` names.
        name: dataset name.

    Returns:
        A ``ClassificationDataset`` over the arrays.

    Raises:
        ValueError: no images, counts disagree, a label out of range, or a class with no images.
    """
    images = _as_pixel_array(pixels, name=name)
    names = check_class_names(class_names, dataset=name)
    vector = np.asarray(labels)
    if vector.shape != (images.shape[0],):
        raise ValueError(
            f"labels (dataset {name!r}): expected shape [{images.shape[0]}] (one per image), got {vector.shape}"
        )
    vector = vector.astype(np.int64)
    if np.any((vector < 0) | (vector >= len(names))):
        row = int(np.flatnonzero((vector < 0) | (vector >= len(names)))[0])
        raise ValueError(
            f"labels (dataset {name!r}): expected values in [0, {len(names)}), got {int(vector[row])} at item {row}"
        )
    check_every_class_present(vector, names, dataset=name)

    def batches(batch_size: int) -> Iterator[ImageBatch]:
        for start in range(0, images.shape[0], batch_size):
            stop = min(start + batch_size, images.shape[0])
            yield ImageBatch(
                pixels=images[start:stop],
                keys=[str(i) for i in range(start, stop)],
                labels=vector[start:stop],
            )

    return ClassificationDataset(
        name=name, class_names=names, batches=batches, size=images.shape[0]
    )


def retrieval_arrays(
    pixels: Any, captions: Sequence[Sequence[str]], *, name: str = "arrays"
) -> RetrievalDataset:
    """A retrieval dataset over in-memory arrays: ``captions[i]`` are the captions of image i.

    Args:
        pixels: ``[images, height, width, 3]`` float in [-1, 1] (uint8 in [0, 255] is converted
            with ``siglip_data.normalize_uint8_pixels``).
        captions: ``[images]`` lists of captions (a plain string counts as one caption).
        name: dataset name.

    Returns:
        A ``RetrievalDataset`` over the arrays.

    Raises:
        ValueError: no images, ``len(captions) != images``, or an image with no caption.
    """
    images = _as_pixel_array(pixels, name=name)
    if len(captions) != images.shape[0]:
        raise ValueError(
            f"captions (dataset {name!r}): expected one caption list per image ({images.shape[0]}), got {len(captions)}"
        )
    lists = [check_captions(c, dataset=name, key=str(i)) for i, c in enumerate(captions)]

    def batches(batch_size: int) -> Iterator[ImageBatch]:
        for start in range(0, images.shape[0], batch_size):
            stop = min(start + batch_size, images.shape[0])
            yield ImageBatch(
                pixels=images[start:stop],
                keys=[str(i) for i in range(start, stop)],
                captions=lists[start:stop],
            )

    return RetrievalDataset(name=name, batches=batches, size=images.shape[0])


def _as_pixel_array(pixels: Any, *, name: str) -> np.ndarray:
    images = np.asarray(pixels)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"pixels (dataset {name!r}): expected shape [images, height, width, 3], got {images.shape}"
        )
    if images.shape[0] == 0:
        raise ValueError(
            f"pixels (dataset {name!r}): expected at least one image, got an empty dataset"
        )
    if images.dtype == np.uint8:
        return normalize_uint8_pixels(images)
    return images.astype(np.float32, copy=False)


def image_folder(
    root: str | os.PathLike[str],
    *,
    image_size: int,
    class_names: Sequence[str] | None = None,
    name: str | None = None,
    resample: Resample = "bicubic",
    preprocess: Preprocess | None = None,
) -> ClassificationDataset:
    """Images in ``root/<class folder>/<image>``; classes are the sorted folder names.

    Args:
        root: folder with one sub-folder per class.
        image_size: the model's square resolution; images go through
            ``siglip_data.preprocess_image(image, size=image_size, resample=resample)``.
        class_names: prompt names in sorted-folder order (defaults to the folder names with ``_``
            replaced by spaces).
        name: dataset name (defaults to the folder name).
        resample: ``siglip_data.preprocess_image`` kernel: ``"bicubic"`` (Pillow, as the Hugging
            Face SigLIP processor), ``"bilinear"`` (big_vision's ``tf.image.resize``) or
            ``"pil_bilinear"``.
        preprocess: replaces the default preprocessing: ``PIL.Image -> [height, width, 3]``
            float32 in [-1, 1] (``image_size`` and ``resample`` are then unused).

    Returns:
        A ``ClassificationDataset`` that reads the files lazily, batch by batch.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: no class folders, a class folder with no images, ``class_names`` of the
            wrong length, or a bad ``image_size`` / ``resample``.
    """
    folder = Path(root)
    dataset = name or folder.name
    if not folder.is_dir():
        raise FileNotFoundError(
            f"root (dataset {dataset!r}): expected a folder, got {str(folder)!r}"
        )
    class_folders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_folders:
        raise ValueError(
            f"dataset {dataset!r}: expected one sub-folder per class in {str(folder)!r}, got none"
        )
    files: list[Path] = []
    labels: list[int] = []
    for label, class_folder in enumerate(class_folders):
        images = sorted(
            p for p in class_folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not images:
            raise ValueError(
                f"dataset {dataset!r}: class folder {str(class_folder)!r} has no images"
                f" (suffixes {', '.join(IMAGE_SUFFIXES)})"
            )
        files.extend(images)
        labels.extend([label] * len(images))
    if class_names is None:
        names = [p.name.replace("_", " ") for p in class_folders]
    else:
        names = list(class_names)
        if len(names) != len(class_folders):
            raise ValueError(
                f"class_names (dataset {dataset!r}): expected {len(class_folders)} names (one per"
                f" folder), got {len(names)}"
            )
    names = check_class_names(names, dataset=dataset)
    transform = _default_preprocess(image_size, resample, preprocess)
    label_array = np.asarray(labels, dtype=np.int64)

    def batches(batch_size: int) -> Iterator[ImageBatch]:
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            keys = [str(p.relative_to(folder)) for p in chunk]
            pixels = [load_image(p, transform, dataset=dataset) for p in chunk]
            yield ImageBatch(
                pixels=stack_pixels(pixels, keys, dataset=dataset),
                keys=keys,
                labels=label_array[start : start + batch_size],
            )

    return ClassificationDataset(name=dataset, class_names=names, batches=batches, size=len(files))


def karpathy_json(
    annotation_file: str | os.PathLike[str],
    image_root: str | os.PathLike[str],
    *,
    image_size: int,
    split: str = "test",
    captions_per_image: int | None = None,
    name: str | None = None,
    resample: Resample = "bicubic",
    preprocess: Preprocess | None = None,
) -> RetrievalDataset:
    """COCO / Flickr30k retrieval in the Karpathy-split JSON layout (``dataset_coco.json``).

    The file holds ``{"images": [{"filename", "filepath"?, "split", "sentences": [{"raw"}, ...]}]}``;
    the image is ``image_root/filepath/filename`` (``filepath`` is absent for Flickr30k). The
    Karpathy test split is 5,000 images / 25,010 captions for COCO and 1,000 images / 5,000
    captions for Flickr30k; ``captions_per_image=5`` keeps the first five captions of each image
    (COCO then has exactly 25,000).

    Args:
        annotation_file: the Karpathy JSON file.
        image_root: the folder the JSON's ``filepath/filename`` are relative to.
        image_size: the model's square resolution (``siglip_data.preprocess_image``).
        split: the Karpathy split to read (``"test"``, ``"val"``, ``"train"``, ``"restval"``).
        captions_per_image: keep only the first N captions of each image; None keeps all.
        name: dataset name (defaults to ``<file stem>:<split>``).
        resample: ``siglip_data.preprocess_image`` kernel (see ``image_folder``).
        preprocess: replaces the default preprocessing (see ``image_folder``).

    Returns:
        A ``RetrievalDataset`` that reads the images lazily, batch by batch.

    Raises:
        FileNotFoundError: the annotation file is missing.
        ValueError: the JSON has no ``images`` list, no image in ``split``, an image without
            sentences (named by file name), or a bad ``image_size`` / ``resample``.
    """
    path = Path(annotation_file)
    dataset = name or f"{path.stem}:{split}"
    if not path.is_file():
        raise FileNotFoundError(f"annotation_file (dataset {dataset!r}): no file {str(path)!r}")
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise ValueError(
            f"annotation_file (dataset {dataset!r}): expected a Karpathy JSON object with an"
            f" 'images' list, got {type(document).__name__} with keys {sorted(document)[:5] if isinstance(document, dict) else '-'}"
        )
    if captions_per_image is not None and captions_per_image < 1:
        raise ValueError(
            f"captions_per_image: expected None or a positive int, got {captions_per_image}"
        )
    root = Path(image_root)
    entries: list[tuple[Path, str, list[str]]] = []
    for record in document["images"]:
        if record.get("split") != split:
            continue
        relative = Path(record.get("filepath", "")) / record["filename"]
        raw = [sentence.get("raw", "") for sentence in record.get("sentences", [])]
        texts = check_captions([t.strip() for t in raw], dataset=dataset, key=str(relative))
        if captions_per_image is not None:
            texts = texts[:captions_per_image]
        entries.append((root / relative, str(relative), texts))
    if not entries:
        splits = sorted({str(r.get("split")) for r in document["images"]})
        raise ValueError(
            f"dataset {dataset!r}: expected images with split {split!r}, got none (splits present: {splits})"
        )
    return _file_retrieval(
        entries, dataset=dataset, transform=_default_preprocess(image_size, resample, preprocess)
    )


def retrieval_jsonl(
    path: str | os.PathLike[str],
    *,
    image_size: int,
    image_root: str | os.PathLike[str] | None = None,
    name: str | None = None,
    resample: Resample = "bicubic",
    preprocess: Preprocess | None = None,
) -> RetrievalDataset:
    """Retrieval pairs from a JSON-lines file: ``{"image": path, "captions": [...]}`` per line.

    ``"caption": str`` is accepted for one caption; lines naming the same image are merged (in
    order). Relative image paths resolve against ``image_root`` (default: the file's folder).

    Args:
        path: the ``.jsonl`` file.
        image_size: the model's square resolution (``siglip_data.preprocess_image``).
        image_root: the folder relative image paths resolve against.
        name: dataset name (defaults to the file's stem).
        resample: ``siglip_data.preprocess_image`` kernel (see ``image_folder``).
        preprocess: replaces the default preprocessing (see ``image_folder``).

    Returns:
        A ``RetrievalDataset`` that reads the images lazily, batch by batch.

    Raises:
        FileNotFoundError: ``path`` is missing.
        ValueError: a line that is not a JSON object with ``image`` and ``captions`` /
            ``caption`` (named by line number), an empty caption, an empty file, or a bad
            ``image_size`` / ``resample``.
    """
    source = Path(path)
    dataset = name or source.stem
    if not source.is_file():
        raise FileNotFoundError(f"path (dataset {dataset!r}): no file {str(source)!r}")
    root = Path(image_root) if image_root is not None else source.parent
    order: list[str] = []
    merged: dict[str, list[str]] = {}
    for line_number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"dataset {dataset!r}: line {line_number} is not JSON: {error}"
            ) from error
        if not isinstance(record, dict) or "image" not in record:
            raise ValueError(
                f"dataset {dataset!r}: line {line_number}: expected an object with 'image'"
            )
        captions = record.get("captions", record.get("caption"))
        if captions is None:
            raise ValueError(
                f"dataset {dataset!r}: line {line_number} (image {record['image']!r}): expected"
                " 'captions' (list) or 'caption' (str)"
            )
        texts = check_captions(
            captions, dataset=dataset, key=f"{record['image']} (line {line_number})"
        )
        if record["image"] not in merged:
            order.append(record["image"])
            merged[record["image"]] = []
        merged[record["image"]].extend(texts)
    if not order:
        raise ValueError(
            f"dataset {dataset!r}: expected at least one image, got an empty file {str(source)!r}"
        )
    entries = [(root / image, image, merged[image]) for image in order]
    return _file_retrieval(
        entries, dataset=dataset, transform=_default_preprocess(image_size, resample, preprocess)
    )


def _file_retrieval(
    entries: list[tuple[Path, str, list[str]]], *, dataset: str, transform: Preprocess
) -> RetrievalDataset:
    def batches(batch_size: int) -> Iterator[ImageBatch]:
        for start in range(0, len(entries), batch_size):
            chunk = entries[start : start + batch_size]
            keys = [key for _, key, _ in chunk]
            pixels = [load_image(file, transform, dataset=dataset) for file, _, _ in chunk]
            yield ImageBatch(
                pixels=stack_pixels(pixels, keys, dataset=dataset),
                keys=keys,
                captions=[texts for _, _, texts in chunk],
            )

    return RetrievalDataset(name=dataset, batches=batches, size=len(entries))
