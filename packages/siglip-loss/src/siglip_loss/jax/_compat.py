"""Shims over JAX versions: ``shard_map``'s location and the varying-mesh-axis types.

The pinned JAX has them all; the shims keep the declared floor (``jax>=0.4.35``) importable.
"""

from __future__ import annotations

from typing import Any

import jax
from jax import lax

try:
    shard_map = jax.shard_map
except AttributeError:  # jax < 0.7: the experimental location
    from jax.experimental.shard_map import shard_map as shard_map  # type: ignore[no-redef,assignment]


def varying_axes(aval: Any) -> set[Any]:
    """The ``shard_map`` mesh axes a value's abstract type says it varies over."""
    manual = getattr(aval, "manual_axis_type", None)  # JAX >= 0.10
    if manual is not None:
        return set(manual.varying)
    return set(getattr(aval, "vma", ()))  # JAX 0.6 - 0.9


def varying_like(value: jax.Array, *references: Any) -> jax.Array:
    """``value`` cast to vary over every ``shard_map`` axis any of ``references`` varies over."""
    typeof = getattr(jax, "typeof", None)
    pcast = getattr(lax, "pcast", None)
    if typeof is None or pcast is None:  # older JAX: no varying-axis types to match
        return value
    axes: set[Any] = set()
    for reference in references:
        if reference is not None:
            axes |= varying_axes(typeof(reference))
    missing = tuple(sorted(axes - varying_axes(typeof(value)), key=str))
    return pcast(value, missing, to="varying") if missing else value
