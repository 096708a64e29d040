"""The sigmoid loss over a sharded batch in JAX: a ``lax.ppermute`` ring inside ``shard_map``.

Each device holds ``n`` rows of the global batch. The forward pass walks the text shards around
the mesh axis and computes, with the fused block primitive, the loss *and* the four gradients of
every ``[n, n]`` block; the gradient of each visiting text shard travels on with it and arrives
back at its owner after the last hop. A ``jax.custom_vjp`` stores only the finished ``[n, D]``
gradients (float32, float64 for float64 inputs), so nothing of size ``n x N`` or ``N x D`` is kept for the backward pass, and
the backward pass communicates nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from siglip_loss._validation import PositiveWeighting
from siglip_loss.jax._common import Scalar
from siglip_loss.jax._common import check_inputs
from siglip_loss.jax._common import scale_and_bias_in_compute_dtype
from siglip_loss.jax._compat import shard_map
from siglip_loss.jax._compat import varying_axes
from siglip_loss.jax._fused import sigmoid_block_sums
from siglip_loss.jax._positives import BlockGroups
from siglip_loss.jax._positives import as_group_ids
from siglip_loss.jax._positives import half_inverse_counts


class _Ids(NamedTuple):
    """This device's group ids (and ``inverse_count`` weights), or nothing without groups."""

    image: jax.Array  # [n]
    text: jax.Array  # [m]
    image_weights: jax.Array | None  # [n]
    text_weights: jax.Array | None  # [m]


def _device_ids(
    image_groups: jax.Array,
    text_groups: jax.Array,
    *,
    axis_name: Any,
    positive_weighting: str,
    dtype: Any,
) -> _Ids:
    """This device's ids, and its rows' weights counted over the whole axis (an all-gather of
    the ids: ``n + m`` integers per device)."""
    if positive_weighting == "uniform":
        return _Ids(image_groups, text_groups, None, None)
    every_image = lax.all_gather(image_groups, axis_name, tiled=True)
    every_text = lax.all_gather(text_groups, axis_name, tiled=True)
    return _Ids(
        image_groups,
        text_groups,
        half_inverse_counts(image_groups, every_text, dtype),
        half_inverse_counts(text_groups, every_image, dtype),
    )


def _ring_sums(
    image: jax.Array,
    text: jax.Array,
    scale: jax.Array,
    bias: jax.Array,
    *,
    axis_name: Any,
    block_size: int | None,
    compute_grads: bool,
    ids: _Ids | None = None,
) -> tuple[jax.Array, jax.Array | None, jax.Array | None, jax.Array | None, jax.Array | None]:
    """This device's loss sum and (optionally) gradient sums, walking the text shards to the right.

    At step ``s`` device ``r`` holds the text shard of device ``r - s``. The next shard is sent
    before the current one is used (no data dependence, so XLA overlaps the transfer with the
    block), and the partial gradient of the current shard (the contributions of devices
    ``r - s .. r - 1``) arrives while the block is computed. After the last step every finished
    gradient is one hop before its owner; a last ``ppermute`` delivers it. With group ids, each
    text shard's ids (and weights) travel with it, so a positive is found on whichever device
    its caption is.

    Returns:
        ``(loss_sum, grad_image, grad_text, grad_scale, grad_bias)``: sums (not divided by the
        batch) of this device's rows against every text row; ``grad_text`` is the gradient of
        the sum over *all* devices' losses with respect to this device's text rows. Gradients are
        None when ``compute_grads`` is False.
    """
    world = lax.axis_size(axis_name)
    to_the_right = [(source, (source + 1) % world) for source in range(world)]

    # What travels: the text shard, with its ids and weights when there are groups.
    Shard = tuple[jax.Array, jax.Array | None, jax.Array | None]

    def block(shard: Shard, positive_offset: int | None) -> Any:
        text_block, text_ids, text_weights = shard
        groups = None
        if ids is not None and text_ids is not None:
            groups = BlockGroups(ids.image, text_ids, ids.image_weights, text_weights)
        return sigmoid_block_sums(
            image,
            text_block,
            scale=scale,
            bias=bias,
            positive_offset=positive_offset,
            block_size=block_size,
            compute_grads=compute_grads,
            groups=groups,
        )

    def send_right(value: Any) -> Any:
        return jax.tree_util.tree_map(
            lambda leaf: lax.ppermute(leaf, axis_name, perm=to_the_right), value
        )

    own_shard: Shard = (text, None, None) if ids is None else (text, ids.text, ids.text_weights)
    own = block(own_shard, 0)
    if world == 1:
        return own.loss_sum, own.grad_image, own.grad_text, own.grad_scale, own.grad_bias

    if not compute_grads:

        def loss_step(_: Any, carry: tuple[Shard, jax.Array]) -> tuple[Shard, jax.Array]:
            text_current, loss_sum = carry
            text_next = send_right(text_current)
            return text_next, loss_sum + block(text_current, None).loss_sum

        # Steps 1 .. W-2 inside the loop; step W-1 needs no onward send.
        text_current, loss_sum = lax.fori_loop(
            1, world - 1, loss_step, (send_right(own_shard), own.loss_sum)
        )
        return loss_sum + block(text_current, None).loss_sum, None, None, None, None

    Carry = tuple[Shard, jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]

    def accumulate(carry: Carry, text_current: Shard, incoming: jax.Array) -> Carry:
        _, _, loss_sum, grad_image, grad_scale, grad_bias = carry
        sums = block(text_current, None)
        return (
            text_current,
            incoming + sums.grad_text,
            loss_sum + sums.loss_sum,
            grad_image + sums.grad_image,
            grad_scale + sums.grad_scale,
            grad_bias + sums.grad_bias,
        )

    def grad_step(_: Any, carry: Carry) -> Carry:
        text_current, finished_grad = carry[0], carry[1]
        text_next = send_right(text_current)
        incoming = send_right(finished_grad)
        updated = accumulate(carry, text_current, incoming)
        return (text_next, *updated[1:])

    initial: Carry = (
        send_right(own_shard),
        own.grad_text,
        own.loss_sum,
        own.grad_image,
        own.grad_scale,
        own.grad_bias,
    )
    carry = lax.fori_loop(1, world - 1, grad_step, initial)
    last = accumulate(carry, carry[0], send_right(carry[1]))
    _, finished_grad, loss_sum, grad_image, grad_scale, grad_bias = last
    return loss_sum, grad_image, send_right(finished_grad), grad_scale, grad_bias


