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


def test_naflex_batches_are_jax_arrays_and_resume_exactly(
    make_shards: Callable[..., list[str]], tokenizer: Any
) -> None:
    from siglip_data.naflex import NaflexOptions

    shards = make_shards(12, per_shard=3)

    def loader() -> JaxImageTextLoader:
        dataset = siglip_data.ImageTextDataset(
            shards,
            tokenizer=tokenizer,
            naflex=NaflexOptions(sequence_lengths=(4, 9), patch_size=4),
            batch_size=3,
            seed=1,
        )
        return JaxImageTextLoader(dataset, prefetch=2)

    reference = list(loader())
    assert {batch["patches"].shape[1] for batch in reference} == {4, 9}
    interrupted = loader()
    iterator = iter(interrupted)
    got = [next(iterator) for _ in range(2)]
    state = interrupted.state_dict()
    del iterator
    resumed = loader()
    resumed.load_state_dict(state)
    got.extend(resumed)
    assert [b["keys"] for b in got] == [b["keys"] for b in reference]
    for ours, theirs in zip(got, reference):
        assert isinstance(ours["patches"], jax.Array)
        assert ours["patch_mask"].dtype == np.bool_
        np.testing.assert_array_equal(np.asarray(ours["patches"]), np.asarray(theirs["patches"]))


def test_big_vision_order_equals_jax_antialiased_linear_resize() -> None:
    import jax.numpy as jnp
    from PIL import Image

    from siglip_data.naflex import naflex_preprocess
    from siglip_data.naflex import patchify

    rng = np.random.default_rng(0)
    for height, width in ((50, 31), (7, 90), (33, 33)):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        record = naflex_preprocess(
            Image.fromarray(image), patch_size=4, max_num_patches=20, order="big_vision"
        )
        rows, cols = record.spatial_shape
        scaled = jnp.asarray(image, jnp.float32) * (2 / 255) - 1  # value_range(-1, 1) first
        # big_vision's tf.image.resize(bilinear, antialias=True) is this scale-and-translate.
        expected = jax.image.resize(scaled, (rows * 4, cols * 4, 3), "linear", antialias=True)
        np.testing.assert_allclose(record.image(), np.asarray(expected), atol=2e-5)
        np.testing.assert_array_equal(
            np.asarray(patchify(expected, 4)), patchify(np.asarray(expected), 4)
        )
