"""distributed_sigmoid_loss, distributed_softmax_loss and update_center over real gloo process
groups equal the single-device float64 oracle: the mean loss over ranks is the global loss, and
DDP's averaging of the gradients gives the global gradients.

One pool of 4 worker processes (tests/torch/distributed_worker.py) is started per module; it has
one process group per size 1..4, so every check (sizes, strategies, hypothesis examples, memory)
runs without paying process start-up and torch import again.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from multiprocessing.connection import Connection
from multiprocessing.connection import Listener
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from siglip_loss.numpy import sigmoid_loss_and_grads
from siglip_loss.numpy import softmax_loss_and_grads
from siglip_loss.numpy import update_center as oracle_update_center
from siglip_loss.torch import distributed_sigmoid_loss
from siglip_loss.torch import distributed_softmax_loss
from siglip_loss.torch import update_center

pytestmark = pytest.mark.multiprocess

POOL_SIZE = 4
WORKER = Path(__file__).with_name("distributed_worker.py")
TIMEOUT_S = 180.0


class WorkerPool:
    """Four gloo ranks on 127.0.0.1 waiting for jobs; ``run`` sends one job to the first W ranks."""

    def __init__(self) -> None:
        authkey = secrets.token_bytes(16)
        self._listener = Listener(("127.0.0.1", 0), authkey=authkey)
        port = self._listener.address[1]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        self._processes = [
            subprocess.Popen(
                [sys.executable, str(WORKER), str(rank), str(POOL_SIZE), str(port), authkey.hex()],
                env=env,
            )
            for rank in range(POOL_SIZE)
        ]
        connections: dict[int, Connection] = {}
        for _ in range(POOL_SIZE):
            connection = self._listener.accept()
            _, rank = self._receive(connection)
            connections[rank] = connection
        self.connections = [connections[rank] for rank in range(POOL_SIZE)]
        _, store_port = self._receive(self.connections[0])
        for connection in self.connections[1:]:
            connection.send(store_port)
        for connection in self.connections:
            self._receive(connection)  # "ready"

    def _receive(self, connection: Connection) -> Any:
        if not connection.poll(TIMEOUT_S):
            self.close()
            raise TimeoutError(f"a gloo worker did not answer within {TIMEOUT_S} s")
        return connection.recv()

    def run(self, world_size: int, job: dict[str, Any]) -> list[dict[str, Any]]:
        job = dict(job, world_size=world_size)
        for connection in self.connections[:world_size]:
            connection.send(job)
        replies = [self._receive(connection) for connection in self.connections[:world_size]]
        errors = [payload for status, payload in replies if status == "error"]
        if errors:
            raise AssertionError("worker failed:\n" + "\n".join(errors))
        return [payload for _, payload in replies]

    def close(self) -> None:
        for connection in getattr(self, "connections", []):
            with contextlib.suppress(OSError):
                connection.send(None)
        for process in self._processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._listener.close()


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool()
    yield workers
    workers.close()


def random_shards(
    rng: np.random.Generator, batch_sizes: list[int], dim: int, dtype: type = np.float32
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """L2-normalised image/text rows (float32 by default) split into one shard per rank."""

    def rows(count: int) -> np.ndarray:
        values = rng.standard_normal((count, dim))
        return (values / np.linalg.norm(values, axis=1, keepdims=True)).astype(dtype)

    return [rows(n) for n in batch_sizes], [rows(n) for n in batch_sizes]


def assert_matches_single_device(
    replies: list[dict[str, Any]],
    image_shards: list[np.ndarray],
    text_shards: list[np.ndarray],
    scale: float,
    bias: float,
    *,
    loss: str = "sigmoid",
    rtol: float = 2e-5,
    atol: float = 2e-6,
    image_groups: list[np.ndarray] | None = None,
    text_groups: list[np.ndarray] | None = None,
    positive_weighting: str = "uniform",
) -> None:
    """Mean loss and DDP-averaged gradients equal the float64 oracle on the concatenated batch."""
    world_size = len(replies)
    image, text = np.concatenate(image_shards), np.concatenate(text_shards)
    if loss == "softmax":
        oracle: Any = softmax_loss_and_grads(image, text, scale=scale)
    elif image_groups is not None and text_groups is not None:
        oracle = sigmoid_loss_and_grads(
            image,
            text,
            scale=scale,
            bias=bias,
            image_groups=np.concatenate(image_groups),
            text_groups=np.concatenate(text_groups),
            positive_weighting=positive_weighting,
        )
    else:
        oracle = sigmoid_loss_and_grads(image, text, scale=scale, bias=bias)
    mean_loss = np.mean([reply["loss"] for reply in replies])
    np.testing.assert_allclose(mean_loss, oracle.loss, rtol=rtol, atol=atol)
    mean_loss_without_grad = np.mean([reply["loss_without_grad"] for reply in replies])
    np.testing.assert_allclose(mean_loss_without_grad, oracle.loss, rtol=rtol, atol=atol)
    # DDP averages each parameter's gradient over the ranks; a shard's rows live on one rank, so
    # its averaged gradient is the rank's gradient / W.
    grad_image = np.concatenate([reply["grad_image"] for reply in replies]) / world_size
    grad_text = np.concatenate([reply["grad_text"] for reply in replies]) / world_size
    np.testing.assert_allclose(grad_image, oracle.grad_image_emb, rtol=rtol, atol=atol)
    np.testing.assert_allclose(grad_text, oracle.grad_text_emb, rtol=rtol, atol=atol)
    grad_scale = np.mean([reply["grad_scale"] for reply in replies])
    np.testing.assert_allclose(grad_scale, oracle.grad_scale, rtol=rtol, atol=atol)
    if loss == "softmax":
        assert {reply["grad_bias"] for reply in replies} == {None}  # the softmax ignores bias
        return
    grad_bias = np.mean([reply["grad_bias"] for reply in replies])
    np.testing.assert_allclose(grad_bias, oracle.grad_bias, rtol=rtol, atol=atol)


@pytest.mark.parametrize("strategy", ["ring", "all_gather"])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_mean_loss_and_averaged_gradients_equal_single_device(
    pool: WorkerPool, world_size: int, strategy: str
) -> None:
    rng = np.random.default_rng(world_size)
    image_shards, text_shards = random_shards(rng, [5] * world_size, 8)
    job = {
        "kind": "loss_and_grads",
        "strategy": strategy,
        "image_shards": image_shards,
        "text_shards": text_shards,
        "scale": 10.0,
        "bias": -3.0,
        "block_size": 2,  # several tiles per block, ragged last tile
    }
    replies = pool.run(world_size, job)
    assert {reply["loss_dtype"] for reply in replies} == {"torch.float32"}
    assert_matches_single_device(replies, image_shards, text_shards, 10.0, -3.0)


@pytest.mark.parametrize("strategy", ["ring", "all_gather"])
def test_uneven_local_batches_are_exact(pool: WorkerPool, strategy: str) -> None:
    rng = np.random.default_rng(7)
    image_shards, text_shards = random_shards(rng, [1, 6, 3, 4], 5)
    job = {
        "kind": "loss_and_grads",
        "strategy": strategy,
        "image_shards": image_shards,
        "text_shards": text_shards,
        "scale": 7.5,
        "bias": -1.0,
    }
    assert_matches_single_device(pool.run(4, job), image_shards, text_shards, 7.5, -1.0)


def test_bfloat16_inputs_get_bfloat16_gradients_close_to_the_oracle(pool: WorkerPool) -> None:
    rng = np.random.default_rng(3)
    image_shards, text_shards = random_shards(rng, [4, 4], 16)
    # Round the inputs to bfloat16 first, so that the oracle sees the same values.
    image_shards = [torch.tensor(s).bfloat16().float().numpy() for s in image_shards]
    text_shards = [torch.tensor(s).bfloat16().float().numpy() for s in text_shards]
    job = {
        "kind": "loss_and_grads",
        "strategy": "ring",
        "dtype": "bfloat16",
        "image_shards": image_shards,
        "text_shards": text_shards,
        "scale": 10.0,
        "bias": -10.0,
    }
    replies = pool.run(2, job)
    assert {reply["grad_image_dtype"] for reply in replies} == {"torch.bfloat16"}
    # float32 accumulation: the loss is float32-exact; the gradients are rounded to bfloat16.
    oracle = sigmoid_loss_and_grads(
        np.concatenate(image_shards), np.concatenate(text_shards), scale=10.0, bias=-10.0
    )
    np.testing.assert_allclose(np.mean([r["loss"] for r in replies]), oracle.loss, rtol=1e-5)
    grad_text = np.concatenate([r["grad_text"] for r in replies]) / 2
    np.testing.assert_allclose(grad_text, oracle.grad_text_emb, rtol=1e-2, atol=1e-3)


@settings(deadline=None)
@given(
    batch_sizes=st.lists(st.integers(1, 6), min_size=1, max_size=POOL_SIZE),
    dim=st.integers(1, 9),
    scale=st.floats(0.5, 50.0),
    bias=st.floats(-15.0, 5.0),
    strategy=st.sampled_from(["ring", "all_gather"]),
    block_size=st.one_of(st.none(), st.integers(1, 4)),
    seed=st.integers(0, 2**31 - 1),
)
def test_distributed_equals_single_device_for_any_shards_scale_and_bias(
    pool: WorkerPool,
    batch_sizes: list[int],
    dim: int,
    scale: float,
    bias: float,
    strategy: str,
    block_size: int | None,
    seed: int,
) -> None:
    image_shards, text_shards = random_shards(np.random.default_rng(seed), batch_sizes, dim)
    job = {
        "kind": "loss_and_grads",
        "strategy": strategy,
        "image_shards": image_shards,
        "text_shards": text_shards,
        "scale": scale,
        "bias": bias,
        "block_size": block_size,
    }
    replies = pool.run(len(batch_sizes), job)
    # float32 sums of up to 24^2 terms with logits up to |60|: relative 1e-4 on the small grads.
    assert_matches_single_device(
        replies, image_shards, text_shards, scale, bias, rtol=1e-4, atol=1e-5
    )


def rows(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    values = rng.standard_normal((count, dim))
    return (values / np.linalg.norm(values, axis=1, keepdims=True)).astype(np.float32)


def scattered_captions(
    rng: np.random.Generator, images_per_rank: list[int], captions_per_image: int, dim: int
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Images (ids 0..N-1) on their ranks; their captions dealt to random ranks, so that most
    positives of an image live on another rank. Returns image/text shards and their ids."""
    world = len(images_per_rank)
    image_ids = np.arange(sum(images_per_rank))
    caption_ids = np.repeat(image_ids, captions_per_image)
    owner = rng.integers(0, world, caption_ids.size)
    owner[:world] = np.arange(world)  # every rank gets at least one caption
    image_groups = np.split(image_ids, np.cumsum(images_per_rank)[:-1])
    text_groups = [caption_ids[owner == rank] for rank in range(world)]
    image_shards = [rows(rng, len(ids), dim) for ids in image_groups]
    text_shards = [rows(rng, len(ids), dim) for ids in text_groups]
    return image_shards, text_shards, image_groups, text_groups


