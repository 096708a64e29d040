"""The device mesh (``data`` x ``fsdp``) and the rule that shards parameters over ``fsdp``.

The batch is split over every device (both axes); a parameter is split along one dimension over
the ``fsdp`` axis when it is big enough, and replicated otherwise. Activations follow the batch;
XLA gathers a sharded parameter where a layer needs it whole (ZeRO-3 / FSDP).
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)

# big_vision's threshold: smaller arrays cost more in gathers than they save in memory.
DEFAULT_MIN_SHARD_BYTES = 4 * 2**20


def make_mesh(*, fsdp: int = 1, devices: Sequence[Any] | None = None) -> Mesh:
    """A ``(data, fsdp)`` mesh over ``devices`` (default: every device of every process).

    The data axis takes ``len(devices) // fsdp`` devices; the batch is split over both axes, so
    every device holds ``batch / len(devices)`` rows whatever ``fsdp`` is.

    Args:
        fsdp: devices along the ``fsdp`` axis (parameters and optimizer state are split over
            it); 1 replicates them (plain data parallelism).
        devices: the devices to use (default ``jax.devices()``).

    Returns:
        A ``jax.sharding.Mesh`` with axes ``("data", "fsdp")`` (``Auto`` axis types).

    Raises:
        ValueError: ``fsdp`` is below 1, larger than the devices, or does not divide them.

    Examples:
        >>> import jax
        >>> from siglip_train.jax import make_mesh
        >>> mesh = make_mesh(fsdp=1, devices=jax.devices()[:1])
        >>> dict(mesh.shape)
        {'data': 1, 'fsdp': 1}
    """
    chosen = list(jax.devices() if devices is None else devices)
    if fsdp < 1:
        raise ValueError(f"fsdp: expected a mesh axis size >= 1, got {fsdp}")
    if fsdp > len(chosen):
        raise ValueError(
            f"fsdp: expected at most the {len(chosen)} available device(s), got a mesh axis "
            f"of {fsdp} (set mesh.fsdp <= {len(chosen)})"
        )
    if len(chosen) % fsdp:
        raise ValueError(f"fsdp: expected a divisor of the {len(chosen)} device(s), got {fsdp}")
    grid = np.asarray(chosen, dtype=object).reshape(len(chosen) // fsdp, fsdp)
    auto = (jax.sharding.AxisType.Auto, jax.sharding.AxisType.Auto)
    return Mesh(grid, BATCH_AXES, axis_types=auto)


def fsdp_partition_spec(
    shape: Sequence[int], *, itemsize: int, fsdp_size: int, min_shard_bytes: int
) -> PartitionSpec:
    """Where an array of ``shape`` is split over the ``fsdp`` axis: the sharding rule.

    The rule (big_vision's ``fsdp`` strategy): an array of at least ``min_shard_bytes`` is split
    along its largest dimension divisible by ``fsdp_size`` (the last such on a tie); a smaller
    array, or one with no divisible dimension, is replicated. With ``fsdp_size == 1`` everything
    is replicated.

    Args:
        shape: the array's shape.
        itemsize: bytes per element.
        fsdp_size: devices along the ``fsdp`` axis.
        min_shard_bytes: arrays below this many bytes stay replicated.

    Returns:
        ``PartitionSpec()`` (replicated) or one with ``"fsdp"`` at the chosen dimension.

    Examples:
        >>> from siglip_train.jax import fsdp_partition_spec
        >>> tuple(fsdp_partition_spec((768, 3072), itemsize=4, fsdp_size=4, min_shard_bytes=0))
        (None, 'fsdp')
        >>> tuple(fsdp_partition_spec((768,), itemsize=4, fsdp_size=4, min_shard_bytes=2**20))
        ()
    """
    size_bytes = int(np.prod(shape, dtype=np.int64)) * itemsize
    if fsdp_size == 1 or size_bytes < min_shard_bytes:
        return PartitionSpec()
    candidates = [(length, axis) for axis, length in enumerate(shape) if length % fsdp_size == 0]
    if not candidates:
        return PartitionSpec()
    _, axis = max(candidates)
    spec: list[str | None] = [None] * len(shape)
    spec[axis] = FSDP_AXIS
    return PartitionSpec(*spec)


def parameter_shardings(
    params: Mapping[str, Any], mesh: Mesh, *, min_shard_bytes: int = DEFAULT_MIN_SHARD_BYTES
) -> dict[str, NamedSharding]:
    """The :func:`fsdp_partition_spec` sharding of every parameter of a flat ``{name: array}``.

    Args:
        params: parameter name -> array (or ``jax.ShapeDtypeStruct``).
        mesh: a :func:`make_mesh` mesh.
        min_shard_bytes: see :func:`fsdp_partition_spec`.

    Returns:
        name -> ``NamedSharding``.
    """
    fsdp_size = int(mesh.shape[FSDP_AXIS])
    return {
        name: NamedSharding(
            mesh,
            fsdp_partition_spec(
                value.shape,
                itemsize=np.dtype(value.dtype).itemsize,
                fsdp_size=fsdp_size,
                min_shard_bytes=min_shard_bytes,
            ),
        )
        for name, value in params.items()
    }


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Rows split over every device of ``mesh`` (both axes), other dimensions whole."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    """The same value on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())
