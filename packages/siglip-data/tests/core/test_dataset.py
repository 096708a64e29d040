"""ImageTextDataset: batches, rank/worker split, shuffling, epochs, exact resume, bad data."""

from __future__ import annotations

import io
import json
import logging
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import siglip_data
from siglip_data import DecodeOptions
from siglip_data import ImageTextDataset
from siglip_data import QualityPolicy
from siglip_data import Topology
from siglip_data._dataset import SKIP_REASONS


def keys_of(batches: list[dict[str, Any]]) -> list[str]:
    return [key for batch in batches for key in batch["keys"]]


def write_numbered_shards(directory: Path, sizes: list[int]) -> list[str]:
    """Shards of the given sizes with keys s<shard>n<index> and tiny images."""
    image = np.full((4, 4, 3), 128, dtype=np.uint8)
    shards = []
    for shard_index, size in enumerate(sizes):
        if size == 0:  # an empty shard is legal
            empty = directory / f"p{shard_index:03d}-empty.tar"
            tarfile.open(empty, "w").close()
            shards.append(str(empty))
            continue
        with siglip_data.ShardWriter(
            directory, samples_per_shard=max(size, 1), prefix=f"p{shard_index:03d}"
        ) as writer:
            for index in range(size):
                writer.write(image, f"caption {index}", key=f"s{shard_index}n{index}")
        shards.extend(writer.shards)
    return shards


def make_dataset(source: Any, tokenizer: Any, **options: Any) -> ImageTextDataset:
    defaults: dict[str, Any] = {"image_size": 8, "batch_size": 4, "shuffle_buffer": 8}
    return ImageTextDataset(source, tokenizer=tokenizer, **(defaults | options))


def test_batches_have_the_documented_shapes_and_dtypes(
    make_shards: Callable[..., list[str]], tokenizer: Any
) -> None:
    shards = make_shards(10, per_shard=4)
    data = make_dataset(shards, tokenizer, image_size=12, batch_size=4, shuffle=False)
    batches = list(data)
    assert [len(b["keys"]) for b in batches] == [4, 4, 2]
    first = batches[0]
    assert first["pixels"].shape == (4, 12, 12, 3)
    assert first["pixels"].dtype == np.float32
    assert first["token_ids"].shape == (4, 16)
    assert first["token_ids"].dtype == np.int32
    assert first["keys"] == ["000000000", "000000001", "000000002", "000000003"]
    assert first["metadata"][0] == {"index": 0}
    np.testing.assert_array_equal(first["token_ids"], tokenizer(first["captions"]))
    sample = next(siglip_data.read_shard(shards[0]))
    np.testing.assert_array_equal(
        first["pixels"][0], siglip_data.preprocess_image(sample.image, size=12)
    )
    uint8 = list(
        make_dataset(
            shards,
            tokenizer,
            image_size=12,
            shuffle=False,
            decode=DecodeOptions(pixel_dtype="uint8"),
        )
    )
    assert uint8[0]["pixels"].dtype == np.uint8
    assert len(list(make_dataset(shards, tokenizer, drop_last=True))) == 2


@given(
    sizes=st.lists(st.integers(0, 7), min_size=1, max_size=6),
    world_size=st.integers(1, 3),
    num_workers=st.integers(1, 3),
    shuffle=st.booleans(),
    epoch=st.integers(0, 3),
)
def test_ranks_and_workers_partition_every_epoch_without_duplicates_or_gaps(
    tmp_path_factory: pytest.TempPathFactory,
    tokenizer: Any,
    sizes: list[int],
    world_size: int,
    num_workers: int,
    shuffle: bool,
    epoch: int,
) -> None:
    shards = write_numbered_shards(tmp_path_factory.mktemp("part"), sizes)
    expected = sorted(f"s{s}n{i}" for s, size in enumerate(sizes) for i in range(size))
    seen = []
    for rank in range(world_size):
        for worker in range(num_workers):
            data = make_dataset(
                shards,
                tokenizer,
                topology=Topology(
                    rank=rank, world_size=world_size, worker_id=worker, num_workers=num_workers
                ),
                shuffle=shuffle,
                seed=5,
            )
            data.set_epoch(epoch)
            seen.extend(keys_of(list(data)))
    assert sorted(seen) == expected