@pytest.mark.parametrize("positive_weighting", ["uniform", "inverse_count"])
@pytest.mark.parametrize("strategy", ["ring", "all_gather"])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_captions_scattered_across_ranks_give_the_single_device_grouped_loss_and_gradients(
    pool: WorkerPool, world_size: int, strategy: str, positive_weighting: str
) -> None:
    rng = np.random.default_rng(10 + world_size)
    image_shards, text_shards, image_groups, text_groups = scattered_captions(
        rng, [3] * world_size, 5, 6
    )
    job = {
        "kind": "loss_and_grads",
        "strategy": strategy,
        "image_shards": image_shards,
        "text_shards": text_shards,
        "image_groups": image_groups,
        "text_groups": text_groups,
        "positive_weighting": positive_weighting,
        "scale": 10.0,
        "bias": -3.0,
        "block_size": 4,
    }
    assert_matches_single_device(
        pool.run(world_size, job),
        image_shards,
        text_shards,
        10.0,
        -3.0,
        image_groups=image_groups,
        text_groups=text_groups,
        positive_weighting=positive_weighting,
    )


@settings(deadline=None, max_examples=10)
@given(
    image_batches=st.lists(st.integers(1, 5), min_size=1, max_size=POOL_SIZE),
    text_extra=st.lists(st.integers(-2, 4), min_size=POOL_SIZE, max_size=POOL_SIZE),
    ids=st.integers(1, 8),
    dim=st.integers(1, 6),
    scale=st.floats(0.5, 50.0),
    bias=st.floats(-15.0, 5.0),
    strategy=st.sampled_from(["ring", "all_gather"]),
    positive_weighting=st.sampled_from(["uniform", "inverse_count"]),
    block_size=st.one_of(st.none(), st.integers(1, 4)),
    seed=st.integers(0, 2**31 - 1),
)
def test_grouped_distributed_equals_single_device_for_any_shards_and_group_pattern(
    pool: WorkerPool,
    image_batches: list[int],
    text_extra: list[int],
    ids: int,
    dim: int,
    scale: float,
    bias: float,
    strategy: str,
    positive_weighting: str,
    block_size: int | None,
    seed: int,
) -> None:
    # Uneven and rectangular shards (each rank's text batch differs from its image batch), ids
    # drawn from a small range: repeats within and across ranks, rows without a positive.
    rng = np.random.default_rng(seed)
    text_batches = [max(1, n + extra) for n, extra in zip(image_batches, text_extra, strict=False)]
    image_shards = [rows(rng, n, dim) for n in image_batches]
    text_shards = [rows(rng, m, dim) for m in text_batches]
    image_groups = [rng.integers(0, ids, n) for n in image_batches]
    text_groups = [rng.integers(0, ids + 1, m) for m in text_batches]
    job = {
        "kind": "loss_and_grads",
        "strategy": strategy,
        "image_shards": image_shards,
        "text_shards": text_shards,
        "image_groups": image_groups,
        "text_groups": text_groups,
        "positive_weighting": positive_weighting,
        "scale": scale,
        "bias": bias,
        "block_size": block_size,
    }
    assert_matches_single_device(
        pool.run(len(image_batches), job),
        image_shards,
        text_shards,
        scale,
        bias,
        rtol=1e-4,
        atol=1e-5,
        image_groups=image_groups,
        text_groups=text_groups,
        positive_weighting=positive_weighting,
    )


