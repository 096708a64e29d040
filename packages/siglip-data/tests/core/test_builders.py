"""Offline dataset builders (Debian packages) and the ``siglip-data`` CLI."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import siglip_data
from siglip_data import _builders
from siglip_data._builders import FASHION_MNIST_CAPTION_NAMES
from siglip_data._builders import FASHION_MNIST_CLASSES
from siglip_data._builders import emoji_split
from siglip_data._builders import read_emoji_test
from siglip_data._builders import read_idx
from siglip_data._cli import main

needs_emoji = pytest.mark.debian_data("emoji")
needs_fashion_mnist = pytest.mark.debian_data("fashion-mnist")


@needs_emoji
def test_emoji_test_file_has_the_documented_counts() -> None:
    entries = read_emoji_test()
    assert len(entries) == 3655
    groups = {entry.group for entry in entries}
    assert len(groups) == 9
    assert "Component" not in groups
    assert entries[0].emoji == "😀"
    assert entries[0].name == "grinning face"
    thumbs = [e for e in entries if e.base_name == "thumbs up"]
    assert len(thumbs) == 6  # plain + 5 skin tones
    assert {emoji_split(e.base_name) for e in thumbs} in ({"train"}, {"heldout"})
    heldout = sum(emoji_split(e.base_name) == "heldout" for e in entries)
    assert 0.15 < heldout / len(entries) < 0.35


@needs_emoji
def test_build_emoji_writes_shards_with_the_documented_metadata(tmp_path: Path) -> None:
    info = siglip_data.builders.build_emoji(tmp_path, limit=40, image_size=64, samples_per_shard=16)
    assert info.name == "emoji"
    assert info.label_key == "group_label"
    total = sum(split.num_samples for split in info.splits.values())
    assert total == 40
    assert set(info.splits) == {"train", "heldout"}
    assert siglip_data.builders.load_dataset_info(tmp_path) == info
    entries = {e.name: e for e in read_emoji_test()[:40]}
    for split_name, split in info.splits.items():
        samples = [
            s
            for shard in siglip_data.resolve_shards(split.pattern)
            for s in siglip_data.read_shard(shard)
        ]
        assert len(samples) == split.num_samples
        for sample in samples:
            metadata = sample.metadata
            assert metadata is not None
            assert set(metadata) >= {
                "name",
                "base_name",
                "group",
                "subgroup",
                "group_label",
                "split",
            }
            entry = entries[metadata["name"]]
            assert sample.caption == entry.name
            assert metadata["split"] == split_name == emoji_split(entry.base_name)
            assert info.class_names[metadata["group_label"]] == entry.group == metadata["group"]
            image = Image.open(io.BytesIO(sample.image))
            assert image.size == (64, 64)
            assert image.mode == "RGBA"
            alpha = np.asarray(image)[..., 3]
            assert alpha[0, 0] == 0
            assert alpha.max() == 255


@needs_fashion_mnist
def test_build_fashion_mnist_matches_the_idx_files(tmp_path: Path) -> None:
    info = siglip_data.builders.build_fashion_mnist(tmp_path, limit=30, samples_per_shard=8)
    assert {name: split.num_samples for name, split in info.splits.items()} == {
        "train": 30,
        "test": 30,
    }
    assert info.class_names == FASHION_MNIST_CLASSES
    assert len(info.class_names) == 10
    images = read_idx(_builders.FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(_builders.FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28)
    assert labels.shape == (10000,)
    samples = [
        s
        for shard in siglip_data.resolve_shards(info.splits["test"].pattern)
        for s in siglip_data.read_shard(shard)
    ]
    for index, sample in enumerate(samples):
        label = int(labels[index])
        assert sample.key == f"test{index:05d}"
        assert sample.metadata == {
            "label": label,
            "class_name": FASHION_MNIST_CLASSES[label],
            "split": "test",
        }
        assert FASHION_MNIST_CAPTION_NAMES[label] in (sample.caption or "")
        stored = np.asarray(Image.open(io.BytesIO(sample.image)))
        np.testing.assert_array_equal(stored, images[index])


@needs_fashion_mnist
def test_cli_builds_and_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "build",
                "fashion-mnist",
                str(tmp_path),
                "--limit",
                "12",
                "--image-size",
                "32",
                "--samples-per-shard",
                "5",
            ]
        )
        == 0
    )
    output = capsys.readouterr().out
    assert "train: 12 samples in 3 shards" in output
    info = siglip_data.builders.load_dataset_info(tmp_path)
    assert info.image_size == 32
    assert main(["count", info.splits["train"].pattern]) == 0
    assert '"samples": 12' in capsys.readouterr().out
    # Rebuilding smaller removes the shards of the previous build.
    main(["build", "fashion-mnist", str(tmp_path), "--limit", "4", "--samples-per-shard", "5"])
    assert len(list((tmp_path / "train").glob("*.tar"))) == 1


def test_missing_debian_package_names_the_apt_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_builders, "EMOJI_FONT", tmp_path / "absent.ttf")
    monkeypatch.setattr(_builders, "FASHION_MNIST_DIR", tmp_path / "absent")
    with pytest.raises(
        siglip_data.builders.MissingDebianPackageError,
        match="apt install -y fonts-noto-color-emoji unicode-data",
    ):
        siglip_data.builders.build_emoji(tmp_path / "out")
    with pytest.raises(
        siglip_data.builders.MissingDebianPackageError, match="apt install -y dataset-fashion-mnist"
    ):
        siglip_data.builders.build_fashion_mnist(tmp_path / "out")
    assert not (tmp_path / "out").exists()  # checked before any work
    assert main(["build", "emoji", str(tmp_path / "out")]) == 2
    assert "apt install -y fonts-noto-color-emoji unicode-data" in capsys.readouterr().err


def test_check_debian_packages_names_one_command_for_every_missing_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_builders, "EMOJI_TEST_FILE", tmp_path / "absent.txt")
    monkeypatch.setattr(_builders, "FASHION_MNIST_DIR", tmp_path / "absent")
    with pytest.raises(siglip_data.builders.MissingDebianPackageError) as caught:
        siglip_data.builders.check_debian_packages()  # every dataset
    error = caught.value
    # Each package once, although emoji and emoji-multilingual both need the emoji font.
    command = (
        "apt install -y fonts-noto-color-emoji unicode-data dataset-fashion-mnist unicode-cldr-core"
        " fonts-symbola"
    )
    assert error.command == command
    assert str(error).endswith(command)
    assert error.packages == (
        "fonts-noto-color-emoji",
        "unicode-data",
        "dataset-fashion-mnist",
        "unicode-cldr-core",
        "fonts-symbola",
    )
    assert error.missing_files.count(str(tmp_path / "absent.txt")) == 1
    assert str(tmp_path / "absent.txt") in error.missing_files
    copy = pickle.loads(pickle.dumps(error))  # crosses process boundaries intact
    assert (str(copy), copy.command) == (str(error), error.command)
    with pytest.raises(siglip_data.builders.MissingDebianPackageError) as only_fashion:
        siglip_data.builders.check_debian_packages("fashion-mnist", "fashion-mnist")
    assert only_fashion.value.command == "apt install -y dataset-fashion-mnist"
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        siglip_data.builders.check_debian_packages("mnist")


def test_read_idx_parses_and_validates(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(struct.pack(">HBB3I", 0, 8, 3, 2, 3, 4) + array.tobytes())
    np.testing.assert_array_equal(read_idx(path), array)
    bad = tmp_path / "bad-idx"
    bad.write_bytes(struct.pack(">HBB1I", 0, 8, 1, 5) + b"abc")
    with pytest.raises(ValueError, match="holds 3 bytes"):
        read_idx(bad)


def test_console_script_is_installed_with_the_package() -> None:
    executable = Path(sys.executable).parent / "siglip-data"
    completed = subprocess.run(
        [str(executable), "build", "--help"], capture_output=True, text=True, check=True
    )
    assert (
        "{folder,emoji,emoji-multilingual,emoji-scenes,fashion-mnist,rendered-words}"
        in completed.stdout
    )


def test_python_dash_m_runs_the_command() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "siglip_data", "count", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout.startswith("usage: siglip-data count")