@functools.cache
def _sharded_loss_function(
    axis_name: Any,
    block_size: int | None,
    dtypes: tuple[Any, ...],
    unchecked: bool,
    positive_weighting: str | None = None,
) -> Callable[..., jax.Array]:
    """The custom-vjp loss for one axis, tile size, set of input dtypes and vma mode (cached).

    ``dtypes`` are those of ``(image, text, scale, bias)``; ``scale`` and ``bias`` come already
    cast to the compute dtype, so ``dtypes[2]`` is the dtype of every sum. With a
    ``positive_weighting`` the function takes the two group-id arrays after ``bias`` (they get no
    gradient); None: no groups, the diagonal positives.
    """
    compute = dtypes[2]

    def global_count(image: jax.Array) -> jax.Array:
        return jnp.asarray(image.shape[0] * lax.axis_size(axis_name), compute)

    def ids_of(groups: tuple[jax.Array, ...]) -> _Ids | None:
        if positive_weighting is None:
            return None
        image_groups, text_groups = groups
        return _device_ids(
            image_groups,
            text_groups,
            axis_name=axis_name,
            positive_weighting=positive_weighting,
            dtype=compute,
        )

    @jax.custom_vjp
    def loss(
        image: jax.Array, text: jax.Array, scale: jax.Array, bias: jax.Array, *groups: jax.Array
    ) -> jax.Array:
        loss_sum = _ring_sums(
            image,
            text,
            scale,
            bias,
            axis_name=axis_name,
            block_size=block_size,
            compute_grads=False,
            ids=ids_of(groups),
        )[0]
        total: jax.Array = lax.psum(loss_sum, axis_name)
        return total / global_count(image)

    def forward(
        image: jax.Array, text: jax.Array, scale: jax.Array, bias: jax.Array, *groups: jax.Array
    ) -> tuple[jax.Array, tuple[Any, ...]]:
        loss_sum, grad_image, grad_text, grad_scale, grad_bias = _ring_sums(
            image,
            text,
            scale,
            bias,
            axis_name=axis_name,
            block_size=block_size,
            compute_grads=True,
            ids=ids_of(groups),
        )
        assert grad_image is not None
        assert grad_text is not None
        assert grad_scale is not None
        assert grad_bias is not None
        count = global_count(image)
        local = jnp.stack([loss_sum, grad_scale, grad_bias]) / count
        total = lax.psum(local, axis_name)
        # scale and bias are replicated. With check_vma, their cotangent must be the full,
        # replicated gradient; without it, shard_map sums the devices' cotangents itself.
        shared = local if unchecked else total
        residuals = (grad_image / count, grad_text / count, shared[1], shared[2])
        return total[0], (residuals, len(groups))

    def backward(saved: tuple[Any, ...], cotangent: jax.Array) -> tuple[jax.Array | None, ...]:
        residuals, group_arrays = saved
        if unchecked:
            # shard_map(check_vma=False) splits the cotangent of a replicated output over the
            # devices; sum it back, as the transpose of psum does there.
            cotangent = lax.psum(cotangent, axis_name)
        gradients = tuple(
            (gradient * cotangent).astype(dtype) for gradient, dtype in zip(residuals, dtypes)
        )
        return (*gradients, *(None,) * group_arrays)  # the group ids get no gradient

    loss.defvjp(forward, backward)
    return loss


