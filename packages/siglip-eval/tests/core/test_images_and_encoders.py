"""Images through the readers (siglip-data's preprocessing) and the checks on encoder outputs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siglip_eval import EmbeddingCache
from siglip_eval._encoders import embed_image_batches
from siglip_eval._encoders import embed_texts
from siglip_eval.datasets import image_folder


def read_one(tmp_path: Path, image: Image.Image, *, size: int) -> np.ndarray:
    """Save ``image`` as the only PNG of a one-class image folder and read it back."""
    (tmp_path / "only").mkdir(parents=True)
    image.save(tmp_path / "only" / "image.png")
    batch = next(image_folder(tmp_path, image_size=size).batches(1))
    return batch.pixels[0]


def test_readers_map_0_255_to_minus_one_one_without_keeping_aspect(tmp_path) -> None:
    pixels = read_one(tmp_path, Image.new("RGB", (40, 10), (0, 255, 51)), size=8)
    assert pixels.shape == (8, 8, 3)
    assert pixels.dtype == np.float32
    np.testing.assert_allclose(pixels[0, 0], [-1.0, 1.0, 51 / 127.5 - 1.0], atol=1e-6)


def test_transparent_pixels_become_white_and_grayscale_becomes_rgb(tmp_path) -> None:
    clear = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    np.testing.assert_allclose(read_one(tmp_path / "clear", clear, size=4), 1.0)
    gray = Image.new("L", (4, 4), 0)
    np.testing.assert_allclose(read_one(tmp_path / "gray", gray, size=4), -1.0)


def test_exif_orientation_is_applied(tmp_path) -> None:
    # A 6x2 image, left half black, right half white, stored with "rotate 90" in EXIF (tag 6):
    # upright it is 2 wide x 6 tall, black on top.
    image = Image.new("RGB", (6, 2), (0, 0, 0))
    image.paste((255, 255, 255), (3, 0, 6, 2))
    exif = image.getexif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes(), quality=100)
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "rotated.jpg").write_bytes(buffer.getvalue())
    pixels = next(image_folder(tmp_path, image_size=6).batches(1)).pixels[0]
    assert pixels[0, :, 0].mean() < 0 < pixels[-1, :, 0].mean()


def test_readers_squash_the_whole_image_without_a_center_crop(tmp_path) -> None:
    # SigLIP's convention (big_vision resize(size), the HF processors): no crop, so the 4 px red
    # border of a 64 px image survives at 28 px.
    image = Image.new("RGB", (64, 64), (255, 0, 0))
    image.paste((0, 0, 255), (4, 4, 60, 60))
    pixels = read_one(tmp_path, image, size=28)
    assert pixels.shape == (28, 28, 3)
    assert pixels[0, 0, 0] > 0.9
    assert pixels[0, 0, 2] < -0.9
    assert pixels[14, 14, 2] > 0.9
    assert pixels[14, 14, 0] < -0.9


def test_bad_image_size_or_resample_is_an_error_when_the_reader_is_made(tmp_path) -> None:
    (tmp_path / "only").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "only" / "a.png")
    with pytest.raises(ValueError, match="image_size"):
        image_folder(tmp_path, image_size=0)
    with pytest.raises(ValueError, match="resample"):
        image_folder(tmp_path, image_size=4, resample="nearest")


def test_wrong_output_shape_is_named() -> None:
    def encode(pixels: np.ndarray) -> np.ndarray:
        return np.ones((len(pixels) + 1, 4))

    batches = [(np.zeros((2, 4, 4, 3), np.float32), ["a.png", "b.png"])]
    with pytest.raises(ValueError, match=r"dataset 'x'.*\[2, dim\].*'a\.png'.*\(3, 4\)"):
        embed_image_batches(encode, batches, dataset="x", progress=False)


def test_dimension_change_between_batches_is_named() -> None:
    dims = iter([4, 5])

    def encode(texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), next(dims)))

    with pytest.raises(ValueError, match=r"expected dim 4.*got 5"):
        embed_texts(encode, ["a", "b", "c"], dataset="x", batch_size=2, progress=False)


def test_empty_inputs_are_errors() -> None:
    with pytest.raises(ValueError, match="empty dataset"):
        embed_image_batches(lambda p: p, [], dataset="nothing", progress=False)
    with pytest.raises(ValueError, match="at least one text"):
        embed_texts(lambda t: t, [], dataset="nothing", progress=False)


def test_cache_miss_for_an_incomplete_entry(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.save("m", "d", "images", np.ones((2, 3), np.float32), {"keys": ["a", "b"]})
    cache.path("m", "d", "images").with_suffix(".json").unlink()  # as if interrupted before it
    assert cache.load("m", "d", "images") is None
    assert cache.load("other-model", "d", "images") is None