def test_shuffle_is_seeded_and_differs_between_epochs(tmp_path: Path, tokenizer: Any) -> None:
    shards = write_numbered_shards(tmp_path, [6] * 5)

    def run(seed):
        return next(
            keys_of(list(data))
            for data in [make_dataset(shards, tokenizer, seed=seed)]
            for _ in range(1)
        )

    assert run(1) == run(1)
    assert run(1) != run(2)
    data = make_dataset(shards, tokenizer, seed=1)
    epoch0, epoch1 = keys_of(list(data)), keys_of(list(data))
    assert data.epoch == 2
    assert epoch0 != epoch1
    assert sorted(epoch0) == sorted(epoch1)
    unshuffled = keys_of(list(make_dataset(shards, tokenizer, shuffle=False)))
    assert unshuffled == [f"s{s}n{i}" for s in range(5) for i in range(6)]
    # The buffer mixes samples across shards, not only the shard order.
    first_shards = {key.split("n")[0] for key in epoch0[:6]}
    assert len(first_shards) > 1


@given(
    stop_after=st.integers(0, 20),
    batch_size=st.integers(1, 5),
    buffer=st.integers(1, 12),
    augment=st.booleans(),
    world_size=st.integers(1, 2),
)
def test_resuming_from_any_batch_yields_exactly_the_uninterrupted_stream(
    tmp_path_factory: pytest.TempPathFactory,
    tokenizer: Any,
    stop_after: int,
    batch_size: int,
    buffer: int,
    augment: bool,
    world_size: int,
) -> None:
    shards = write_numbered_shards(tmp_path_factory.mktemp("resume"), [5, 3, 7])
    options: dict[str, Any] = {
        "batch_size": batch_size,
        "shuffle_buffer": buffer,
        "seed": 11,
        "topology": Topology(world_size=world_size),
        "decode": DecodeOptions(
            augmentation=siglip_data.Augmentation(scale=(0.5, 1.0), flip=True) if augment else None
        ),
    }

    def epochs(data: ImageTextDataset, count: int) -> list[dict[str, Any]]:
        return [batch for _ in range(count) for batch in data]

    reference = epochs(make_dataset(shards, tokenizer, **options), 3)
    interrupted = make_dataset(shards, tokenizer, **options)
    got: list[dict[str, Any]] = []
    iterator = iter(interrupted)
    while len(got) < min(stop_after, len(reference)):
        batch = next(iterator, None)
        if batch is None:  # epoch ended: continue with the next one, as a training loop would
            iterator = iter(interrupted)
            continue
        got.append(batch)
    state = json.loads(json.dumps(interrupted.state_dict()))
    resumed = make_dataset(shards, tokenizer, **options)
    resumed.load_state_dict(state)
    while len(got) < len(reference):
        got.extend(list(resumed))
    assert keys_of(got) == keys_of(reference)
    for ours, theirs in zip(got, reference):
        np.testing.assert_array_equal(ours["pixels"], theirs["pixels"])
        np.testing.assert_array_equal(ours["token_ids"], theirs["token_ids"])


def test_load_state_dict_rejects_a_differently_configured_dataset(
    tmp_path: Path, tokenizer: Any
) -> None:
    shards = write_numbered_shards(tmp_path, [4, 4])
    state = make_dataset(shards, tokenizer, seed=1).state_dict()
    with pytest.raises(ValueError, match="seed=1"):
        make_dataset(shards, tokenizer, seed=2).load_state_dict(state)
    with pytest.raises(ValueError, match="num_streams"):
        make_dataset(shards, tokenizer, seed=1, topology=Topology(world_size=2)).load_state_dict(
            state
        )
    with pytest.raises(ValueError, match="missing"):
        make_dataset(shards, tokenizer, seed=1).load_state_dict({"epoch": 0})


