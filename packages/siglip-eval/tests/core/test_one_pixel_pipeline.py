"""One pixel pipeline: the reader you pick never changes the pixels.

Every reader decodes and resizes through ``siglip_data.preprocess_image``; the same image files
read as an image folder, as siglip-data shards, as a JSON-lines or Karpathy retrieval set give
bit-identical arrays, equal to ``preprocess_image`` itself. uint8 arrays are scaled by
``siglip_data.normalize_uint8_pixels``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import siglip_data
from siglip_eval.datasets import classification_arrays
from siglip_eval.datasets import classification_shards
from siglip_eval.datasets import image_folder
from siglip_eval.datasets import karpathy_json
from siglip_eval.datasets import retrieval_arrays
from siglip_eval.datasets import retrieval_jsonl
from siglip_eval.datasets import retrieval_shards


def awkward_images() -> dict[str, bytes]:
    """Encoded files that exercise every decode step: EXIF, alpha, palette, 16-bit, grayscale."""
    rng = np.random.default_rng(0)
    files: dict[str, bytes] = {}

    def encode(image: Image.Image, fmt: str, **options) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **options)
        return buffer.getvalue()

    noise = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
    files["rgb.png"] = encode(Image.fromarray(noise), "PNG")
    rgba = np.concatenate([noise, rng.integers(0, 256, (23, 31, 1), dtype=np.uint8)], axis=2)
    files["alpha.png"] = encode(Image.fromarray(rgba), "PNG")
    files["gray.png"] = encode(Image.fromarray(noise[:, :, 0]), "PNG")
    wide = rng.integers(0, 65536, (17, 12), dtype=np.uint16)
    files["sixteen.png"] = encode(Image.fromarray(wide), "PNG")
    files["palette.png"] = encode(Image.fromarray(noise).quantize(colors=16), "PNG")
    rotated = Image.fromarray(noise)
    exif = rotated.getexif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    files["exif.jpg"] = encode(rotated, "JPEG", exif=exif.tobytes(), quality=90)
    return files


@pytest.fixture
def image_files(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "images" / "things"
    folder.mkdir(parents=True)
    paths = []
    for name, data in sorted(awkward_images().items()):
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    return paths


def all_pixels(dataset, batch_size: int = 4) -> np.ndarray:
    return np.concatenate([batch.pixels for batch in dataset.batches(batch_size)])


@pytest.mark.parametrize("resample", ["bicubic", "bilinear", "pil_bilinear"])
def test_image_folder_shards_jsonl_and_karpathy_give_identical_pixels(
    tmp_path: Path, image_files: list[Path], resample: str
) -> None:
    size = 9
    expected = np.stack(
        [siglip_data.preprocess_image(path, size=size, resample=resample) for path in image_files]
    )
    # The shard writer stores the files' bytes as they are.
    siglip_data.write_shards(
        [
            {"image": path, "caption": path.stem, "key": path.stem, "metadata": {"label": 0}}
            for path in image_files
        ],
        tmp_path / "shards",
        samples_per_shard=4,
    )
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"image": str(p), "caption": p.stem}) + "\n" for p in image_files)
    )
    karpathy = tmp_path / "karpathy.json"
    records = [
        {"filepath": "things", "filename": p.name, "split": "test", "sentences": [{"raw": p.stem}]}
        for p in image_files
    ]
    karpathy.write_text(json.dumps({"images": records}))

    readers = {
        "image_folder": image_folder(tmp_path / "images", image_size=size, resample=resample),
        "classification_shards": classification_shards(
            tmp_path / "shards", class_names=["things"], image_size=size, resample=resample
        ),
        "retrieval_shards": retrieval_shards(
            tmp_path / "shards", image_size=size, resample=resample
        ),
        "retrieval_jsonl": retrieval_jsonl(jsonl, image_size=size, resample=resample),
        "karpathy_json": karpathy_json(
            karpathy, tmp_path / "images", image_size=size, resample=resample
        ),
    }
    for reader, dataset in readers.items():
        pixels = all_pixels(dataset)
        assert pixels.dtype == np.float32, reader
        np.testing.assert_array_equal(pixels, expected, err_msg=reader)


def test_uint8_arrays_are_scaled_like_decoded_images(image_files: list[Path]) -> None:
    # An image already at the model's resolution is not resampled by the Pillow kernels, so the
    # folder reader's pixels equal the uint8 array reader's.
    size = 7
    folder = image_files[0].parent
    for path in image_files:
        with Image.open(path) as image:
            image.convert("RGB").resize((size, size)).save(path.with_suffix(".bmp"))
        path.unlink()
    files = sorted(folder.iterdir())
    uint8 = np.stack([np.asarray(Image.open(path).convert("RGB")) for path in files])
    from_files = all_pixels(image_folder(folder.parent, image_size=size))
    from_arrays = all_pixels(classification_arrays(uint8, [0] * len(files), ["things"]))
    np.testing.assert_array_equal(from_arrays, from_files)
    np.testing.assert_array_equal(from_arrays, siglip_data.normalize_uint8_pixels(uint8))
    captions = [["a thing"]] * len(files)
    np.testing.assert_array_equal(all_pixels(retrieval_arrays(uint8, captions)), from_files)
