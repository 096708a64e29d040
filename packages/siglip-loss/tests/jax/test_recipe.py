"""JAX-only properties of the recipe losses: the vocabulary-chunked cross-entropy holds no
[batch, length, vocab] array in its forward or backward program, and update_center inside
shard_map averages the whole batch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType
from jax.sharding import PartitionSpec

import siglip_loss.numpy as oracle
from siglip_loss.jax import chunked_token_cross_entropy
from siglip_loss.jax import token_cross_entropy
from siglip_loss.jax import update_center


def array_sizes(jaxpr: Any) -> Iterator[int]:
    """The element count of every value a program (and the programs nested in it) creates."""
    for equation in jaxpr.eqns:
        for variable in equation.outvars:
            yield int(np.prod(getattr(variable.aval, "shape", ())))
        for parameter in equation.params.values():
            nested = getattr(parameter, "jaxpr", parameter)
            if hasattr(nested, "eqns"):
                yield from array_sizes(nested)


def test_chunked_token_cross_entropy_never_holds_batch_length_vocab_logits() -> None:
    batch, length, dim, vocab, chunk_size = 2, 8, 4, 1000, 128
    # Abstract inputs: only the programs are inspected, nothing is computed.
    hidden = jax.ShapeDtypeStruct((batch, length, dim), jnp.bfloat16)
    weight = jax.ShapeDtypeStruct((vocab, dim), jnp.bfloat16)
    bias = jax.ShapeDtypeStruct((vocab,), jnp.bfloat16)
    targets = jnp.asarray(np.random.default_rng(0).integers(0, vocab, (batch, length)), jnp.int32)
    weights = jnp.asarray(np.ones((batch, length), np.float32))

    def chunked(h: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
        return chunked_token_cross_entropy(
            h, w, targets, weights=weights, vocab_bias=b, chunk_size=chunk_size
        )

    program = jax.make_jaxpr(jax.value_and_grad(chunked, argnums=(0, 1, 2)))(hidden, weight, bias)
    largest = max(array_sizes(program.jaxpr))
    # The weight gradient itself is [vocab, dim]; nothing logits-sized besides.
    assert largest <= max(batch * length * chunk_size, vocab * dim)
    assert batch * length * vocab > 2 * largest

    def dense(h: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
        return token_cross_entropy(h @ w.T + b, targets, weights=weights)

    dense_program = jax.make_jaxpr(jax.value_and_grad(dense, argnums=(0, 1, 2)))(
        hidden, weight, bias
    )
    assert max(array_sizes(dense_program.jaxpr)) >= batch * length * vocab  # the probe sees one
    # Values are compared with the oracle in tests/backends; here only the gradient dtypes.
    _, grads = jax.eval_shape(jax.value_and_grad(chunked, argnums=(0, 1, 2)), hidden, weight, bias)
    assert [grad.dtype for grad in grads] == [jnp.bfloat16] * 3


def test_update_center_in_shard_map_averages_every_device_s_rows() -> None:
    mesh = jax.make_mesh((4,), ("batch",), devices=jax.devices()[:4], axis_types=(AxisType.Auto,))
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(8, 3, 5)).astype(np.float32)
    center = rng.normal(size=5).astype(np.float32)

    def per_device(center: jax.Array, teacher: jax.Array) -> jax.Array:
        return update_center(center, teacher, momentum=0.7, axis_name="batch")

    updated = jax.jit(
        jax.shard_map(
            per_device,
            mesh=mesh,
            in_specs=(PartitionSpec(), PartitionSpec("batch")),
            out_specs=PartitionSpec(),
        )
    )(center, teacher)
    want = oracle.update_center(center, teacher, momentum=0.7)
    np.testing.assert_allclose(np.asarray(updated), want, rtol=1e-6, atol=1e-7)
    # Under jit on the global array no axis name is needed.
    np.testing.assert_allclose(
        np.asarray(jax.jit(lambda c, t: update_center(c, t, momentum=0.7))(center, teacher)),
        want,
        rtol=1e-6,
        atol=1e-7,
    )
