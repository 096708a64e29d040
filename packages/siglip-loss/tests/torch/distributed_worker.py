"""One rank of the gloo worker pool that tests/torch/test_distributed.py drives.

Started as ``python distributed_worker.py RANK WORLD_SIZE PARENT_PORT AUTHKEY_HEX``. It connects
back to the test process, joins a gloo process group on 127.0.0.1 (rank 0 opens the store on a
free port and reports it), creates one subgroup per size 1..WORLD_SIZE (the full size is the
default group), then answers jobs until it receives ``None``. A job names a group size; only the
ranks below it receive it. Replies are plain numpy arrays and floats; an exception becomes
``("error", traceback)``.
"""

from __future__ import annotations

import datetime
import os
import sys
import traceback
import warnings
import weakref
from multiprocessing.connection import Client
from typing import Any

import torch
import torch.distributed as dist
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from siglip_loss.torch import distributed_sigmoid_loss
from siglip_loss.torch import distributed_softmax_loss
from siglip_loss.torch import update_center


class LiveTensorBytes(TorchDispatchMode):
    """Track the bytes of tensor storage created under the mode that is still alive; keep the peak.

    Every tensor an operator returns counts its storage once (views and in-place results share
    it); a storage stops counting when the last tracked tensor that uses it is garbage collected.
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._storage_users: dict[int, int] = {}
        self._storage_bytes: dict[int, int] = {}
        self._tracked: set[int] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        result = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(result):
            if isinstance(leaf, torch.Tensor):
                self._track(leaf)
        return result

    def _track(self, tensor: torch.Tensor) -> None:
        if id(tensor) in self._tracked:
            return
        storage = tensor.untyped_storage()
        key, size = storage.data_ptr(), storage.nbytes()
        if size == 0:
            return
        self._tracked.add(id(tensor))
        if key not in self._storage_users:
            self._storage_users[key] = 0
            self._storage_bytes[key] = size
            self.current += size
            self.peak = max(self.peak, self.current)
        self._storage_users[key] += 1
        weakref.finalize(tensor, self._release, id(tensor), key)

    def _release(self, tensor_id: int, key: int) -> None:
        self._tracked.discard(tensor_id)
        self._storage_users[key] -= 1
        if self._storage_users[key] == 0:
            del self._storage_users[key]
            self.current -= self._storage_bytes.pop(key)


def _loss_and_grads(job: dict[str, Any], group: Any, rank: int) -> dict[str, Any]:
    """One forward and backward of the sigmoid loss (or the softmax one, ``job["loss"]``)."""
    dtype = getattr(torch, job.get("dtype", "float32"))
    scalar_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    image = torch.tensor(job["image_shards"][rank], dtype=dtype, requires_grad=True)
    text = torch.tensor(job["text_shards"][rank], dtype=dtype, requires_grad=True)
    scale = torch.tensor(job["scale"], dtype=scalar_dtype, requires_grad=True)
    bias = torch.tensor(job["bias"], dtype=scalar_dtype, requires_grad=True)
    groups: dict[str, Any] = {}
    if job.get("image_groups") is not None:
        groups = {
            "image_groups": torch.tensor(job["image_groups"][rank]),
            "text_groups": torch.tensor(job["text_groups"][rank]),
            "positive_weighting": job.get("positive_weighting", "uniform"),
        }
    if job.get("loss", "sigmoid") == "softmax":

        def loss_of(image: torch.Tensor, text: torch.Tensor, **options: Any) -> torch.Tensor:
            return distributed_softmax_loss(image, text, scale=scale, group=group)
    else:

        def loss_of(image: torch.Tensor, text: torch.Tensor, **options: Any) -> torch.Tensor:
            return distributed_sigmoid_loss(
                image,
                text,
                scale=scale,
                bias=bias,
                group=group,
                strategy=job["strategy"],
                **groups,
                **options,
            )

    loss = loss_of(image, text, block_size=job.get("block_size"))
    loss.backward()
    assert image.grad is not None
    assert text.grad is not None
    assert scale.grad is not None
    with torch.no_grad():
        loss_without_grad = loss_of(image, text)
    return {
        "loss": float(loss.detach()),
        "loss_without_grad": float(loss_without_grad),
        "loss_dtype": str(loss.dtype),
        "grad_image": image.grad.double().numpy(),
        "grad_text": text.grad.double().numpy(),
        "grad_image_dtype": str(image.grad.dtype),
        "grad_scale": float(scale.grad),
        "grad_bias": None if bias.grad is None else float(bias.grad),
    }


def _grad_on_some_ranks_only(job: dict[str, Any], group: Any, rank: int) -> dict[str, Any]:
    """Rank 0 evaluates without autograd while the others train: no deadlock, same values."""
    image = torch.tensor(job["image_shards"][rank], requires_grad=rank > 0)
    text = torch.tensor(job["text_shards"][rank], requires_grad=rank > 0)
    with torch.set_grad_enabled(rank > 0):
        loss = distributed_sigmoid_loss(
            image, text, scale=job["scale"], bias=job["bias"], group=group, strategy=job["strategy"]
        )
    if rank == 0:
        return {"loss": float(loss), "grad_text": None}
    loss.backward()
    assert text.grad is not None
    return {"loss": float(loss.detach()), "grad_text": text.grad.double().numpy()}


def _memory(job: dict[str, Any], group: Any, rank: int) -> dict[str, Any]:
    """Saved-for-backward bytes and peak live tensor bytes of one forward + backward."""
    generator = torch.Generator().manual_seed(1000 + rank)
    batch, dim = job["batch"], job["dim"]
    saved_bytes = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved_bytes
        saved_bytes += tensor.numel() * tensor.element_size()
        return tensor

    tracker = LiveTensorBytes()
    with tracker, torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        # Created under the tracker: the own embeddings count too.
        image = torch.randn(batch, dim, generator=generator).requires_grad_(True)
        text = torch.randn(batch, dim, generator=generator).requires_grad_(True)
        groups: dict[str, Any] = {}
        if job.get("groups"):  # 4 captions per id, the ids of a rank's images on other ranks
            ids = torch.arange(batch) + rank * batch
            groups = {
                "image_groups": ids,
                "text_groups": (ids + batch) % (batch * job["world_size"]) // 4 * 4,
                "positive_weighting": "inverse_count",
            }
        loss = distributed_sigmoid_loss(
            image,
            text,
            scale=10.0,
            bias=-10.0,
            group=group,
            strategy=job["strategy"],
            block_size=job["block_size"],
            **groups,
        )
        loss.backward()
        del loss
    return {"saved_bytes": saved_bytes, "peak_bytes": tracker.peak}


def _mismatched_inputs(job: dict[str, Any], group: Any, rank: int) -> dict[str, Any]:
    """Every rank calls the loss with inputs that disagree across ranks; return its error."""
    batch, dim, dtype = 3, 4, torch.float32
    options: dict[str, Any] = {}
    if job["differs"] == "dim":
        dim = 4 + rank
    elif job["differs"] == "dtype":
        dtype = torch.float64 if rank == 1 else torch.float32
    elif job["differs"] == "groups":  # only rank 0 passes group ids
        if rank == 0:
            options = {"image_groups": torch.arange(3), "text_groups": torch.arange(3)}
    elif job["differs"] == "positive_weighting":
        weighting = "inverse_count" if rank == 2 else "uniform"
        ids = torch.arange(3)
        options = {"image_groups": ids, "text_groups": ids, "positive_weighting": weighting}
    else:  # the batch
        batch = 3 + rank
    image = torch.randn(batch, dim, dtype=dtype)
    loss = distributed_softmax_loss if job.get("loss") == "softmax" else distributed_sigmoid_loss
    try:
        loss(image, image, scale=10.0, bias=-10.0, group=group, **options)
    except ValueError as error:
        return {"error": str(error)}
    return {"error": None}


def _update_center(job: dict[str, Any], group: Any, rank: int) -> dict[str, Any]:
    """The teacher centre after one EMA step on this rank's shard of teacher logits."""
    center = torch.tensor(job["center"], dtype=torch.float32)
    teacher = torch.tensor(job["teacher_shards"][rank], dtype=torch.float32)
    updated = update_center(center, teacher, momentum=job["momentum"], group=group)
    return {"center": updated.double().numpy()}


