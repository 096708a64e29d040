"""preprocess_image: decoding, the three resize kernels, [-1, 1] scaling, HF parity, augmentation."""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import transformers
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import siglip_data
from siglip_data import preprocess_image
from siglip_data._image import RESAMPLE_METHODS
from siglip_data._image import decode_image
from siglip_data._image import resize_bilinear_tf

# Stated tolerance vs transformers.SiglipImageProcessor(Pil): same Pillow resize on uint8, then
# x * 2/255 - 1 vs (x/255 - 0.5)/0.5 in float32: at most a few float32 ulps.
HF_TOLERANCE = 1e-6


@functools.cache
def hf_processor(size: int, resample: int) -> Any:
    return transformers.SiglipImageProcessorPil(
        size={"height": size, "width": size}, resample=resample
    )


def hf_pixels(image: Image.Image, size: int, resample: int) -> np.ndarray:
    output = hf_processor(size, resample)(image, return_tensors="np")["pixel_values"][0]
    return np.transpose(output, (1, 2, 0))


def make_image(seed: int, height: int, width: int, mode: str) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2}[mode]
    data = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(data.squeeze(2) if channels == 1 else data, mode=mode)


@given(
    seed=st.integers(0, 1000),
    height=st.integers(1, 90),
    width=st.integers(1, 90),
    size=st.sampled_from([16, 32, 49]),
    mode=st.sampled_from(["RGB", "RGBA", "L", "LA"]),
)
def test_bicubic_equals_hf_siglip_image_processor_for_any_image(
    seed: int, height: int, width: int, size: int, mode: str
) -> None:
    image = make_image(seed, height, width, mode)
    expected = hf_pixels(image, size, resample=3)
    ours = preprocess_image(image, size=size, resample="bicubic")
    assert ours.shape == (size, size, 3)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, rtol=0, atol=HF_TOLERANCE)


@given(seed=st.integers(0, 1000), height=st.integers(1, 90), width=st.integers(1, 90))
def test_pil_bilinear_equals_hf_siglip2_fixed_res_processor_for_any_image(
    seed: int, height: int, width: int
) -> None:
    image = make_image(seed, height, width, "RGB")
    expected = hf_pixels(image, 32, resample=2)
    ours = preprocess_image(image, size=32, resample="pil_bilinear")
    np.testing.assert_allclose(ours, expected, rtol=0, atol=HF_TOLERANCE)


def tf_bilinear_oracle(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scalar loops over tf.image.resize's half-pixel bilinear formula (float64)."""
    in_height, in_width = pixels.shape[:2]
    output = np.zeros((height, width, pixels.shape[2]))
    for out_y in range(height):
        source_y = max((out_y + 0.5) * in_height / height - 0.5, 0.0)
        top = min(int(np.floor(source_y)), in_height - 1)
        bottom = min(top + 1, in_height - 1)
        weight_y = source_y - top
        for out_x in range(width):
            source_x = max((out_x + 0.5) * in_width / width - 0.5, 0.0)
            left = min(int(np.floor(source_x)), in_width - 1)
            right = min(left + 1, in_width - 1)
            weight_x = source_x - left
            upper = pixels[top, left] * (1 - weight_x) + pixels[top, right] * weight_x
            lower = pixels[bottom, left] * (1 - weight_x) + pixels[bottom, right] * weight_x
            output[out_y, out_x] = upper * (1 - weight_y) + lower * weight_y
    return output


@given(
    seed=st.integers(0, 1000),
    in_height=st.integers(1, 40),
    in_width=st.integers(1, 40),
    height=st.integers(1, 40),
    width=st.integers(1, 40),
)
def test_bilinear_equals_tf_half_pixel_formula_for_any_shape(
    seed: int, in_height: int, in_width: int, height: int, width: int
) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (in_height, in_width, 3)).astype(np.uint8)
    expected = tf_bilinear_oracle(pixels.astype(np.float64), height, width)
    np.testing.assert_allclose(resize_bilinear_tf(pixels, height, width), expected, atol=1e-3)


def test_bilinear_upsampling_by_two_has_known_values() -> None:
    # 1-D [0, 100] upsampled to 4: centres at -0.25, 0.25, 0.75, 1.25 -> 0, 25, 75, 100.
    pixels = np.array([[[0.0], [100.0]]])
    resized = resize_bilinear_tf(pixels, 1, 4)
    np.testing.assert_allclose(resized[0, :, 0], [0, 25, 75, 100])


def test_value_range_maps_0_to_minus_1_and_255_to_plus_1() -> None:
    black = preprocess_image(Image.new("RGB", (10, 7), (0, 0, 0)), size=8)
    white = preprocess_image(Image.new("RGB", (10, 7), (255, 255, 255)), size=8)
    gray = preprocess_image(Image.new("RGB", (10, 7), (51, 51, 51)), size=8, resample="bilinear")
    assert black.min() == black.max() == -1.0
    assert white.min() == white.max() == 1.0
    np.testing.assert_allclose(gray, 51 / 127.5 - 1, atol=1e-7)


def test_squash_resize_keeps_no_aspect_ratio_and_does_not_crop() -> None:
    # Left half red, right half blue on a wide image: the output is split at the middle column.
    pixels = np.zeros((10, 40, 3), dtype=np.uint8)
    pixels[:, :20, 0] = 255
    pixels[:, 20:, 2] = 255
    output = preprocess_image(pixels, size=8, resample="bilinear")
    assert np.all(output[:, :4, 0] == 1.0)
    assert np.all(output[:, 4:, 2] == 1.0)