@pytest.mark.parametrize("strategy", ["ring", "all_gather"])
def test_grouped_float64_shards_equal_the_oracle_to_its_precision(
    pool: WorkerPool, strategy: str
) -> None:
    rng = np.random.default_rng(8)
    image_shards, text_shards, image_groups, text_groups = scattered_captions(rng, [2, 4, 3], 3, 5)
    image_shards = [shard.astype(np.float64) for shard in image_shards]
    text_shards = [shard.astype(np.float64) for shard in text_shards]
    job = {
        "kind": "loss_and_grads",
        "strategy": strategy,
        "dtype": "float64",
        "image_shards": image_shards,
        "text_shards": text_shards,
        "image_groups": image_groups,
        "text_groups": text_groups,
        "positive_weighting": "inverse_count",
        "scale": 10.0,
        "bias": -3.0,
        "block_size": 3,
    }
    assert_matches_single_device(
        pool.run(3, job),
        image_shards,
        text_shards,
        10.0,
        -3.0,
        rtol=1e-12,
        atol=1e-14,
        image_groups=image_groups,
        text_groups=text_groups,
        positive_weighting="inverse_count",
    )


@pytest.mark.parametrize("strategy", ["ring", "all_gather"])
def test_ring_memory_does_not_grow_with_world_size(pool: WorkerPool, strategy: str) -> None:
    job = {"kind": "memory", "strategy": strategy, "batch": 64, "dim": 32, "block_size": 16}
    by_world = {w: pool.run(w, job) for w in (1, 2, 3, 4)}
    saved = {w: {r["saved_bytes"] for r in replies} for w, replies in by_world.items()}
    peak = {w: max(r["peak_bytes"] for r in replies) for w, replies in by_world.items()}
    # Backward keeps exactly the four float32 gradients, [n, D] x 2 and two scalars, for any W.
    expected_saved = 2 * 64 * 32 * 4 + 2 * 4
    assert saved == {w: {expected_saved} for w in (1, 2, 3, 4)}
    block = 64 * 32 * 4  # one [n, D] float32 block
    if strategy == "ring":
        # From W = 3 on, every step looks the same: own embeddings (2 blocks), the image gradient,
        # two block gradients inside the fused primitive, the travelling gradient being sent and
        # the one being received, the text block in use and the one in flight: 9 blocks + tiles.
        assert peak[1] <= peak[2] <= peak[3] == peak[4], peak
        assert peak[4] < 10 * block, peak
    else:
        # The gathered tower and its float32 gradient grow by two blocks per extra rank.
        assert peak[4] - peak[2] >= 4 * block, peak