JOBS = {
    "loss_and_grads": _loss_and_grads,
    "grad_on_some_ranks_only": _grad_on_some_ranks_only,
    "memory": _memory,
    "mismatched_inputs": _mismatched_inputs,
    "update_center": _update_center,
}


def main(rank: int, world_size: int, parent_port: int, authkey: bytes) -> None:
    connection = Client(("127.0.0.1", parent_port), authkey=authkey)
    connection.send(("hello", rank))
    if rank == 0:
        store = dist.TCPStore("127.0.0.1", 0, world_size, is_master=True, wait_for_workers=False)
        connection.send(("store_port", store.port))
    else:
        store = dist.TCPStore("127.0.0.1", connection.recv(), world_size, is_master=False)
    dist.init_process_group(
        "gloo",
        store=store,
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=60),
    )
    # new_group is collective: every rank creates every group, in the same order.
    groups: dict[int, Any] = {
        size: dist.new_group(list(range(size))) for size in range(1, world_size)
    }
    groups[world_size] = None  # the default group (the world)
    connection.send(("ready", rank))
    while True:
        job = connection.recv()
        if job is None:
            break
        try:
            result = JOBS[job["kind"]](job, groups[job["world_size"]], rank)
            connection.send(("ok", result))
        except Exception:
            connection.send(("error", traceback.format_exc()))
    connection.close()
    # Every rank got the stop message; skip the slow interpreter and process-group teardown.
    os._exit(0)


if __name__ == "__main__":
    warnings.simplefilter("error")  # as in the test process: a deprecation fails the job
    torch.set_num_threads(1)
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), bytes.fromhex(sys.argv[4]))