def test_folder_source_with_jsonl_and_csv(tmp_path: Path, tokenizer: Any) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    lines = []
    for index in range(5):
        Image.fromarray(rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)).save(
            tmp_path / "imgs" / f"{index}.png"
        )
        lines.append({"file": f"imgs/{index}.png", "caption": f"picture {index}", "label": index})
    (tmp_path / "captions.jsonl").write_text(
        "\n".join(json.dumps(line) for line in lines), encoding="utf-8"
    )
    data = make_dataset(tmp_path, tokenizer, shuffle=False, batch_size=5)
    (batch,) = list(data)
    assert batch["keys"] == [f"imgs/{i}" for i in range(5)]
    assert batch["metadata"][2] == {"label": 2}
    assert batch["captions"][2] == "picture 2"
    np.testing.assert_array_equal(
        batch["pixels"][3], siglip_data.preprocess_image(tmp_path / "imgs" / "3.png", size=8)
    )
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    (csv_dir / "captions.csv").write_text(
        'file,caption,source\n../imgs/0.png,first,a\n../imgs/1.png,"second, with comma",b\n',
        encoding="utf-8",
    )
    (csv_batch,) = list(
        make_dataset(
            siglip_data.FolderSource(csv_dir, samples_per_unit=1), tokenizer, shuffle=False
        )
    )
    assert csv_batch["captions"] == ["first", "second, with comma"]
    assert csv_batch["metadata"] == [{"source": "a"}, {"source": "b"}]
    with pytest.raises(FileNotFoundError, match=r"no captions\.jsonl"):
        siglip_data.FolderSource(tmp_path / "imgs")


# -- damage -----------------------------------------------------------------------------------


def add_members(archive: tarfile.TarFile, members: list[tuple[str, bytes]]) -> None:
    for name, data in members:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))


def png_bytes(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (5, 5), (value, value, value)).save(buffer, format="PNG")
    return buffer.getvalue()


