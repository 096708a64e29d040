"""siglip_data.torch: NCHW tensors, multi-worker loading without duplicates, exact resume."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import siglip_data
from siglip_data import Topology
from siglip_data._image import resize_bilinear_tf
from siglip_data.torch import ImageTextLoader
from siglip_data.torch import TorchImageTextDataset


def make_dataset(shards: list[str], tokenizer: Any, **options: Any) -> siglip_data.ImageTextDataset:
    defaults: dict[str, Any] = {"image_size": 8, "batch_size": 3, "shuffle_buffer": 6, "seed": 4}
    return siglip_data.ImageTextDataset(shards, tokenizer=tokenizer, **(defaults | options))


def keys_of(batches: list[dict[str, Any]]) -> list[str]:
    return [key for batch in batches for key in batch["keys"]]


def test_batches_are_nchw_tensors_equal_to_the_numpy_batches(
    make_shards: Callable[..., list[str]], tokenizer: Any
) -> None:
    shards = make_shards(7, per_shard=3)
    reference = list(make_dataset(shards, tokenizer))
    batches = list(ImageTextLoader(make_dataset(shards, tokenizer)))
    assert keys_of(batches) == keys_of(reference)
    for ours, theirs in zip(batches, reference):
        assert ours["pixels"].shape == (len(ours["keys"]), 3, 8, 8)
        assert ours["pixels"].dtype == torch.float32
        assert ours["token_ids"].dtype == torch.int32
        np.testing.assert_array_equal(ours["pixels"].permute(0, 2, 3, 1).numpy(), theirs["pixels"])
        np.testing.assert_array_equal(ours["token_ids"].numpy(), theirs["token_ids"])
        assert ours["metadata"] == theirs["metadata"]


@pytest.mark.multiprocess
@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")  # 3 > 2 cores
@pytest.mark.parametrize("num_workers", [2, 3])
def test_workers_and_ranks_cover_every_sample_once(
    make_shards: Callable[..., list[str]], tokenizer: Any, num_workers: int
) -> None:
    shards = make_shards(23, per_shard=2)
    expected = sorted(keys_of(list(make_dataset(shards, tokenizer))))
    seen = []
    for rank in range(2):
        loader = ImageTextLoader(
            make_dataset(shards, tokenizer, topology=Topology(rank=rank, world_size=2)),
            num_workers=num_workers,
        )
        seen.extend(keys_of(list(loader)))
        assert loader.epoch == 1
    assert sorted(seen) == expected


@pytest.mark.multiprocess
@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("stop_after", [0, 1, 4, 7, 9])
def test_resuming_a_multi_worker_loader_yields_exactly_the_uninterrupted_batches(
    make_shards: Callable[..., list[str]], tokenizer: Any, stop_after: int, num_workers: int
) -> None:
    # Uneven shards: the workers run out at different times.
    shards = make_shards(25, per_shard=4)
    reference_loader = ImageTextLoader(make_dataset(shards, tokenizer), num_workers=num_workers)
    reference = list(reference_loader) + list(reference_loader)  # two epochs
    loader = ImageTextLoader(make_dataset(shards, tokenizer), num_workers=num_workers)
    got: list[dict[str, Any]] = []
    iterator = iter(loader)
    for _ in range(stop_after):
        got.append(next(iterator))
    state = loader.state_dict()
    del iterator
    resumed = ImageTextLoader(make_dataset(shards, tokenizer), num_workers=num_workers)
    resumed.load_state_dict(state)
    got.extend(resumed)
    got.extend(resumed)
    assert keys_of(got[: len(reference)]) == keys_of(reference)
    assert resumed.epoch == 2
    with pytest.raises(ValueError, match=f"num_workers={num_workers}"):
        ImageTextLoader(make_dataset(shards, tokenizer), num_workers=1).load_state_dict(state)


def test_skipped_counts_are_summed_over_workers(
    make_shards: Callable[..., list[str]], tokenizer: Any, tmp_path: Any
) -> None:
    shards = make_shards(12, per_shard=3)
    (tmp_path / "broken.tar").write_bytes(b"not a tar")
    sources = [*shards, str(tmp_path / "broken.tar")]
    loader = ImageTextLoader(make_dataset(sources, tokenizer), num_workers=2)
    assert len(keys_of(list(loader))) == 12
    assert loader.skipped["unreadable_shard"] == 1
    list(loader)  # counts accumulate over epochs
    assert loader.skipped["unreadable_shard"] == 2
    interrupted = ImageTextLoader(make_dataset(sources, tokenizer), num_workers=2)
    iterator = iter(interrupted)
    next(iterator)
    resumed = ImageTextLoader(make_dataset(sources, tokenizer), num_workers=2)
    resumed.load_state_dict(interrupted.state_dict())
    list(resumed)
    assert resumed.skipped["unreadable_shard"] == 1  # counted once, not again on replay


def test_iterable_dataset_works_with_a_plain_dataloader(
    make_shards: Callable[..., list[str]], tokenizer: Any
) -> None:
    shards = make_shards(8, per_shard=2)
    loader = torch.utils.data.DataLoader(
        TorchImageTextDataset(make_dataset(shards, tokenizer)), batch_size=None, num_workers=2
    )
    keys = [key for batch in loader for key in batch["keys"]]
    assert sorted(keys) == [f"{i:09d}" for i in range(8)]


def test_big_vision_bilinear_matches_torch_interpolate_without_antialias() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (37, 53, 3)).astype(np.float32)
    for height, width in [(16, 16), (64, 80), (37, 20)]:
        expected = torch.nn.functional.interpolate(
            torch.from_numpy(pixels).permute(2, 0, 1)[None],
            size=(height, width),
            mode="bilinear",
            align_corners=False,
            antialias=False,
        )[0].permute(1, 2, 0)
        ours = resize_bilinear_tf(pixels, height, width)
        np.testing.assert_allclose(ours, expected.numpy(), atol=1e-2)  # float32 coordinate rounding


@pytest.mark.multiprocess
@pytest.mark.parametrize("num_workers", [0, 2])
def test_naflex_batches_are_tensors_with_per_batch_lengths_and_resume_exactly(
    make_shards: Callable[..., list[str]], tokenizer: Any, num_workers: int
) -> None:
    from siglip_data.naflex import NaflexOptions

    shards = make_shards(20, per_shard=4)
    naflex = NaflexOptions(sequence_lengths=(4, 7, 12), patch_size=4)

    def loader() -> ImageTextLoader:
        dataset = siglip_data.ImageTextDataset(
            shards, tokenizer=tokenizer, naflex=naflex, batch_size=3, shuffle_buffer=6, seed=4
        )
        return ImageTextLoader(dataset, num_workers=num_workers)

    reference_loader = loader()
    reference = list(reference_loader) + list(reference_loader)
    assert {batch["patches"].shape[1] for batch in reference} == {4, 7, 12}
    for batch in reference:
        assert batch["patches"].dtype == torch.float32
        assert batch["patch_mask"].dtype == torch.bool
        assert batch["spatial_shapes"].dtype == torch.int32
    interrupted = loader()
    iterator = iter(interrupted)
    got = [next(iterator) for _ in range(3)]
    state = interrupted.state_dict()
    del iterator
    resumed = loader()
    resumed.load_state_dict(state)
    got.extend(resumed)
    got.extend(resumed)
    assert keys_of(got) == keys_of(reference)
    for ours, theirs in zip(got, reference):
        torch.testing.assert_close(ours["patches"], theirs["patches"], atol=0, rtol=0)
        assert torch.equal(ours["spatial_shapes"], theirs["spatial_shapes"])


def test_patchify_gives_the_numpy_result_on_torch_tensors() -> None:
    from siglip_data.naflex import patchify
    from siglip_data.naflex import unpatchify

    image = np.random.default_rng(0).uniform(-1, 1, (12, 20, 3)).astype(np.float32)
    patches = patchify(torch.from_numpy(image), 4)
    assert isinstance(patches, torch.Tensor)
    np.testing.assert_array_equal(patches.numpy(), patchify(image, 4))
    np.testing.assert_array_equal(unpatchify(patches, (3, 5), 4).numpy(), image)