def test_group_ids_add_only_kilobytes_to_the_rings_memory(pool: WorkerPool) -> None:
    job = {"kind": "memory", "strategy": "ring", "batch": 64, "dim": 32, "block_size": 16}
    plain = {w: max(r["peak_bytes"] for r in pool.run(w, job)) for w in (3, 4)}
    grouped = {w: max(r["peak_bytes"] for r in pool.run(w, dict(job, groups=True))) for w in (3, 4)}
    # Every rank's ids (int64) and pair weights, the sort orders of its column blocks, one
    # tile's positive index: O(N + M) integers, a few KiB (one [n, D] float32 block is 8 KiB).
    for world in (3, 4):
        assert plain[world] <= grouped[world] <= plain[world] + 4 * world * 64 * 8 + 4096, (
            plain,
            grouped,
        )


@pytest.mark.parametrize("strategy", ["ring", "all_gather"])
def test_ranks_without_autograd_do_not_block_the_ranks_that_train(
    pool: WorkerPool, strategy: str
) -> None:
    image_shards, text_shards = random_shards(np.random.default_rng(2), [3, 3, 3], 4)
    job = {
        "kind": "grad_on_some_ranks_only",
        "strategy": strategy,
        "image_shards": image_shards,
        "text_shards": text_shards,
        "scale": 10.0,
        "bias": -5.0,
    }
    replies = pool.run(3, job)
    oracle = sigmoid_loss_and_grads(
        np.concatenate(image_shards), np.concatenate(text_shards), scale=10.0, bias=-5.0
    )
    np.testing.assert_allclose(np.mean([r["loss"] for r in replies]), oracle.loss, rtol=2e-5)
    # The text gradient of a training rank still includes rank 0's loss terms.
    for rank in (1, 2):
        np.testing.assert_allclose(
            replies[rank]["grad_text"] / 3,
            oracle.grad_text_emb[3 * rank : 3 * rank + 3],
            rtol=2e-5,
            atol=2e-6,
        )


