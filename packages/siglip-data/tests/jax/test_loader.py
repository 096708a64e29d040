"""siglip_data.jax: JAX arrays, prefetch thread, exact resume."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import pytest

import siglip_data
from siglip_data.jax import JaxImageTextLoader
from siglip_data.jax import to_jax


def make_dataset(shards: list[str], tokenizer: Any) -> siglip_data.ImageTextDataset:
    return siglip_data.ImageTextDataset(
        shards, tokenizer=tokenizer, image_size=8, batch_size=3, shuffle_buffer=5, seed=1
    )


def test_batches_are_jax_arrays_equal_to_the_numpy_batches(
    make_shards: Callable[..., list[str]], tokenizer: Any
) -> None:
    shards = make_shards(10, per_shard=3)
    reference = list(make_dataset(shards, tokenizer))
    batches = list(JaxImageTextLoader(make_dataset(shards, tokenizer), prefetch=2))
    assert [b["keys"] for b in batches] == [b["keys"] for b in reference]
    for ours, theirs in zip(batches, reference):
        assert isinstance(ours["pixels"], jax.Array)
        assert ours["pixels"].shape[1:] == (8, 8, 3)
        assert ours["token_ids"].dtype == np.int32
        np.testing.assert_array_equal(np.asarray(ours["pixels"]), theirs["pixels"])
    converted = to_jax(reference[0])
    np.testing.assert_array_equal(np.asarray(converted["token_ids"]), reference[0]["token_ids"])


@pytest.mark.parametrize("prefetch", [0, 3])
def test_resume_is_exact_despite_prefetching(
    make_shards: Callable[..., list[str]], tokenizer: Any, prefetch: int
) -> None:
    shards = make_shards(14, per_shard=3)
    reference_loader = JaxImageTextLoader(make_dataset(shards, tokenizer), prefetch=prefetch)
    reference = [b["keys"] for b in reference_loader] + [b["keys"] for b in reference_loader]
    loader = JaxImageTextLoader(make_dataset(shards, tokenizer), prefetch=prefetch)
    iterator = iter(loader)
    got = [next(iterator)["keys"] for _ in range(2)]
    state = loader.state_dict()
    iterator.close()
    resumed = JaxImageTextLoader(make_dataset(shards, tokenizer), prefetch=prefetch)
    resumed.load_state_dict(state)
    got += [b["keys"] for b in resumed] + [b["keys"] for b in resumed]
    assert got == reference
    assert resumed.epoch == 2


def test_batches_are_placed_on_the_given_sharding(
    make_shards: Callable[..., list[str]], tokenizer: Any
) -> None:
    devices = jax.devices()
    assert len(devices) == 8  # the fake CPU devices of conftest.py
    mesh = jax.sharding.Mesh(np.array(devices), ("batch",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    shards = make_shards(16, per_shard=4)
    dataset = siglip_data.ImageTextDataset(
        shards, tokenizer=tokenizer, image_size=8, batch_size=8, seed=1
    )
    reference = list(
        siglip_data.ImageTextDataset(
            shards, tokenizer=tokenizer, image_size=8, batch_size=8, seed=1
        )
    )
    batches = list(JaxImageTextLoader(dataset, prefetch=1, sharding=sharding))
    assert len(batches) == len(reference) == 2
    for ours, theirs in zip(batches, reference):
        assert ours["pixels"].sharding == sharding
        assert {shard.data.shape for shard in ours["pixels"].addressable_shards} == {(1, 8, 8, 3)}
        np.testing.assert_array_equal(np.asarray(ours["token_ids"]), theirs["token_ids"])
