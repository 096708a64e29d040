"""Shard writing and reading: round trip, atomic writes, brace patterns, damaged archives."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import siglip_data


@given(first=st.integers(0, 500), count=st.integers(1, 30), width=st.integers(1, 6))
def test_brace_range_expands_to_every_number_zero_padded(
    first: int, count: int, width: int
) -> None:
    last = first + count - 1
    pattern = f"s-{{{first:0{width}d}..{last:0{width}d}}}.tar"
    expanded = siglip_data.resolve_shards(pattern)
    assert len(expanded) == count
    padded = width > 1 and f"{first:0{width}d}".startswith("0")
    assert expanded == [
        f"s-{n:0{width}d}.tar" if padded else f"s-{n}.tar" for n in range(first, last + 1)
    ]


def test_brace_lists_and_products() -> None:
    assert siglip_data.resolve_shards("{a,b}/x-{0..1}.tar") == [
        "a/x-0.tar",
        "a/x-1.tar",
        "b/x-0.tar",
        "b/x-1.tar",
    ]
    assert siglip_data.resolve_shards("plain.tar") == ["plain.tar"]
    # braceexpand (as webdataset) counts down a descending range; the old expander raised.
    assert siglip_data.resolve_shards("s-{5..2}.tar") == [f"s-{n}.tar" for n in (5, 4, 3, 2)]
    with pytest.raises(ValueError, match="Unbalanced braces"):
        siglip_data.resolve_shards("s-{0..2.tar")


def test_written_samples_read_back_identically(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (5, 7, 3), dtype=np.uint8) for _ in range(7)]
    jpeg = io.BytesIO()
    Image.fromarray(images[0]).save(jpeg, format="JPEG")
    samples = [(image, f"caption {i}", {"i": i}) for i, image in enumerate(images)]
    samples.append({"image": jpeg.getvalue(), "caption": "a jpeg", "key": "custom_key"})
    shards = siglip_data.write_shards(samples, tmp_path, samples_per_shard=3)
    assert [Path(s).name for s in shards] == [
        "shard-00000.tar",
        "shard-00001.tar",
        "shard-00002.tar",
    ]
    read = [sample for shard in shards for sample in siglip_data.read_shard(shard)]
    assert [s.key for s in read] == [f"{i:09d}" for i in range(7)] + ["custom_key"]
    for index, sample in enumerate(read[:7]):
        assert sample.image_format == "png"
        assert sample.caption == f"caption {index}"
        assert sample.metadata == {"i": index}
        np.testing.assert_array_equal(
            np.asarray(Image.open(io.BytesIO(sample.image))), images[index]
        )
    assert read[7].image == jpeg.getvalue()
    assert read[7].image_format == "jpg"
    assert read[7].metadata is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [Path(s).name for s in shards]


def test_reader_accepts_img2dataset_layout_written_by_tarfile(tmp_path: Path) -> None:
    # Written by plain tarfile (as img2dataset / webdataset do): webp image, json, extra files.
    path = tmp_path / "00000.tar"
    webp = io.BytesIO()
    Image.new("RGB", (3, 3), "red").save(webp, format="WEBP")
    members = [
        ("000010001.webp", webp.getvalue()),
        ("000010001.txt", b"Red square"),
        ("000010001.json", json.dumps({"url": "x", "width": 3}).encode()),
        ("000010002.jpg", b"\xff\xd8 not really"),
        ("000010002.txt", b"second"),
    ]
    with tarfile.open(path, "w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    first, second = siglip_data.read_shard(str(path))
    assert (first.key, first.image_format, first.caption) == ("000010001", "webp", "Red square")
    assert first.metadata == {"url": "x", "width": 3}
    assert (second.key, second.image_format, second.caption) == ("000010002", "jpg", "second")


def test_truncated_shard_yields_complete_samples_then_raises(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    samples = [(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), f"c{i}") for i in range(6)]
    (shard,) = siglip_data.write_shards(samples, tmp_path, samples_per_shard=6)
    data = Path(shard).read_bytes()
    Path(shard).write_bytes(data[: len(data) // 2])
    read = []
    samples = siglip_data.read_shard(shard)
    with pytest.raises(siglip_data.UnreadableShardError, match=r"truncated|damaged"):
        read.extend(sample.key for sample in samples)
    assert 1 <= len(read) < 6
    assert read == [f"{i:09d}" for i in range(len(read))]
    with pytest.raises(siglip_data.UnreadableShardError, match="cannot open"):
        list(siglip_data.read_shard(str(tmp_path / "missing.tar")))


def test_writer_is_atomic_and_validates(tmp_path: Path) -> None:
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    writer = siglip_data.ShardWriter(tmp_path, samples_per_shard=10)
    writer.write(image, "a")
    # The unfinished shard is only a hidden temporary file.
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == []
    with pytest.raises(ValueError, match="already written"):
        writer.write(image, "b", key="000000000")
    with pytest.raises(ValueError, match="without dots"):
        writer.write(image, "b", key="a.b")
    with pytest.raises(TypeError, match="must be a str"):
        writer.write(image, None)  # type: ignore[arg-type]
    writer.close()
    assert [p.name for p in tmp_path.iterdir()] == ["shard-00000.tar"]
    assert writer.shard_pattern().endswith("shard-{00000..00000}.tar")
    with pytest.raises(ValueError, match="sample 1 must be"):
        siglip_data.write_shards([(image, "ok"), "junk"], tmp_path / "bad", samples_per_shard=5)
    assert list((tmp_path / "bad").iterdir()) == []  # the unfinished shard was removed
    with pytest.raises(ValueError, match="samples_per_shard"):
        siglip_data.ShardWriter(tmp_path, samples_per_shard=0)


def test_resolve_shards_from_directory_pattern_and_list(tmp_path: Path) -> None:
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    shards = siglip_data.write_shards(
        [(image, str(i)) for i in range(4)], tmp_path, samples_per_shard=2
    )
    assert siglip_data.resolve_shards(tmp_path) == shards
    assert siglip_data.resolve_shards(str(tmp_path / "shard-{00000..00001}.tar")) == shards
    assert siglip_data.resolve_shards([shards[1], shards[0]]) == [shards[1], shards[0]]
    assert siglip_data.resolve_shards(str(tmp_path / "shard-*.tar")) == shards
    assert siglip_data.resolve_shards([str(tmp_path / "shard-0000[1]*")]) == shards[1:]
    with pytest.raises(ValueError, match="matches no file"):
        siglip_data.resolve_shards(str(tmp_path / "nothing-*.tar"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no \.tar"):
        siglip_data.resolve_shards(tmp_path / "empty")


def test_a_shard_cut_at_a_member_boundary_keeps_every_complete_sample_before_the_cut(
    tmp_path: Path,
) -> None:
    import tarfile

    rng = np.random.default_rng(0)
    samples = [(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), f"c{i}") for i in range(4)]
    (shard,) = siglip_data.write_shards(samples, tmp_path, samples_per_shard=4)
    data = Path(shard).read_bytes()
    with tarfile.open(shard) as archive:
        members = archive.getmembers()  # 000.png, 000.txt, 001.png, 001.txt, ...
    ends = [member.offset_data + -(-member.size // 512) * 512 for member in members]
    for cut_after, expected in ((3, 2), (2, 1)):  # between samples 1 and 2; inside sample 1
        Path(shard).write_bytes(data[: ends[cut_after]])
        read: list[str] = []
        with pytest.raises(siglip_data.UnreadableShardError, match="truncated"):
            read.extend(sample.key for sample in siglip_data.read_shard(shard))
        assert read == [f"{i:09d}" for i in range(expected)], cut_after
