"""``siglip-eval embed``: output equal to a direct computation, bad items listed, and a run killed
with SIGKILL resumes to the same rows (none duplicated, none missing)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from siglip_data import preprocess_image
from siglip_data import train_sentencepiece
from siglip_data import write_shards
from siglip_data.naflex import collate_naflex
from siglip_data.naflex import naflex_preprocess
from siglip_eval._cli import main
from siglip_models.torch import SiglipModel


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("model")
    model = SiglipModel("tiny-test")
    with torch.no_grad():  # non-zero biases: a dropped bias would show
        for name, parameter in model.named_parameters():
            if parameter.ndim == 1 and "norm" not in name:
                parameter.normal_(0.0, 0.1)
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 photos in two sub-folders (JPEG and PNG, various sizes) and two broken files."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for index in range(60):
        folder = root / ("a" if index % 2 else "b")
        folder.mkdir(exist_ok=True)
        size = (int(rng.integers(20, 70)), int(rng.integers(20, 70)))
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        suffix = ".jpg" if index % 3 else ".png"
        Image.fromarray(pixels).save(folder / f"img{index:03d}{suffix}")
    (root / "a" / "broken.jpg").write_bytes(b"not a jpeg at all")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not an image, not listed")
    return root


def _direct(model_dir: Path, paths: list[Path]) -> np.ndarray:
    """The embeddings computed by hand: preprocess, encode_image, L2-normalise."""
    model = SiglipModel.from_pretrained(model_dir)
    pixels = np.stack([preprocess_image(path, size=32) for path in paths])
    with torch.inference_mode():
        raw = model.encode_image(torch.from_numpy(pixels).permute(0, 3, 1, 2)).numpy()
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


def _command(model_dir: Path, source: str, out: Path, *extra: str) -> list[str]:
    return [
        "embed",
        "--model",
        str(model_dir),
        "--input",
        source,
        "--out",
        str(out),
        "--no-progress",
        "--threads",
        "1",
        *extra,
    ]


def _read_keys(out: Path) -> list[str]:
    return (out / "keys.txt").read_text(encoding="utf-8").splitlines()


def test_embed_resumes_after_kill_9_with_no_duplicated_or_missing_rows(
    model_dir: Path, image_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    arguments = _command(
        model_dir,
        f"folder:{image_folder}",
        out,
        "--part-size",
        "2",
        "--batch-size",
        "2",
        "--workers",
        "2",
        "--keep-parts",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "siglip_eval", *arguments],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 600
    try:
        while len(list((out / "parts").glob("*.json"))) < 3:
            assert process.poll() is None, process.communicate()[1].decode()
            assert time.monotonic() < deadline, "no part written in 10 minutes"
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
        assert process.stderr is not None
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest.get("complete")  # killed mid-run: 31 parts in all
    kept = {path.name: path.stat().st_mtime_ns for path in (out / "parts").glob("*.json")}
    assert 3 <= len(kept) < 31
    assert not (out / "embeddings.npy").exists()

    rerun = subprocess.run(
        [sys.executable, "-m", "siglip_eval", *arguments],
        capture_output=True,
        text=True,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming: {len(kept)} parts already written" in rerun.stderr
    for name, mtime in kept.items():  # kept and skipped, not computed again
        assert (out / "parts" / name).stat().st_mtime_ns == mtime

    good = sorted(path.relative_to(image_folder).as_posix() for path in image_folder.rglob("img*"))
    keys = _read_keys(out)
    assert keys == good  # every photo once, in order: none duplicated, none missing
    embeddings = np.load(out / "embeddings.npy")
    assert embeddings.shape == (60, 32)
    np.testing.assert_allclose(
        embeddings, _direct(model_dir, [image_folder / key for key in keys]), atol=1e-5, rtol=0
    )
    skipped = (out / "skipped.tsv").read_text().splitlines()
    assert skipped[0] == "key\treason"
    assert sorted(line.split("\t")[0] for line in skipped[1:]) == ["a/broken.jpg", "empty.png"]
    table = pq.read_table(out / "embeddings.parquet")
    assert table.column("key").to_pylist() == keys
    np.testing.assert_array_equal(np.stack(table.column("embedding").to_numpy(False)), embeddings)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"]
    assert (manifest["rows"], manifest["skipped"]) == (60, 2)


def test_finished_run_is_not_redone_and_another_run_is_refused(
    model_dir: Path, image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(_command(model_dir, f"folder:{image_folder}", out, "--batch-size", "16")) == 0
    assert not (out / "parts").exists()  # joined, then removed
    before = (out / "embeddings.npy").stat().st_mtime_ns
    assert main(_command(model_dir, f"folder:{image_folder}", out)) == 0
    assert "already complete (60 rows)" in capsys.readouterr().err
    assert (out / "embeddings.npy").stat().st_mtime_ns == before
    assert main(_command(model_dir, f"folder:{image_folder}", out, "--no-normalize")) == 2
    assert "differs in: normalized" in capsys.readouterr().err
    assert main(_command(model_dir, "folder:/no/such/folder", tmp_path / "x")) == 2
    assert "not a folder" in capsys.readouterr().err


def test_shards_with_a_damaged_shard_embed_what_is_readable_and_list_the_rest(
    model_dir: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(7)]
    shards = write_shards(
        [(image, f"caption {i}") for i, image in enumerate(images)],
        tmp_path / "shards",
        samples_per_shard=3,
    )
    data = Path(shards[1]).read_bytes()
    Path(shards[1]).write_bytes(data[: len(data) // 2])  # cut inside the second shard
    out = tmp_path / "out"
    pattern = str(tmp_path / "shards" / "shard-{00000..00002}.tar")
    assert main(_command(model_dir, f"shards:{pattern}", out, "--part-size", "2")) == 0
    keys = _read_keys(out)
    assert keys[:3] == ["000000000", "000000001", "000000002"]
    assert keys[-1] == "000000006"  # the third shard, after the damaged one
    skipped = (out / "skipped.tsv").read_text().splitlines()[1:]
    assert any(line.startswith(shards[1]) and "unreadable shard" in line for line in skipped)
    embeddings = np.load(out / "embeddings.npy")
    model = SiglipModel.from_pretrained(model_dir)
    index = keys.index("000000006")
    pixels = preprocess_image(Image.fromarray(images[6]), size=32)
    with torch.inference_mode():
        raw = model.encode_image(torch.from_numpy(pixels[None]).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(embeddings[index], raw[0] / np.linalg.norm(raw), atol=1e-5, rtol=0)


def test_texts_on_the_onnx_backend_equal_eager(model_dir: Path, tmp_path: Path) -> None:
    corpus = [
        f"a photo of a {word} number {n}" for word in ("cat", "dog", "car") for n in range(40)
    ]
    tokenizer = train_sentencepiece(corpus, tmp_path / "tiny.model", vocab_size=30)
    texts = tmp_path / "texts.txt"
    texts.write_text("a photo of a cat\n\na dog number 3\nA CAR\n", encoding="utf-8")
    out = tmp_path / "out"
    arguments = _command(model_dir, f"texts:{texts}", out, "--tokenizer", str(tokenizer))
    assert main([*arguments, "--backend", "onnx", "--batch-size", "2"]) == 0
    assert (out / "onnx" / "text-float32.onnx").is_file()
    assert _read_keys(out) == ["1", "3", "4"]  # line numbers; line 2 is empty
    assert (out / "skipped.tsv").read_text().splitlines()[1:] == ["2\tempty line"]
    from siglip_data import SentencePieceTokenizer

    ids = SentencePieceTokenizer(tokenizer, length=16)(
        ["a photo of a cat", "a dog number 3", "A CAR"]
    )
    model = SiglipModel.from_pretrained(model_dir)
    with torch.inference_mode():
        raw = model.encode_text(torch.from_numpy(np.asarray(ids)).long()).numpy()
    expected = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    np.testing.assert_allclose(np.load(out / "embeddings.npy"), expected, atol=1e-5, rtol=0)

    # The exported tower is reused from --onnx-dir only for the model it came from.
    other = tmp_path / "other-model"
    torch.manual_seed(1)
    SiglipModel("tiny-test").save_pretrained(other)
    shared = ["--backend", "onnx", "--onnx-dir", str(out / "onnx")]
    again = _command(model_dir, f"texts:{texts}", tmp_path / "again", "--tokenizer", str(tokenizer))
    assert main([*again, *shared]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "again" / "embeddings.npy"), expected, atol=1e-5)
    wrong = _command(other, f"texts:{texts}", tmp_path / "wrong", "--tokenizer", str(tokenizer))
    assert main([*wrong, *shared]) == 2


def test_prepacked_backend_equals_eager_in_float32_matches_it_in_bfloat16_and_refuses_float16(
    model_dir: Path, image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    arguments = _command(model_dir, f"folder:{image_folder}", out, "--batch-size", "16")
    assert main([*arguments, "--backend", "prepacked"]) == 0
    keys = _read_keys(out)
    assert len(keys) == 60
    expected = _direct(model_dir, [image_folder / key for key in keys])
    np.testing.assert_allclose(np.load(out / "embeddings.npy"), expected, atol=1e-5, rtol=0)
    assert json.loads((out / "manifest.json").read_text())["backends"] == ["prepacked float32"]

    # bfloat16 packs to oneDNN's bfloat16 GEMMs (where the CPU has them): as close to the float32
    # model as eager bfloat16 is.
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        bf16 = _command(
            model_dir, f"folder:{image_folder}", tmp_path / "bf16", "--dtype", "bfloat16"
        )
        assert main([*bf16, "--backend", "prepacked"]) == 0
        assert _read_keys(tmp_path / "bf16") == keys
        eager = _command(
            model_dir, f"folder:{image_folder}", tmp_path / "eager-bf16", "--dtype", "bfloat16"
        )
        assert main(eager) == 0
        packed_error = np.abs(np.load(tmp_path / "bf16" / "embeddings.npy") - expected).max()
        eager_error = np.abs(np.load(tmp_path / "eager-bf16" / "embeddings.npy") - expected).max()
        assert 0 < packed_error <= 2 * eager_error + 1e-3, (packed_error, eager_error)
        manifest = json.loads((tmp_path / "bf16" / "manifest.json").read_text())
        assert manifest["backends"] == ["prepacked bfloat16"]

    fp16 = _command(model_dir, f"folder:{image_folder}", tmp_path / "fp16", "--dtype", "float16")
    assert main([*fp16, "--backend", "prepacked"]) == 2
    assert "--backend prepacked runs float32 or bfloat16 on the CPU, got --dtype float16" in (
        capsys.readouterr().err
    )
    # Refused before the run's manifest is written: the corrected command is not "another run".
    assert not (tmp_path / "fp16" / "manifest.json").exists()


def test_a_big_vision_npz_embeds_as_its_hugging_face_folder(
    model_dir: Path, image_folder: Path, tmp_path: Path
) -> None:
    from siglip_models import save_big_vision_npz

    model = SiglipModel.from_pretrained(model_dir)
    npz = tmp_path / "siglip.npz"
    arrays = {key: value.numpy() for key, value in model.hf_state_dict().items()}
    save_big_vision_npz(npz, arrays, model.config)
    out = tmp_path / "out"
    assert main(_command(npz, f"folder:{image_folder}", out, "--batch-size", "16")) == 0
    keys = _read_keys(out)
    assert len(keys) == 60
    expected = _direct(model_dir, [image_folder / key for key in keys])
    np.testing.assert_allclose(np.load(out / "embeddings.npy"), expected, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def naflex_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("naflex-model")
    model = SiglipModel("tiny-test-naflex")  # 4-pixel patches, a 4x4 position grid
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim == 1 and "norm" not in name:
                parameter.normal_(0.0, 0.1)
    model.save_pretrained(directory)
    return directory


def test_naflex_model_embeds_each_image_at_its_aspect_ratio_on_every_backend(
    naflex_model_dir: Path,
    model_dir: Path,
    image_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The photos are 20-70 pixels a side: with 4-pixel patches and L = 24 each gets its own grid.
    model = SiglipModel.from_pretrained(naflex_model_dir)
    expected: np.ndarray | None = None
    for backend in ("eager", "prepacked", "onnx"):
        out = tmp_path / backend
        arguments = _command(
            naflex_model_dir, f"folder:{image_folder}", out, "--max-num-patches", "24"
        )
        assert main([*arguments, "--backend", backend, "--batch-size", "16"]) == 0
        keys = _read_keys(out)
        if expected is None:
            assert len(keys) == 60
            batch = collate_naflex(
                [
                    naflex_preprocess(image_folder / key, patch_size=4, max_num_patches=24)
                    for key in keys
                ]
            )
            assert len({tuple(shape) for shape in batch.spatial_shapes.tolist()}) > 5
            inputs = (batch.patches, batch.patch_mask, batch.spatial_shapes.astype(np.int64))
            with torch.inference_mode():
                raw = model.encode_image_naflex(*map(torch.from_numpy, inputs)).numpy()
            expected = raw / np.linalg.norm(raw, axis=1, keepdims=True)
        assert _read_keys(out) == keys
        np.testing.assert_allclose(np.load(out / "embeddings.npy"), expected, atol=1e-5, rtol=0)
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["fingerprint"]["max_num_patches"] == 24
        assert manifest["backends"] == [f"{backend} float32 naflex L=24"]
    assert (tmp_path / "onnx" / "onnx" / "image-float32-L24.onnx").is_file()

    eager = _command(naflex_model_dir, f"folder:{image_folder}", tmp_path / "eager")
    assert main([*eager, "--max-num-patches", "24"]) == 0
    assert "already complete (60 rows)" in capsys.readouterr().err
    assert main(eager) == 2  # the default L is 256: another run
    assert "differs in: max_num_patches" in capsys.readouterr().err
    fixed = _command(model_dir, f"folder:{image_folder}", tmp_path / "fixed")
    assert main([*fixed, "--max-num-patches", "24"]) == 2
    assert "fixed-resolution model (32x32)" in capsys.readouterr().err
    assert not (tmp_path / "fixed" / "manifest.json").exists()