def damaged_dataset(directory: Path) -> tuple[list[str], dict[str, int]]:
    """Shards with every kind of damage planted; returns the shards and the expected counts."""
    good = [(f"good{i}", png_bytes(i)) for i in range(12)]
    with tarfile.open(directory / "a-0.tar", "w") as archive:
        for key, data in good[:6]:
            add_members(archive, [(f"{key}.png", data), (f"{key}.txt", b"a fine caption")])
        add_members(archive, [("corrupt.jpg", b"\xff\xd8\xff\xe0 garbage"), ("corrupt.txt", b"x")])
        add_members(archive, [("truncated.png", png_bytes(9)[:40]), ("truncated.txt", b"x")])
        add_members(archive, [("nocaption.png", png_bytes(1))])
        add_members(archive, [("emptycaption.png", png_bytes(1)), ("emptycaption.txt", b"  \n")])
        add_members(archive, [("noimage.txt", b"caption without image")])
        add_members(
            archive, [("badjson.png", png_bytes(1)), ("badjson.txt", b"x"), ("badjson.json", b"{")]
        )
        add_members(archive, [("badtext.png", png_bytes(1)), ("badtext.txt", b"\xff\xfe\xfa")])
    with tarfile.open(directory / "a-1.tar", "w") as archive:
        for key, data in good[6:]:
            add_members(archive, [(f"{key}.png", data), (f"{key}.txt", b"another caption")])
    (directory / "a-2.tar").write_bytes(b"this is not a tar file at all" * 10)
    full = (directory / "a-1.tar").read_bytes()
    (directory / "a-3.tar").write_bytes(full[: len(full) // 3])  # truncated shard
    expected = {
        "corrupt_image": 2,
        "missing_caption": 1,
        "empty_caption": 1,
        "missing_image": 1,
        "bad_metadata": 1,
        "bad_caption": 1,
        "unreadable_shard": 2,
    }
    return [str(directory / f"a-{i}.tar") for i in range(4)], expected


def test_every_kind_of_damage_is_skipped_counted_and_logged(
    tmp_path: Path, tokenizer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    shards, expected = damaged_dataset(tmp_path)
    data = make_dataset(
        shards, tokenizer, batch_size=5, quality=QualityPolicy(max_bad_fraction=0.5)
    )
    with caplog.at_level(logging.WARNING, logger="siglip_data"):
        batches = list(data)
    keys = keys_of(batches)
    # a-3 is a truncated copy of a-1: the samples before the damage are read, nothing crashes.
    assert {key for key in keys if key.startswith("good")} == {f"good{i}" for i in range(12)}
    assert all(key.startswith("good") for key in keys)
    assert data.skipped == dict.fromkeys(SKIP_REASONS, 0) | expected
    for key in (
        "corrupt",
        "truncated",
        "nocaption",
        "emptycaption",
        "noimage",
        "badjson",
        "badtext",
    ):
        assert any(repr(key) in message for message in caplog.messages), key
    assert any("a-2.tar" in message for message in caplog.messages)


def test_too_many_bad_samples_or_nothing_readable_raises(tmp_path: Path, tokenizer: Any) -> None:
    shards, _ = damaged_dataset(tmp_path)
    with pytest.raises(siglip_data.DataQualityError, match="max_bad_fraction"):
        list(make_dataset(shards, tokenizer, quality=QualityPolicy(max_bad_fraction=0.1)))
    junk = tmp_path / "junk"
    junk.mkdir()
    for index in range(3):
        (junk / f"{index}.tar").write_bytes(b"not a tar" * index)
    with pytest.raises(siglip_data.DataQualityError, match="no sample could be read"):
        list(make_dataset(junk, tokenizer))


def test_skip_counters_survive_resume_without_double_counting(
    tmp_path: Path, tokenizer: Any
) -> None:
    shards, expected = damaged_dataset(tmp_path)
    options = {"batch_size": 2, "quality": QualityPolicy(max_bad_fraction=0.5), "seed": 3}
    first = make_dataset(shards, tokenizer, **options)
    iterator = iter(first)
    next(iterator)
    next(iterator)
    resumed = make_dataset(shards, tokenizer, **options)
    resumed.load_state_dict(first.state_dict())
    list(resumed)
    assert resumed.skipped == dict.fromkeys(SKIP_REASONS, 0) | expected


def test_decode_threads_give_the_same_batches(
    make_shards: Callable[..., list[str]], tokenizer: Any
) -> None:
    shards = make_shards(20, per_shard=5)
    serial = list(make_dataset(shards, tokenizer, seed=2))
    threaded = list(make_dataset(shards, tokenizer, seed=2, decode=DecodeOptions(num_threads=3)))
    assert keys_of(serial) == keys_of(threaded)
    for ours, theirs in zip(serial, threaded):
        np.testing.assert_array_equal(ours["pixels"], theirs["pixels"])


def test_bad_arguments_raise_clear_errors(
    make_shards: Callable[..., list[str]], tokenizer: Any
) -> None:
    shards = make_shards(4, per_shard=4)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        make_dataset(shards, tokenizer, batch_size=0)
    with pytest.raises(ValueError, match="rank must be in"):
        make_dataset(shards, tokenizer, topology=Topology(rank=2, world_size=2))
    with pytest.raises(ValueError, match="pixel_dtype"):
        make_dataset(shards, tokenizer, decode=DecodeOptions(pixel_dtype="float16"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_bad_fraction"):
        make_dataset(shards, tokenizer, quality=QualityPolicy(max_bad_fraction=2.0))


def test_repeat_runs_epoch_after_epoch_and_stops_on_an_empty_stream(
    tmp_path: Path, tokenizer: Any
) -> None:
    shards = write_numbered_shards(tmp_path, [3, 2])
    reference = make_dataset(shards, tokenizer, seed=9)
    expected = keys_of(list(reference)) + keys_of(list(reference)) + keys_of(list(reference))
    repeated = make_dataset(shards, tokenizer, seed=9).repeat()
    got: list[str] = []
    while len(got) < len(expected):
        got.extend(next(repeated)["keys"])
    assert got == expected
    # Five samples over six streams: stream 5 never gets one.
    starved = make_dataset(shards, tokenizer, topology=Topology(world_size=6, rank=5))
    with pytest.raises(siglip_data.DataQualityError, match="two consecutive epochs"):
        next(starved.repeat())


def test_a_stream_whose_only_shard_is_broken_does_not_stop_the_run(
    tmp_path: Path, tokenizer: Any
) -> None:
    shards = write_numbered_shards(tmp_path, [3, 3])
    broken = tmp_path / "broken.tar"
    broken.write_bytes(b"not a tar")
    sources = [shards[0], str(broken), shards[1]]
    keys = []
    for worker in range(3):  # three shards, three streams: one stream gets only the broken one
        data = make_dataset(
            sources, tokenizer, shuffle=False, topology=Topology(worker_id=worker, num_workers=3)
        )
        keys.extend(keys_of(list(data)))
        assert data.skipped["unreadable_shard"] == (1 if worker == 1 else 0)
    assert sorted(keys) == sorted(f"s{s}n{i}" for s in range(2) for i in range(3))