def sharded_sigmoid_loss(
    image_emb: jax.Array,
    text_emb: jax.Array,
    *,
    scale: Scalar,
    bias: Scalar,
    axis_name: Any,
    image_groups: jax.Array | None = None,
    text_groups: jax.Array | None = None,
    positive_weighting: PositiveWeighting = "uniform",
    block_size: int | None = None,
) -> jax.Array:
    r"""The SigLIP sigmoid loss of a batch sharded over a mesh axis; call it inside ``shard_map``.

    Each device passes its ``[n, dim]`` shard (the global batch is the concatenation over the
    axis, ``N = n W``); every device gets the same global loss

    .. math::
        L = \frac{1}{N} \sum_{i=1}^{N} \sum_{j=1}^{N}
        \operatorname{softplus}\big(-z_{ij} (t \langle x_i, y_j \rangle + b)\big)

    exactly as :func:`sigmoid_loss` on the gathered batch, so ``shard_map(...,
    out_specs=PartitionSpec())`` can return it and ``jax.grad`` of it gives the exact global
    gradients: the shards' gradients are sharded like the inputs and the gradients of
    ``scale``/``bias`` are already summed over the axis. (The PyTorch
    ``distributed_sigmoid_loss`` returns per-rank shares instead, for DDP's averaging.)

    The text shards travel around the axis with ``lax.ppermute`` (``W - 1`` hops, each overlapped
    with the previous block's compute); the fused block primitive computes the loss and the
    gradients in the forward pass, and a ``custom_vjp`` keeps only the ``[n, dim]`` gradients,
    so the memory per device does not grow with ``W``. Sums and stored gradients are float32
    (float64 for float64 inputs with ``jax_enable_x64``), as in :func:`sigmoid_loss`.

    Several positives per row: with ``image_groups`` and ``text_groups`` (sharded like the
    embeddings), pair ``(i, j)`` of the global batch is a positive iff their ids are equal,
    wherever the two rows live: each text shard's ids travel around the ring with it. The text
    shards may then have another size ``m`` than the image shards (``M = m W`` texts), ``N``
    still counts the images, and ``positive_weighting="inverse_count"`` counts ``k_i``/``k'_j``
    over the whole axis (one all-gather of the ids). The loss equals :func:`sigmoid_loss` with
    the same groups on the gathered batch.

    Args:
        image_emb: ``[n, dim]`` this device's image embeddings (normalise them first).
        text_emb: ``[n, dim]`` this device's text embeddings; row ``i`` pairs with image row ``i``
            (``[m, dim]`` with groups).
        scale: the positive multiplier ``t = exp(log_scale)``; float or 0-d array (replicated).
        bias: the logit bias ``b``; float or 0-d array (replicated).
        axis_name: the ``shard_map`` mesh axis that the batch is sharded over, or a tuple of
            axes (the batch sharded over their product, e.g. ``("data", "fsdp")``).
        image_groups: ``[n]`` integer group ids of this device's images, or None (diagonal).
        text_groups: ``[m]`` integer group ids of this device's texts, or None.
        positive_weighting: ``"uniform"`` or ``"inverse_count"`` (see :func:`sigmoid_loss`).
        block_size: tile edge of the fused block computation (None: the fused default).

    Returns:
        0-d float32 array (float64 for float64 inputs): the global loss, identical on every device
        of the axis.

    Raises:
        ValueError: bad shapes, or a concrete ``scale``/``bias`` that is not finite (and, for
            ``scale``, positive); see :func:`sigmoid_loss`.
        TypeError: an input is not a floating array.
        NameError: ``axis_name`` is not a bound mesh axis (raised by JAX).

    Reference: Zhai et al., arXiv:2303.15343, section 3.3 (the ring).

    Examples:
        On however many devices JAX sees, the loss equals :func:`sigmoid_loss` of the whole batch.

        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jax.sharding import NamedSharding, PartitionSpec
        >>> from siglip_loss.jax import l2_normalize, sharded_sigmoid_loss, sigmoid_loss
        >>> mesh = jax.make_mesh((jax.device_count(),), ("batch",))
        >>> rows, replicated = PartitionSpec("batch"), PartitionSpec()
        >>> def per_device(image, text, scale, bias):
        ...     return sharded_sigmoid_loss(image, text, scale=scale, bias=bias, axis_name="batch")
        >>> loss_fn = jax.shard_map(
        ...     per_device,
        ...     mesh=mesh,
        ...     in_specs=(rows, rows, replicated, replicated),
        ...     out_specs=replicated,
        ... )
        >>> batch = 4 * jax.device_count()
        >>> image = l2_normalize(jax.random.normal(jax.random.key(0), (batch, 8)))
        >>> text = l2_normalize(jax.random.normal(jax.random.key(1), (batch, 8)))
        >>> shards = [jax.device_put(x, NamedSharding(mesh, rows)) for x in (image, text)]
        >>> loss = loss_fn(*shards, jnp.float32(10.0), jnp.float32(-10.0))
        >>> bool(jnp.allclose(loss, sigmoid_loss(image, text, scale=10.0, bias=-10.0), rtol=1e-5))
        True
    """
    check_inputs(
        image_emb,
        text_emb,
        scale=scale,
        bias=bias,
        image_groups=image_groups,
        text_groups=text_groups,
        positive_weighting=positive_weighting,
    )
    scale_array, bias_array = scale_and_bias_in_compute_dtype(
        image_emb, text_emb, scale=scale, bias=bias
    )
    inputs = (image_emb, text_emb, scale_array, bias_array)
    dtypes = tuple(jnp.dtype(value.dtype) for value in inputs)
    # Under shard_map(check_vma=True) the sharded inputs vary over the axis; with
    # check_vma=False nothing is tracked and cotangents follow the unchecked rules.
    axis_names = axis_name if isinstance(axis_name, tuple) else (axis_name,)
    unchecked = not set(axis_names) <= varying_axes(jax.typeof(image_emb))
    weighting = None
    groups: tuple[jax.Array, ...] = ()
    if image_groups is not None and text_groups is not None:
        weighting = positive_weighting
        groups = (as_group_ids(image_groups), as_group_ids(text_groups))
    function = _sharded_loss_function(axis_name, block_size, dtypes, unchecked, weighting)
    return function(*inputs, *groups)


