"""The compiled resize (``resize_backend="numba"``) gives Pillow's exact bytes, or falls back.

Oracle: ``PIL.Image.resize`` itself (the function HF's SigLIP processors call), on the installed
Pillow, for random sizes, crop boxes, both filters and both of Pillow 13's pass orders.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import PIL
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from PIL import Image

import siglip_data
from siglip_data import _resample
from siglip_data._image import resize_image

FILTERS = {"bicubic": Image.Resampling.BICUBIC, "pil_bilinear": Image.Resampling.BILINEAR}

# The core session installs siglip-data[fast]: a missing or broken numba fails these tests.
assert _resample.numba_available(), "numba does not import: install siglip-data[fast]"


def random_image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    # Smooth structure plus noise: overshoot and clipping happen, as on photos.
    coarse = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))
    noise = rng.normal(0, 40, (height, width, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def pillow(
    image: Image.Image,
    width: int,
    height: int,
    resample: str,
    box: tuple[int, int, int, int] | None,
) -> np.ndarray:
    return np.asarray(image.resize((width, height), FILTERS[resample], box=box))


@settings(max_examples=200, deadline=None)
@given(
    width=st.integers(1, 90),
    height=st.integers(1, 90),
    out_width=st.integers(1, 90),
    out_height=st.integers(1, 90),
    resample=st.sampled_from(sorted(FILTERS)),
    use_box=st.booleans(),
    data=st.data(),
)
def test_numba_resize_equals_pillow(
    width: int,
    height: int,
    out_width: int,
    out_height: int,
    resample: str,
    use_box: bool,
    data: st.DataObject,
) -> None:
    image = random_image(width, height, seed=width * 1000 + height)
    box = None
    if use_box:
        left = data.draw(st.integers(0, width - 1))
        top = data.draw(st.integers(0, height - 1))
        right = data.draw(st.integers(left + 1, width))
        bottom = data.draw(st.integers(top + 1, height))
        box = (left, top, right, bottom)
    got = _resample.resize_exact(image, out_width, out_height, resample, box)
    expected = pillow(image, out_width, out_height, resample, box)
    assert got.dtype == np.uint8
    assert got.shape == (out_height, out_width, 3)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("resample", sorted(FILTERS))
@pytest.mark.parametrize(
    ("size", "out"),
    [
        ((640, 480), (224, 224)),  # landscape photo: horizontal pass first
        ((300, 900), (224, 224)),  # tall photo: Pillow 13 starts with the vertical pass
        ((480, 640), (224, 224)),  # portrait, height shrinks < 2x the width: horizontal first
        ((256, 256), (224, 224)),  # img2dataset shards
        ((1200, 40), (224, 224)),  # one axis up, one down
        ((37, 29), (224, 224)),  # upscale
        ((1000, 700), (16, 16)),  # 62x downscale: 253 taps, past every unrolled loop
        ((224, 300), (224, 224)),  # only the vertical pass
        ((300, 224), (224, 224)),  # only the horizontal pass
    ],
)
def test_numba_resize_equals_pillow_on_typical_shapes(
    size: tuple[int, int], out: tuple[int, int], resample: str
) -> None:
    image = random_image(*size, seed=7)
    np.testing.assert_array_equal(
        _resample.resize_exact(image, *out, resample), pillow(image, *out, resample, None)
    )


def test_installed_pillow_pass_order_is_recognised() -> None:
    assert _resample.fast_resize_matches_pillow()
    major = int(PIL.__version__.split(".")[0])
    expected = "height_first_when_shrinking" if major >= 13 else "horizontal_first"
    assert _resample._probe() == (expected, "")


def test_preprocess_image_is_identical_across_backends() -> None:
    buffer = io.BytesIO()
    random_image(333, 517, seed=3).save(buffer, format="JPEG", quality=90)
    encoded = buffer.getvalue()
    for resample in ("bicubic", "pil_bilinear"):
        fast = siglip_data.preprocess_image(
            encoded, size=224, resample=resample, resize_backend="numba"
        )
        slow = siglip_data.preprocess_image(
            encoded, size=224, resample=resample, resize_backend="pillow"
        )
        assert fast.dtype == np.float32
        np.testing.assert_array_equal(fast, slow)


def test_augmented_crops_are_identical_across_backends() -> None:
    augmentation = siglip_data.Augmentation(scale=(0.3, 0.9), flip=True)
    image = random_image(300, 200, seed=5)

    def crop(seed: int, backend: str) -> np.ndarray:
        return siglip_data.preprocess_image(
            image,
            size=64,
            augmentation=augmentation,
            rng=np.random.default_rng(seed),
            resize_backend=backend,  # type: ignore[arg-type]
        )

    for seed in range(8):
        np.testing.assert_array_equal(crop(seed, "numba"), crop(seed, "pillow"))


def test_threads_do_not_share_scratch_buffers() -> None:
    shapes = [(640, 480), (300, 900), (256, 256), (97, 1000), (1200, 300), (333, 333)] * 4
    images = [random_image(*shape, seed=index) for index, shape in enumerate(shapes)]
    expected = [pillow(image, 224, 224, "bicubic", None) for image in images]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda im: _resample.resize_exact(im, 224, 224, "bicubic"), images))
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


def test_results_are_not_overwritten_by_later_calls() -> None:
    first_image = random_image(300, 200, seed=1)
    first = _resample.resize_exact(first_image, 64, 64, "bicubic")
    kept = first.copy()
    _resample.resize_exact(random_image(200, 300, seed=2), 64, 64, "bicubic")
    np.testing.assert_array_equal(first, kept)


def test_resize_exact_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="RGB Pillow image, got mode 'L'"):
        _resample.resize_exact(Image.new("L", (8, 8)), 4, 4, "bicubic")
    with pytest.raises(ValueError, match="resample must be one of"):
        _resample.resize_exact(Image.new("RGB", (8, 8)), 4, 4, "lanczos")


def test_bad_backend_name_is_rejected_before_decoding() -> None:
    with pytest.raises(ValueError, match=r"resize_backend must be one of .* got 'cuda'"):
        siglip_data.preprocess_image(b"not an image", size=8, resize_backend="cuda")  # type: ignore[arg-type]


def test_numba_backend_without_numba_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_resample, "numba_available", lambda: False)
    image = Image.new("RGB", (8, 8))
    with pytest.raises(ImportError, match=r"siglip-data\[fast\]"):
        resize_image(image, size=4, resize_backend="numba")
    # "auto" quietly uses Pillow.
    np.testing.assert_array_equal(
        resize_image(image, size=4, resize_backend="auto"),
        np.asarray(image.resize((4, 4), Image.Resampling.BICUBIC)),
    )


def test_dataset_checks_the_backend_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    # Inside the decode loop the error would be counted as bad samples; it must raise at once.
    monkeypatch.setattr(_resample, "numba_available", lambda: False)
    with pytest.raises(ImportError, match=r"siglip-data\[fast\]"):
        siglip_data.ImageTextDataset(
            ["unused.tar"],
            tokenizer=lambda texts: np.zeros((len(texts), 4), np.int32),
            image_size=8,
            batch_size=2,
            decode=siglip_data.DecodeOptions(resize_backend="numba"),
        )


@pytest.mark.parametrize("pixel_dtype", ["float32", "uint8"])
def test_dataset_batches_are_identical_across_backends(tmp_path: Path, pixel_dtype: str) -> None:
    samples = []
    for index, size in enumerate([(640, 480), (300, 900), (256, 256), (50, 70), (224, 224)]):
        buffer = io.BytesIO()
        random_image(*size, seed=index).save(buffer, format="JPEG", quality=90)
        samples.append((buffer.getvalue(), f"caption {index}"))
    shards = siglip_data.write_shards(samples, tmp_path, samples_per_shard=3)

    def batches(backend: str) -> list[np.ndarray]:
        data = siglip_data.ImageTextDataset(
            shards,
            tokenizer=lambda texts: np.zeros((len(texts), 4), np.int32),
            image_size=96,
            batch_size=2,
            shuffle=False,
            decode=siglip_data.DecodeOptions(
                pixel_dtype=pixel_dtype,  # type: ignore[arg-type]
                resize_backend=backend,  # type: ignore[arg-type]
            ),
        )
        return [batch["pixels"] for batch in data]

    fast, slow = batches("numba"), batches("pillow")
    assert [batch.shape[0] for batch in fast] == [2, 2, 1]
    assert fast[0].dtype == np.dtype(pixel_dtype)
    for got, want in zip(fast, slow):
        np.testing.assert_array_equal(got, want)
    # The batch scaling equals scaling each image on its own.
    single = siglip_data.preprocess_image(samples[0][0], size=96, dtype=pixel_dtype)  # type: ignore[arg-type]
    np.testing.assert_array_equal(fast[0][0], single)


@pytest.mark.parametrize(
    "probe",
    [
        (None, "siglip-data's compiled resize does not reproduce Pillow 99.0"),
        (None, "siglip-data's compiled resize failed (TypingError: ...)"),
    ],
)
def test_falls_back_to_pillow_when_the_kernels_do_not_match(
    monkeypatch: pytest.MonkeyPatch, probe: tuple[None, str]
) -> None:
    # A Pillow whose resampling the probe does not recognise, or a numba that fails: warn once,
    # then resize with Pillow.
    monkeypatch.setattr(_resample, "_probe", lambda: probe)
    _resample._warn_once.cache_clear()
    image = random_image(120, 90, seed=4)

    def unreachable(*args: object, **kwargs: object) -> None:
        raise AssertionError("the compiled resize ran although it does not match this Pillow")

    monkeypatch.setattr("siglip_data._image.resize_exact", unreachable)
    with pytest.warns(RuntimeWarning, match="resizing with Pillow instead"):
        got = resize_image(image, size=32, resize_backend="numba")
    np.testing.assert_array_equal(got, pillow(image, 32, 32, "bicubic", None))
    with pytest.raises(RuntimeError, match="use resize_backend='pillow'"):
        _resample.resize_exact(image, 32, 32, "bicubic")
    _resample._warn_once.cache_clear()


def test_a_numba_that_fails_to_compile_is_caught_by_the_probe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken() -> None:
        raise RuntimeError("LLVM exploded")

    monkeypatch.setattr(_resample, "_kernels", broken)
    _resample._probe.cache_clear()
    try:
        order, problem = _resample._probe()
        assert order is None
        assert "compiled resize failed (RuntimeError: LLVM exploded)" in problem
    finally:
        monkeypatch.undo()
        _resample._probe.cache_clear()
