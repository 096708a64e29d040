"""sharded_sigmoid_loss over 1-8 (fake CPU) devices equals the single-device float64 oracle.

The 8 CPU devices come from tests/conftest.py (``jax_num_cpu_devices``, set for ``--backend jax``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from siglip_loss.jax import sharded_sigmoid_loss
from siglip_loss.jax import sharded_sigmoid_loss_on_mesh
from siglip_loss.jax import sigmoid_loss
from siglip_loss.numpy import sigmoid_loss_and_grads


def test_the_session_has_8_cpu_devices() -> None:
    assert jax.device_count() == 8, jax.devices()


def mesh_of(size: int, axis_type: AxisType = AxisType.Explicit) -> jax.sharding.Mesh:
    return jax.make_mesh((size,), ("batch",), devices=jax.devices()[:size], axis_types=(axis_type,))


def normalized_rows(rng: np.random.Generator, batch: int, dim: int) -> np.ndarray:
    rows = rng.standard_normal((batch, dim))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def loss_and_grads_on_mesh(
    mesh: jax.sharding.Mesh,
    image: np.ndarray,
    text: np.ndarray,
    scale: float,
    bias: float,
    dtype: jnp.dtype = jnp.float32,
    **kw,
):
    def loss(image, text, scale, bias):
        return sharded_sigmoid_loss_on_mesh(
            image, text, scale=scale, bias=bias, mesh=mesh, axis_name="batch", **kw
        )

    function = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))
    scalars = jnp.asarray(scale, dtype), jnp.asarray(bias, dtype)
    return function(jnp.asarray(image), jnp.asarray(text), *scalars)


def assert_matches_oracle(value, grads, image, text, scale, bias, *, rtol=2e-5, atol=2e-6):
    oracle = sigmoid_loss_and_grads(image, text, scale=scale, bias=bias)
    np.testing.assert_allclose(float(value), oracle.loss, rtol=rtol, atol=atol)
    grad_image, grad_text, grad_scale, grad_bias = (np.asarray(g, np.float64) for g in grads)
    np.testing.assert_allclose(grad_image, oracle.grad_image_emb, rtol=rtol, atol=atol)
    np.testing.assert_allclose(grad_text, oracle.grad_text_emb, rtol=rtol, atol=atol)
    np.testing.assert_allclose(grad_scale, oracle.grad_scale, rtol=rtol, atol=atol)
    np.testing.assert_allclose(grad_bias, oracle.grad_bias, rtol=rtol, atol=atol)


@pytest.mark.parametrize(
    ("mesh_size", "axis_type"),
    [
        (1, AxisType.Explicit),
        (2, AxisType.Explicit),
        (4, AxisType.Explicit),
        (8, AxisType.Explicit),
        (8, AxisType.Auto),
    ],
)
def test_sharded_value_and_grads_equal_single_device_under_jit(
    mesh_size: int, axis_type: AxisType
) -> None:
    rng = np.random.default_rng(mesh_size)
    image, text = normalized_rows(rng, 24, 8), normalized_rows(rng, 24, 8)
    mesh = mesh_of(mesh_size, axis_type)
    presharded = axis_type == AxisType.Auto  # the Explicit case reshards plain arrays itself
    if presharded:
        sharding = NamedSharding(mesh, PartitionSpec("batch"))
        image, text = jax.device_put(image, sharding), jax.device_put(text, sharding)
    # block_size 2 makes the local block several tiles (fori_loop inside the ring).
    value, grads = loss_and_grads_on_mesh(mesh, image, text, 10.0, -3.0, block_size=2)
    image, text = np.asarray(image), np.asarray(text)
    assert_matches_oracle(value, grads, image, text, 10.0, -3.0)
    if presharded:  # the gradients come back sharded like the inputs
        assert grads[0].sharding.spec[0] == "batch"
        assert grads[1].sharding.spec[0] == "batch"
    # Without gradients the forward computes the loss only; same value.
    loss_only = jax.jit(
        lambda a, b: sharded_sigmoid_loss_on_mesh(
            a, b, scale=10.0, bias=-3.0, mesh=mesh, axis_name="batch", block_size=2
        )
    )(image, text)
    np.testing.assert_allclose(float(loss_only), float(value), rtol=1e-6)


@pytest.mark.parametrize("check_vma", [True, False])
def test_inside_a_user_shard_map_grad_outside_and_inside_agree(check_vma: bool) -> None:
    rng = np.random.default_rng(0)
    image, text = normalized_rows(rng, 16, 6), normalized_rows(rng, 16, 6)
    mesh = mesh_of(4, AxisType.Auto)
    rows, replicated = PartitionSpec("batch"), PartitionSpec()

    def per_device(image, text, scale, bias):
        return sharded_sigmoid_loss(image, text, scale=scale, bias=bias, axis_name="batch")

    loss = jax.shard_map(
        per_device,
        mesh=mesh,
        in_specs=(rows, rows, replicated, replicated),
        out_specs=replicated,
        check_vma=check_vma,
    )
    value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))(
        image, text, jnp.float32(5.0), jnp.float32(-2.0)
    )
    assert_matches_oracle(value, grads, image, text, 5.0, -2.0)
    if not check_vma:
        # Without vma types JAX cannot tell a replicated loss from a per-device one: a gradient
        # taken per device is then W times too large, for this loss as for any psum-based one.
        return

    # big_vision style: the gradient taken per device inside shard_map. The loss is the global
    # one on every device, so the replicated scale/bias gradients are already complete.
    def grads_per_device(image, text, scale, bias):
        return jax.value_and_grad(per_device, argnums=(0, 1, 2, 3))(image, text, scale, bias)

    inner = jax.shard_map(
        grads_per_device,
        mesh=mesh,
        in_specs=(rows, rows, replicated, replicated),
        out_specs=(replicated, (rows, rows, replicated, replicated)),
        check_vma=check_vma,
    )
    value, grads = jax.jit(inner)(image, text, jnp.float32(5.0), jnp.float32(-2.0))
    assert_matches_oracle(value, grads, image, text, 5.0, -2.0)


@settings(deadline=None, max_examples=5)  # each example compiles: keep CI short
@given(
    mesh_size=st.sampled_from([1, 2, 4, 8]),
    local_batch=st.integers(1, 5),
    dim=st.integers(1, 9),
    scale=st.floats(0.5, 50.0),
    bias=st.floats(-15.0, 5.0),
    block_size=st.one_of(st.none(), st.integers(1, 3)),
    seed=st.integers(0, 2**31 - 1),
)
def test_sharded_equals_single_device_for_any_mesh_batch_scale_and_bias(
    mesh_size: int,
    local_batch: int,
    dim: int,
    scale: float,
    bias: float,
    block_size: int | None,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    batch = local_batch * mesh_size
    image, text = normalized_rows(rng, batch, dim), normalized_rows(rng, batch, dim)
    value, grads = loss_and_grads_on_mesh(
        mesh_of(mesh_size), image, text, scale, bias, block_size=block_size
    )
    assert_matches_oracle(value, grads, image, text, scale, bias, rtol=1e-4, atol=1e-5)


def test_bfloat16_shards_get_bfloat16_gradients() -> None:
    rng = np.random.default_rng(5)
    image = jnp.asarray(normalized_rows(rng, 16, 16), jnp.bfloat16)
    text = jnp.asarray(normalized_rows(rng, 16, 16), jnp.bfloat16)
    value, grads = loss_and_grads_on_mesh(mesh_of(4), image, text, 10.0, -10.0)
    assert value.dtype == jnp.float32
    assert grads[0].dtype == jnp.bfloat16
    assert grads[1].dtype == jnp.bfloat16
    exact_image = np.asarray(image.astype(jnp.float32), np.float64)
    exact_text = np.asarray(text.astype(jnp.float32), np.float64)
    oracle = sigmoid_loss_and_grads(exact_image, exact_text, scale=10.0, bias=-10.0)
    np.testing.assert_allclose(float(value), oracle.loss, rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(grads[1].astype(jnp.float32)), oracle.grad_text_emb, rtol=1e-2, atol=1e-3
    )


@pytest.mark.parametrize("mesh_size", [1, 4])
def test_float64_shards_are_computed_in_float64_to_the_oracles_precision(mesh_size: int) -> None:
    rng = np.random.default_rng(6)
    image, text = rng.standard_normal((12, 5)), rng.standard_normal((12, 5))
    with jax.enable_x64(True):
        value, grads = loss_and_grads_on_mesh(
            mesh_of(mesh_size), image, text, 10.0, -3.0, block_size=2, dtype=jnp.float64
        )
    assert value.dtype == jnp.float64
    assert {grad.dtype for grad in grads} == {jnp.dtype(jnp.float64)}
    assert_matches_oracle(value, grads, image, text, 10.0, -3.0, rtol=1e-12, atol=1e-14)


def test_per_device_memory_does_not_grow_with_the_mesh_at_fixed_local_batch() -> None:
    local_batch, dim = 256, 64
    block = local_batch * dim * 4  # one [n, D] float32 shard

    def temp_bytes(mesh_size: int, loss) -> int:
        mesh = mesh_of(mesh_size, AxisType.Auto)  # GSPMD may then shard the dense logits
        shape = jax.ShapeDtypeStruct(
            (local_batch * mesh_size, dim),
            jnp.float32,
            sharding=NamedSharding(mesh, PartitionSpec("batch")),
        )
        function = jax.jit(jax.value_and_grad(lambda a, b: loss(a, b, mesh), argnums=(0, 1)))
        with jax.set_mesh(mesh):
            analysis = function.lower(shape, shape).compile().memory_analysis()
        return int(analysis.temp_size_in_bytes)

    def ring(a, b, mesh):
        return sharded_sigmoid_loss_on_mesh(
            a, b, scale=10.0, bias=-10.0, mesh=mesh, axis_name="batch", block_size=64
        )

    def dense(a, b, mesh):
        return sigmoid_loss(a, b, scale=10.0, bias=-10.0)

    ring_bytes = {size: temp_bytes(size, ring) for size in (4, 8)}
    dense_bytes = {size: temp_bytes(size, dense) for size in (4, 8)}
    # From 4 devices on the ring program is the same per device: flat in the mesh size.
    assert ring_bytes[4] == ring_bytes[8], ring_bytes
    assert ring_bytes[8] < 10 * block, ring_bytes
    # The dense loss under GSPMD holds [n, N] logits and the gathered tower: it grows.
    assert dense_bytes[8] > 1.5 * dense_bytes[4], dense_bytes


def test_mesh_wrapper_rejects_a_batch_not_divisible_by_the_axis() -> None:
    rows = jnp.ones((6, 3), jnp.float32)
    with pytest.raises(ValueError, match="divisible by the 4 devices"):
        sharded_sigmoid_loss_on_mesh(
            rows, rows, scale=10.0, bias=-10.0, mesh=mesh_of(4), axis_name="batch"
        )


def test_mesh_wrapper_rejects_an_unknown_axis() -> None:
    rows = jnp.ones((4, 3), jnp.float32)
    with pytest.raises(ValueError, match="axis_name: expected one of the mesh axes"):
        sharded_sigmoid_loss_on_mesh(
            rows, rows, scale=10.0, bias=-10.0, mesh=mesh_of(1), axis_name="data"
        )


def test_batch_sharded_over_two_mesh_axes_equals_single_device() -> None:
    rng = np.random.default_rng(11)
    image, text = normalized_rows(rng, 16, 4), normalized_rows(rng, 16, 4)
    mesh = jax.make_mesh((2, 4), ("data", "fsdp"), axis_types=(AxisType.Auto,) * 2)
    rows, replicated = PartitionSpec(("data", "fsdp")), PartitionSpec()

    def per_device(image, text, scale, bias):
        return sharded_sigmoid_loss(
            image, text, scale=scale, bias=bias, axis_name=("data", "fsdp"), block_size=3
        )

    loss = jax.shard_map(
        per_device, mesh=mesh, in_specs=(rows, rows, replicated, replicated), out_specs=replicated
    )
    value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))(
        image, text, jnp.float32(10.0), jnp.float32(-3.0)
    )
    assert_matches_oracle(value, grads, image, text, 10.0, -3.0)


# ------------------------------------------------------------------ several positives per row
def grouped_oracle(image, text, image_groups, text_groups, weighting, scale, bias):
    return sigmoid_loss_and_grads(
        image,
        text,
        scale=scale,
        bias=bias,
        image_groups=image_groups,
        text_groups=text_groups,
        positive_weighting=weighting,
    )


def assert_grouped_matches(value, grads, oracle, *, rtol=2e-5, atol=2e-6):
    np.testing.assert_allclose(float(value), oracle.loss, rtol=rtol, atol=atol)
    expected = (oracle.grad_image_emb, oracle.grad_text_emb, oracle.grad_scale, oracle.grad_bias)
    for got, want in zip(grads, expected, strict=True):
        np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("positive_weighting", ["uniform", "inverse_count"])
@pytest.mark.parametrize("mesh_size", [1, 2, 4, 8])
def test_captions_scattered_across_devices_give_the_single_device_grouped_loss(
    mesh_size: int, positive_weighting: str
) -> None:
    # 3 images per device, 5 captions per image dealt to random devices: most positives of an
    # image live on another device; M = 15 W texts, N = 3 W images.
    rng = np.random.default_rng(mesh_size)
    images, captions = 3 * mesh_size, 15 * mesh_size
    image, text = normalized_rows(rng, images, 6), normalized_rows(rng, captions, 6)
    image_groups = np.arange(images)
    text_groups = rng.permutation(np.repeat(image_groups, 5))
    value, grads = loss_and_grads_on_mesh(
        mesh_of(mesh_size),
        image,
        text,
        10.0,
        -3.0,
        block_size=2,
        image_groups=jnp.asarray(image_groups),
        text_groups=jnp.asarray(text_groups),
        positive_weighting=positive_weighting,
    )
    oracle = grouped_oracle(image, text, image_groups, text_groups, positive_weighting, 10.0, -3.0)
    assert_grouped_matches(value, grads, oracle)


@settings(deadline=None, max_examples=4)  # each example compiles: keep CI short
@given(
    mesh_size=st.sampled_from([1, 2, 4, 8]),
    images_per_device=st.integers(1, 3),
    texts_per_device=st.integers(1, 4),
    ids=st.integers(1, 6),
    positive_weighting=st.sampled_from(["uniform", "inverse_count"]),
    block_size=st.one_of(st.none(), st.integers(1, 3)),
    seed=st.integers(0, 2**31 - 1),
)
def test_grouped_sharded_equals_single_device_for_any_mesh_and_group_pattern(
    mesh_size: int,
    images_per_device: int,
    texts_per_device: int,
    ids: int,
    positive_weighting: str,
    block_size: int | None,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    images, texts = images_per_device * mesh_size, texts_per_device * mesh_size
    image, text = normalized_rows(rng, images, 5), normalized_rows(rng, texts, 5)
    image_groups, text_groups = rng.integers(0, ids, images), rng.integers(0, ids + 1, texts)
    value, grads = loss_and_grads_on_mesh(
        mesh_of(mesh_size),
        image,
        text,
        7.0,
        -2.0,
        block_size=block_size,
        image_groups=jnp.asarray(image_groups),
        text_groups=jnp.asarray(text_groups),
        positive_weighting=positive_weighting,
    )
    oracle = grouped_oracle(image, text, image_groups, text_groups, positive_weighting, 7.0, -2.0)
    assert_grouped_matches(value, grads, oracle, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("check_vma", [True, False])
def test_grouped_loss_inside_a_user_shard_map_equals_the_oracle(check_vma: bool) -> None:
    rng = np.random.default_rng(1)
    image, text = normalized_rows(rng, 8, 4), normalized_rows(rng, 16, 4)
    image_groups = np.arange(8, dtype=np.int32)
    text_groups = np.repeat(image_groups, 2)[::-1].copy()
    mesh = mesh_of(4, AxisType.Auto)
    rows, replicated = PartitionSpec("batch"), PartitionSpec()

    def per_device(image, text, scale, bias, image_ids, text_ids):
        return sharded_sigmoid_loss(
            image,
            text,
            scale=scale,
            bias=bias,
            axis_name="batch",
            image_groups=image_ids,
            text_groups=text_ids,
            positive_weighting="inverse_count",
        )

    loss = jax.shard_map(
        per_device,
        mesh=mesh,
        in_specs=(rows, rows, replicated, replicated, rows, rows),
        out_specs=replicated,
        check_vma=check_vma,
    )
    value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))(
        image, text, jnp.float32(5.0), jnp.float32(-2.0), image_groups, text_groups
    )
    oracle = grouped_oracle(image, text, image_groups, text_groups, "inverse_count", 5.0, -2.0)
    assert_grouped_matches(value, grads, oracle)


def test_grouped_float64_shards_equal_the_oracle_to_its_precision() -> None:
    rng = np.random.default_rng(9)
    image, text = rng.standard_normal((8, 3)), rng.standard_normal((12, 3))
    image_groups, text_groups = np.arange(8), rng.integers(0, 9, 12)
    with jax.enable_x64(True):
        value, grads = loss_and_grads_on_mesh(
            mesh_of(4),
            image,
            text,
            10.0,
            -3.0,
            dtype=jnp.float64,
            block_size=2,
            image_groups=jnp.asarray(image_groups),
            text_groups=jnp.asarray(text_groups),
            positive_weighting="inverse_count",
        )
    oracle = grouped_oracle(image, text, image_groups, text_groups, "inverse_count", 10.0, -3.0)
    assert_grouped_matches(value, grads, oracle, rtol=1e-12, atol=1e-14)


def test_mesh_wrapper_rejects_a_text_batch_not_divisible_by_the_axis() -> None:
    image, text = jnp.ones((4, 3), jnp.float32), jnp.ones((6, 3), jnp.float32)
    with pytest.raises(ValueError, match=r"text_emb: expected a batch divisible by the 4 devices"):
        sharded_sigmoid_loss_on_mesh(
            image,
            text,
            scale=10.0,
            bias=-10.0,
            mesh=mesh_of(4),
            axis_name="batch",
            image_groups=jnp.arange(4),
            text_groups=jnp.arange(6),
        )