@pytest.mark.parametrize(
    ("loss", "differs", "message"),
    [
        ("sigmoid", "dim", "image_emb: expected the same embedding dim on every rank, got dims [4, 5, 6]"),
        ("sigmoid", "dtype", "image_emb: expected the same dtype on every rank, got ['float32', 'float64', 'float32']"),
        ("softmax", "dim", "image_emb: expected the same embedding dim on every rank, got dims [4, 5, 6]"),
        ("softmax", "dtype", "image_emb: expected the same dtype on every rank, got ['float32', 'float64', 'float32']"),
        ("softmax", "batch", "image_emb: expected the same batch on every rank, got batches [3, 4, 5]"),
        ("sigmoid", "groups", "image_groups: expected group ids on every rank or on none, got them on ranks [0] of 3"),
        ("sigmoid", "positive_weighting", "positive_weighting: expected the same value on every rank, got ['uniform', 'uniform', 'inverse_count']"),
    ],
)  # fmt: skip
def test_inputs_that_differ_between_ranks_raise_on_every_rank(
    pool: WorkerPool, loss: str, differs: str, message: str
) -> None:
    replies = pool.run(3, {"kind": "mismatched_inputs", "loss": loss, "differs": differs})
    for reply in replies:
        assert reply["error"] is not None
        assert message in reply["error"]


@pytest.mark.parametrize("strategy", ["ring", "all_gather"])
def test_float64_shards_are_computed_in_float64_to_the_oracles_precision(
    pool: WorkerPool, strategy: str
) -> None:
    image_shards, text_shards = random_shards(np.random.default_rng(5), [4, 2, 5], 6, np.float64)
    job = {
        "kind": "loss_and_grads",
        "strategy": strategy,
        "dtype": "float64",
        "image_shards": image_shards,
        "text_shards": text_shards,
        "scale": 10.0,
        "bias": -3.0,
        "block_size": 3,
    }
    replies = pool.run(3, job)
    assert {reply["loss_dtype"] for reply in replies} == {"torch.float64"}
    assert {reply["grad_image_dtype"] for reply in replies} == {"torch.float64"}
    assert_matches_single_device(
        replies, image_shards, text_shards, 10.0, -3.0, rtol=1e-12, atol=1e-14
    )


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_softmax_mean_loss_and_averaged_gradients_equal_single_device(
    pool: WorkerPool, world_size: int
) -> None:
    rng = np.random.default_rng(world_size)
    image_shards, text_shards = random_shards(rng, [5] * world_size, 8)
    job = {
        "kind": "loss_and_grads",
        "loss": "softmax",
        "image_shards": image_shards,
        "text_shards": text_shards,
        "scale": 10.0,
        "bias": -3.0,
    }
    replies = pool.run(world_size, job)
    assert {reply["loss_dtype"] for reply in replies} == {"torch.float32"}
    assert_matches_single_device(replies, image_shards, text_shards, 10.0, -3.0, loss="softmax")