def _placed(value: Any, sharding: NamedSharding) -> Any:
    """Concrete arrays are moved to ``sharding``; traced ones are left to ``shard_map``."""
    if isinstance(value, jax.core.Tracer):
        explicit = getattr(jax.sharding.AxisType, "Explicit", None)
        axis_types = dict(zip(sharding.mesh.axis_names, getattr(sharding.mesh, "axis_types", ())))
        if explicit is not None and explicit in axis_types.values():
            # Explicit axes: the sharding is part of the type; shard_map needs it to match.
            return jax.reshard(value, sharding)
        return value
    if isinstance(value, jax.Array) and value.sharding == sharding:
        return value
    return jax.device_put(value, sharding)


def sharded_sigmoid_loss_on_mesh(
    image_emb: jax.Array,
    text_emb: jax.Array,
    *,
    scale: Scalar,
    bias: Scalar,
    mesh: Mesh,
    axis_name: str,
    image_groups: jax.Array | None = None,
    text_groups: jax.Array | None = None,
    positive_weighting: PositiveWeighting = "uniform",
    block_size: int | None = None,
) -> jax.Array:
    r"""The sigmoid loss of a global batch whose rows are sharded over ``mesh`` axis ``axis_name``.

    A convenience wrapper: it runs :func:`sharded_sigmoid_loss` under ``jax.shard_map`` with the
    rows split over ``axis_name`` (and replicated over the other mesh axes), so that each device
    only ever holds its ``[N / W, dim]`` shard and one visiting shard. Differentiable, works under
    ``jax.jit``, on meshes with ``Explicit`` (the ``jax.make_mesh`` default) or ``Auto`` axes.
    Arrays already sharded as ``NamedSharding(mesh, PartitionSpec(axis_name))`` are used in
    place; others are resharded so (``device_put`` outside ``jit``, ``jax.reshard`` or
    ``shard_map``'s own resharding inside).

    Args:
        image_emb: ``[batch, dim]`` global image embeddings; batch divisible by the axis size.
        text_emb: ``[batch, dim]`` global text embeddings.
        scale: the positive multiplier ``t``; float or 0-d array.
        bias: the logit bias ``b``; float or 0-d array.
        mesh: the device mesh.
        axis_name: the mesh axis to shard the batch over.
        image_groups: ``[batch]`` integer group ids of the images (sharded like them), or None.
        text_groups: ``[text_batch]`` integer group ids of the texts; with groups the text batch
            may differ from the image batch (both divisible by the axis size).
        positive_weighting: ``"uniform"`` or ``"inverse_count"`` (see :func:`sigmoid_loss`).
        block_size: tile edge of the fused block computation (None: the fused default).

    Returns:
        0-d float32 array (float64 for float64 inputs): the loss ``L``, equal to
        :func:`sigmoid_loss` on the same arrays.

    Raises:
        ValueError: ``axis_name`` is not an axis of ``mesh`` or the batch is not divisible by
            its size; bad shapes or ``scale``.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from siglip_loss.jax import l2_normalize, sharded_sigmoid_loss_on_mesh, sigmoid_loss
        >>> mesh = jax.make_mesh((jax.device_count(),), ("batch",))
        >>> batch = 4 * jax.device_count()
        >>> image = l2_normalize(jax.random.normal(jax.random.key(0), (batch, 8)))
        >>> text = l2_normalize(jax.random.normal(jax.random.key(1), (batch, 8)))
        >>> loss = sharded_sigmoid_loss_on_mesh(
        ...     image, text, scale=10.0, bias=-10.0, mesh=mesh, axis_name="batch"
        ... )
        >>> bool(jnp.allclose(loss, sigmoid_loss(image, text, scale=10.0, bias=-10.0), rtol=1e-5))
        True
    """
    batch, _ = check_inputs(
        image_emb,
        text_emb,
        scale=scale,
        bias=bias,
        image_groups=image_groups,
        text_groups=text_groups,
        positive_weighting=positive_weighting,
    )
    if axis_name not in mesh.axis_names:
        raise ValueError(
            f"axis_name: expected one of the mesh axes {tuple(mesh.axis_names)}, got {axis_name!r}"
        )
    devices = mesh.shape[axis_name]
    for name, rows_count in (("image_emb", batch), ("text_emb", int(text_emb.shape[0]))):
        if rows_count % devices:
            raise ValueError(
                f"{name}: expected a batch divisible by the {devices} devices of mesh axis "
                f"{axis_name!r}, got batch {rows_count}"
            )
    rows = PartitionSpec(axis_name)
    replicated = PartitionSpec()
    arrays = [image_emb, text_emb]
    if image_groups is not None and text_groups is not None:
        arrays += [as_group_ids(image_groups), as_group_ids(text_groups)]
    arrays = [_placed(value, NamedSharding(mesh, rows)) for value in arrays]

    def loss_of_shards(
        image_shard: jax.Array,
        text_shard: jax.Array,
        scale: jax.Array,
        bias: jax.Array,
        *group_shards: jax.Array,
    ) -> jax.Array:
        image_ids, text_ids = group_shards if group_shards else (None, None)
        return sharded_sigmoid_loss(
            image_shard,
            text_shard,
            scale=scale,
            bias=bias,
            axis_name=axis_name,
            image_groups=image_ids,
            text_groups=text_ids,
            positive_weighting=positive_weighting,
            block_size=block_size,
        )

    loss_on_shards = shard_map(
        loss_of_shards,
        mesh=mesh,
        in_specs=(rows, rows, replicated, replicated, *(rows,) * (len(arrays) - 2)),
        out_specs=replicated,
    )
    scale_array, bias_array = scale_and_bias_in_compute_dtype(
        image_emb, text_emb, scale=scale, bias=bias
    )
    return loss_on_shards(arrays[0], arrays[1], scale_array, bias_array, *arrays[2:])