def test_sources_path_bytes_array_and_pil_agree(tmp_path: Path) -> None:
    image = make_image(0, 30, 20, "RGB")
    path = tmp_path / "image.png"
    image.save(path)
    expected = preprocess_image(image, size=16)
    np.testing.assert_array_equal(preprocess_image(path, size=16), expected)
    np.testing.assert_array_equal(preprocess_image(str(path), size=16), expected)
    np.testing.assert_array_equal(preprocess_image(path.read_bytes(), size=16), expected)
    np.testing.assert_array_equal(preprocess_image(np.asarray(image), size=16), expected)


def test_exif_orientation_is_applied() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)
    upright = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    buffer = io.BytesIO()
    upright.save(buffer, format="PNG", exif=exif)
    decoded = decode_image(buffer.getvalue())
    assert decoded.size == (16, 32)
    np.testing.assert_array_equal(np.asarray(decoded), np.rot90(pixels, k=-1))


def test_transparency_is_composited_on_white() -> None:
    transparent = Image.new("RGBA", (4, 4), (10, 200, 30, 0))
    half = Image.new("RGBA", (4, 4), (0, 0, 0, 128))
    np.testing.assert_array_equal(np.asarray(decode_image(transparent)), 255)
    assert np.asarray(decode_image(half))[0, 0, 0] == 127
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.info["transparency"] = 0
    np.testing.assert_array_equal(np.asarray(decode_image(palette)), 255)


def test_grayscale_cmyk_and_16_bit_become_rgb() -> None:
    gray = decode_image(Image.new("L", (3, 3), 77))
    assert gray.mode == "RGB"
    assert np.all(np.asarray(gray) == 77)
    cmyk = decode_image(Image.new("CMYK", (3, 3), (0, 255, 255, 0)))
    assert np.asarray(cmyk)[0, 0].tolist() == [255, 0, 0]
    wide = Image.fromarray(np.full((3, 3), 65535, dtype=np.uint16))
    assert np.all(np.asarray(decode_image(wide)) == 255)
    half = Image.fromarray(np.full((3, 3), 32896, dtype=np.uint16))  # 128 * 257
    assert np.all(np.asarray(decode_image(half)) == 128)


def test_uint8_output_normalizes_to_the_float_output() -> None:
    image = make_image(3, 40, 50, "RGB")
    for resample in RESAMPLE_METHODS:
        as_uint8 = preprocess_image(image, size=24, resample=resample, dtype="uint8")
        as_float = preprocess_image(image, size=24, resample=resample)
        assert as_uint8.dtype == np.uint8
        # Pillow kernels round in uint8 already: equal; big_vision's works in float: half a level.
        tolerance = 1e-7 if resample != "bilinear" else 1 / 255 + 1e-7
        np.testing.assert_allclose(
            siglip_data.normalize_uint8_pixels(as_uint8), as_float, atol=tolerance
        )


@given(
    seed=st.integers(0, 10_000),
    width=st.integers(1, 300),
    height=st.integers(1, 300),
    scale_low=st.floats(0.05, 1.0),
)
def test_random_crop_box_lies_inside_the_image_for_any_size(
    seed: int, width: int, height: int, scale_low: float
) -> None:
    augmentation = siglip_data.Augmentation(scale=(scale_low, 1.0))
    left, top, right, bottom = augmentation.crop_box(width, height, np.random.default_rng(seed))
    assert 0 <= left < right <= width
    assert 0 <= top < bottom <= height


def test_augmentation_is_seeded_and_flip_mirrors() -> None:
    image = make_image(4, 40, 60, "RGB")
    full_crop = siglip_data.Augmentation(scale=(1.0, 1.0), ratio=(1.5, 1.5), flip=True)
    outputs = [
        preprocess_image(image, size=16, augmentation=full_crop, rng=np.random.default_rng(seed))
        for seed in range(8)
    ]
    plain = preprocess_image(image, size=16)
    flipped = [np.array_equal(output, plain[:, ::-1]) for output in outputs]
    kept = [np.array_equal(output, plain) for output in outputs]
    assert all(f or k for f, k in zip(flipped, kept))
    assert any(flipped)
    assert any(kept)
    again = preprocess_image(image, size=16, augmentation=full_crop, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(again, outputs[0])


def test_bad_arguments_raise_clear_errors(tmp_path: Path) -> None:
    image = Image.new("RGB", (4, 4))
    with pytest.raises(ValueError, match="size must be a positive int"):
        preprocess_image(image, size=0)
    with pytest.raises(ValueError, match="resample must be one of"):
        preprocess_image(image, size=4, resample="nearest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dtype must be"):
        preprocess_image(image, size=4, dtype="float16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs rng"):
        preprocess_image(image, size=4, augmentation=siglip_data.Augmentation())
    with pytest.raises(FileNotFoundError, match="does not exist"):
        preprocess_image(tmp_path / "missing.jpg", size=4)
    with pytest.raises(TypeError, match="image must be"):
        preprocess_image(3.5, size=4)  # type: ignore[arg-type]
    with pytest.raises(OSError):
        preprocess_image(b"not an image", size=4)
    with pytest.raises(ValueError, match="scale must satisfy"):
        siglip_data.Augmentation(scale=(0.0, 1.0))


def test_jpeg_draft_decodes_large_jpegs_smaller_and_stays_close() -> None:
    rng = np.random.default_rng(5)
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    photo = Image.fromarray(coarse).resize((800, 600), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=92)
    data = buffer.getvalue()
    drafted = decode_image(data, draft_size=64)
    assert drafted.size == (100, 75)  # 1/8 scale: the smallest that keeps both sides >= 64
    exact = preprocess_image(data, size=64)
    fast = preprocess_image(data, size=64, jpeg_draft=True)
    assert np.abs(fast - exact).mean() < 2 / 127.5  # within two levels on average
    np.testing.assert_array_equal(
        preprocess_image(photo, size=64, jpeg_draft=True), preprocess_image(photo, size=64)
    )