@settings(deadline=None)
@given(
    world_size=st.integers(1, POOL_SIZE),
    local_batch=st.integers(1, 6),
    dim=st.integers(1, 9),
    scale=st.floats(0.5, 50.0),
    dtype=st.sampled_from(["float32", "float64"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_distributed_softmax_equals_single_device_for_any_shards_and_scale(
    pool: WorkerPool,
    world_size: int,
    local_batch: int,
    dim: int,
    scale: float,
    dtype: str,
    seed: int,
) -> None:
    image_shards, text_shards = random_shards(
        np.random.default_rng(seed), [local_batch] * world_size, dim, np.dtype(dtype).type
    )
    job = {
        "kind": "loss_and_grads",
        "loss": "softmax",
        "dtype": dtype,
        "image_shards": image_shards,
        "text_shards": text_shards,
        "scale": scale,
        "bias": 0.0,
    }
    replies = pool.run(world_size, job)
    assert {reply["loss_dtype"] for reply in replies} == {f"torch.{dtype}"}
    # float32: sums of up to 24 exponentials with logits up to |50|; float64: the oracle's precision.
    rtol, atol = (1e-4, 1e-5) if dtype == "float32" else (1e-11, 1e-13)
    assert_matches_single_device(
        replies, image_shards, text_shards, scale, 0.0, loss="softmax", rtol=rtol, atol=atol
    )


def test_update_center_averages_the_teacher_logits_of_every_rank(pool: WorkerPool) -> None:
    # Uneven shards: the global mean weighs every row once, not every rank once.
    rng = np.random.default_rng(0)
    shards = [rng.normal(size=(rows, 5)).astype(np.float32) for rows in (1, 4, 2)]
    center = rng.normal(size=5).astype(np.float32)
    job = {"kind": "update_center", "center": center, "teacher_shards": shards, "momentum": 0.8}
    replies = pool.run(3, job)
    want = oracle_update_center(center, np.concatenate(shards), momentum=0.8)
    for reply in replies:
        np.testing.assert_allclose(reply["center"], want, rtol=1e-6, atol=1e-7)
    # Without a process group (this process) the mean is the local one.
    local = update_center(torch.from_numpy(center), torch.from_numpy(shards[1]), momentum=0.8)
    np.testing.assert_allclose(
        local.numpy(), oracle_update_center(center, shards[1], momentum=0.8), rtol=1e-6
    )


@pytest.mark.parametrize("loss", [distributed_sigmoid_loss, distributed_softmax_loss])
def test_without_a_process_group_raises_a_clear_error(loss: Any) -> None:
    image = torch.randn(2, 3)
    with pytest.raises(RuntimeError, match="init_process_group"):
        loss(image, image, scale=10.0, bias=-10.0)


@pytest.mark.parametrize("loss", [distributed_sigmoid_loss, distributed_softmax_loss])
@pytest.mark.parametrize(
    ("image_emb", "scale", "bias", "error", "message"),
    [
        (np.zeros((2, 3), np.float32), 10.0, 0.0, TypeError, r"image_emb: expected a torch.Tensor"),
        (torch.zeros(2, 3, dtype=torch.int64), 10.0, 0.0, TypeError, r"image_emb: .* got int64"),
        (torch.zeros(2), 10.0, 0.0, ValueError, r"image_emb: expected rank 2"),
        (torch.zeros(2, 3), -1.0, 0.0, ValueError, r"scale: expected a positive value"),
        (torch.zeros(2, 3), torch.ones(2), 0.0, ValueError, r"scale: expected a scalar \(0-d\)"),
        (torch.zeros(2, 3), 10.0, float("nan"), ValueError, r"bias: expected a finite value"),
    ],
)
def test_bad_input_raises_a_message_naming_the_argument_before_any_communication(
    loss: Any, image_emb: Any, scale: Any, bias: Any, error: type[Exception], message: str
) -> None:
    # No process group exists here: the checks come first, so the message names the argument.
    with pytest.raises(error, match=message):
        loss(image_emb, torch.zeros(2, 3), scale=scale, bias=bias)


def test_unknown_strategy_raises_naming_the_argument() -> None:
    image = torch.randn(2, 3)
    with pytest.raises(ValueError, match="strategy: expected one of"):
        distributed_sigmoid_loss(image, image, scale=10.0, bias=-10.0, strategy="bidir")  # type: ignore[arg-type]
