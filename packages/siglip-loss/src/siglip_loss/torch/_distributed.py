"""The sigmoid loss over a ``torch.distributed`` process group, exact and flat in memory.

Each rank holds its own ``[n, D]`` image and text rows. The loss couples every image row with every
text row of every rank, so text blocks must travel. The forward pass walks them past every rank
(a ring of point-to-point sends, or one all-gather) and computes, with the fused block primitive,
the loss *and* all four gradients of each ``[n, m]`` block. The gradient of a remote text block
travels on with the block and arrives back at its owner after the last hop, so nothing of size
``n x N`` and (for the ring) nothing of size ``N x D`` is ever kept: per rank, the ring holds its
own embeddings, one text block in use, one in flight, and five ``[n, D]`` gradient buffers (its
image-gradient sum, the current block's two gradients, the travelling gradient being sent and the
one being received), whatever the number of ranks. Backward multiplies the stored gradients by the
incoming gradient; it communicates nothing. Sums and gradient buffers are in the backend's
compute dtype: float32, float64 for float64 inputs.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from typing import Literal
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F

from siglip_loss._validation import FLOATING_DTYPE_NAMES
from siglip_loss._validation import POSITIVE_WEIGHTINGS
from siglip_loss._validation import PositiveWeighting
from siglip_loss._validation import dtype_name
from siglip_loss.torch._common import Scalar
from siglip_loss.torch._common import check_inputs
from siglip_loss.torch._common import compute_dtype
from siglip_loss.torch._common import scalar_keeping_graph
from siglip_loss.torch._common import scale_and_bias_keeping_graph
from siglip_loss.torch._fused import check_block_size
from siglip_loss.torch._fused import sigmoid_block_sums
from siglip_loss.torch._positives import BlockGroups
from siglip_loss.torch._positives import as_group_ids
from siglip_loss.torch._positives import half_inverse_counts

Strategy = Literal["ring", "all_gather"]
STRATEGIES: tuple[str, ...] = ("ring", "all_gather")


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Everything a forward pass needs to know about the group, agreed on by every rank."""

    group: dist.ProcessGroup
    rank: int  # rank inside the group
    world_size: int
    batch_sizes: tuple[
        int, ...
    ]  # local image batch of every rank of the group, in group-rank order
    text_batch_sizes: tuple[
        int, ...
    ]  # local text batch of every rank (= batch_sizes without groups)
    strategy: str
    block_size: int | None
    compute_grads: bool  # True when any rank needs gradients: the exchange pattern must agree
    dtype: torch.dtype  # of every sum and gradient buffer, the same on every rank
    # With group ids: this rank's image ids and weights, and every rank's text ids and weights.
    image_groups: torch.Tensor | None = None
    image_weights: torch.Tensor | None = None
    text_groups: tuple[torch.Tensor, ...] = ()
    text_weights: tuple[torch.Tensor | None, ...] = ()

    @property
    def normaliser(self) -> float:
        # W / N: the mean over ranks of the per-rank losses is then the global (1/N) loss, also
        # for uneven local batches; for even batches it is 1 / n_local. N counts the images.
        return self.world_size / sum(self.batch_sizes)

    def global_rank(self, group_rank: int) -> int:
        return dist.get_global_rank(self.group, group_rank % self.world_size)

    def groups_of(self, owner: int) -> BlockGroups | None:
        """The group ids and weights of this rank's images against the texts of ``owner``."""
        if self.image_groups is None:
            return None
        return BlockGroups(
            self.image_groups, self.text_groups[owner], self.image_weights, self.text_weights[owner]
        )

    def positive_offset(self, owner: int) -> int | None:
        # Without groups the positives are the diagonal of the own block; with groups they are
        # wherever the ids match, in any rank's block.
        return 0 if owner == self.rank and self.image_groups is None else None


class _Sums:
    """Running sums of one rank's loss and gradients over the text blocks it has seen."""

    def __init__(self, image: torch.Tensor, plan: _Plan) -> None:
        device, dtype = image.device, plan.dtype
        self.loss = torch.zeros((), dtype=dtype, device=device)
        self.grad_image = (
            torch.zeros(image.shape, dtype=dtype, device=device) if plan.compute_grads else None
        )
        self.grad_scale = torch.zeros((), dtype=dtype, device=device)
        self.grad_bias = torch.zeros((), dtype=dtype, device=device)

    def add(self, block: Any) -> None:
        self.loss += block.loss_sum
        if self.grad_image is not None:
            self.grad_image += block.grad_image
            self.grad_scale += block.grad_scale
            self.grad_bias += block.grad_bias


def _ring(
    image: torch.Tensor,
    text: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor,
    plan: _Plan,
) -> tuple[_Sums, torch.Tensor | None]:
    """Pass the text blocks to the right around the ring; their gradients travel with them.

    At step ``s`` rank ``r`` holds the text block of rank ``r - s``. While it computes that block,
    it already sends the block on to ``r + 1`` and receives the next one from ``r - 1``; in the
    same batch of point-to-point operations it sends on the finished gradient of the block of step
    ``s - 1`` and receives the partial gradient of the block of step ``s`` (its contributions
    from ranks ``r - s .. r - 1``), which it completes with its own. After ``W`` steps each
    gradient sits one hop before its owner; a last hop delivers it.
    """
    world, rank, sizes = plan.world_size, plan.rank, plan.text_batch_sizes
    right, left = plan.global_rank(rank + 1), plan.global_rank(rank - 1)
    dim = image.shape[1]
    sums = _Sums(image, plan)
    current_text = text.contiguous()
    current_owner = rank
    finished_grad: torch.Tensor | None = None  # gradient of the block of the previous step
    for step in range(world):
        operations = []
        incoming_grad = None
        if plan.compute_grads and step >= 1:
            assert finished_grad is not None
            incoming_grad = torch.empty(
                (sizes[current_owner], dim), dtype=plan.dtype, device=text.device
            )
            operations.append(dist.P2POp(dist.isend, finished_grad, right, plan.group, tag=1))
            operations.append(dist.P2POp(dist.irecv, incoming_grad, left, plan.group, tag=1))
        next_owner = (rank - step - 1) % world
        next_text = current_text
        if step < world - 1:
            next_text = torch.empty((sizes[next_owner], dim), dtype=text.dtype, device=text.device)
            # Last in the batch: gloo keeps the last received buffer until its next operation,
            # and this one is kept anyway (it is the next step's block).
            operations.append(dist.P2POp(dist.isend, current_text, right, plan.group, tag=0))
            operations.append(dist.P2POp(dist.irecv, next_text, left, plan.group, tag=0))
        requests = dist.batch_isend_irecv(operations) if operations else []
        block = sigmoid_block_sums(
            image,
            current_text,
            scale=scale,
            bias=bias,
            positive_offset=plan.positive_offset(current_owner),
            block_size=plan.block_size,
            compute_grads=plan.compute_grads,
            groups=plan.groups_of(current_owner),
        )
        sums.add(block)
        for request in requests:
            request.wait()
        # Drop every reference to the buffers of this step (requests hold their tensors), so
        # that at most two text blocks and five gradient blocks are alive at any time.
        del requests
        finished_grad = block.grad_text
        del block
        if finished_grad is not None and incoming_grad is not None:
            finished_grad.add_(incoming_grad)
        del incoming_grad
        current_text, current_owner = next_text, next_owner
        del next_text
    if not plan.compute_grads:
        return sums, None
    assert finished_grad is not None
    if world == 1:
        return sums, finished_grad
    own_grad = torch.empty((sizes[rank], dim), dtype=plan.dtype, device=text.device)
    requests = dist.batch_isend_irecv(
        [
            dist.P2POp(dist.isend, finished_grad, right, plan.group, tag=1),
            dist.P2POp(dist.irecv, own_grad, left, plan.group, tag=1),
        ]
    )
    for request in requests:
        request.wait()
    return sums, own_grad


def _all_gather(
    image: torch.Tensor,
    text: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor,
    plan: _Plan,
) -> tuple[_Sums, torch.Tensor | None]:
    """Gather every text block at once, then return each block's gradient with a reduce-scatter.

    One collective instead of ``W - 1`` sequential hops, at the price of holding the gathered
    ``[N, D]`` text tower and its ``[N, D]`` gradient. Uneven batches are padded to the
    largest one for the collectives (gloo needs equal sizes) and sliced back before any compute.
    """
    world, rank, sizes = plan.world_size, plan.rank, plan.text_batch_sizes
    dim = image.shape[1]
    largest = max(sizes)
    sums = _Sums(image, plan)
    padded_text = text.contiguous()
    if text.shape[0] < largest:
        padded_text = torch.cat([padded_text, padded_text.new_zeros(largest - text.shape[0], dim)])
    gathered = [torch.empty_like(padded_text) for _ in range(world)]
    request = dist.all_gather(gathered, padded_text, group=plan.group, async_op=True)
    # The own block needs nothing from the others: compute it while the gather runs.
    grad_blocks: list[torch.Tensor] = []
    own_block = sigmoid_block_sums(
        image,
        text,
        scale=scale,
        bias=bias,
        positive_offset=plan.positive_offset(rank),
        block_size=plan.block_size,
        compute_grads=plan.compute_grads,
        groups=plan.groups_of(rank),
    )
    sums.add(own_block)
    assert request is not None
    request.wait()
    for owner in range(world):
        if owner == rank:
            block = own_block
        else:
            block = sigmoid_block_sums(
                image,
                gathered[owner][: sizes[owner]],
                scale=scale,
                bias=bias,
                positive_offset=plan.positive_offset(owner),
                block_size=plan.block_size,
                compute_grads=plan.compute_grads,
                groups=plan.groups_of(owner),
            )
            sums.add(block)
        if plan.compute_grads:
            assert block.grad_text is not None
            grad_block = block.grad_text
            if grad_block.shape[0] < largest:
                grad_block = torch.cat(
                    [grad_block, grad_block.new_zeros(largest - sizes[owner], dim)]
                )
            grad_blocks.append(grad_block)
    del gathered
    if not plan.compute_grads:
        return sums, None
    own_grad = torch.empty((largest, dim), dtype=plan.dtype, device=text.device)
    dist.reduce_scatter(own_grad, grad_blocks, op=dist.ReduceOp.SUM, group=plan.group)
    return sums, own_grad[: sizes[rank]]


class _DistributedSigmoidLoss(torch.autograd.Function):
    """Forward computes the loss and every gradient; backward only scales them."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        image: torch.Tensor,
        text: torch.Tensor,
        scale: torch.Tensor,
        bias: torch.Tensor,
        plan: _Plan,
    ) -> torch.Tensor:
        walk = _ring if plan.strategy == "ring" else _all_gather
        sums, grad_text = walk(image, text, scale, bias, plan)
        normaliser = plan.normaliser
        ctx.input_dtypes = (image.dtype, text.dtype, scale.dtype, bias.dtype)
        if plan.compute_grads:
            assert sums.grad_image is not None
            assert grad_text is not None
            ctx.save_for_backward(
                sums.grad_image.mul_(normaliser),
                grad_text.mul_(normaliser),
                sums.grad_scale.mul_(normaliser),
                sums.grad_bias.mul_(normaliser),
            )
        return sums.loss * normaliser

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grads = ctx.saved_tensors
        results: list[torch.Tensor | None] = []
        for needed, grad, dtype in zip(ctx.needs_input_grad[:4], grads, ctx.input_dtypes):
            results.append((grad * grad_output).to(dtype) if needed else None)
        return (*results, None)


@dataclasses.dataclass(frozen=True)
class _Ranks:
    """What every rank of the group passed, gathered once per call (one small all-gather)."""

    group: dist.ProcessGroup
    rank: int  # rank inside the group
    world_size: int
    batch_sizes: tuple[int, ...]  # image rows, in group-rank order
    any_needs_grad: bool
    text_batch_sizes: tuple[int, ...] = ()  # text rows, in group-rank order
    grouped: bool = False  # every rank passed group ids


def _process_group(group: dist.ProcessGroup | None, caller: str, single_device: str) -> Any:
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            f"{caller}: torch.distributed is not initialised; call "
            f"torch.distributed.init_process_group first (or use {single_device} on one device)"
        )
    process_group = group if group is not None else dist.group.WORLD
    assert process_group is not None
    if dist.get_rank(process_group) < 0:
        raise ValueError(
            f"group: expected a process group that contains this process (global rank "
            f"{dist.get_rank()}), got a group it is not a member of"
        )
    return process_group


def _gather_ranks(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    group: Any,
    needs_grad: bool,
    *,
    grouped: bool = False,
    positive_weighting: PositiveWeighting = "uniform",
) -> _Ranks:
    """All-gather (batches, dim, dtypes, needs_grad, groups) of every rank; check they agree.

    Every rank raises the same error, so a mismatch never leaves a rank waiting in a collective.

    Raises:
        ValueError: the embedding dim, the dtype of ``image_emb`` or ``text_emb``, whether group
            ids are given, or ``positive_weighting`` differs between ranks.
    """
    world_size = dist.get_world_size(group)
    batch, dim = image_emb.shape
    codes = [FLOATING_DTYPE_NAMES.index(dtype_name(x)) for x in (image_emb, text_emb)]
    weighting = POSITIVE_WEIGHTINGS.index(positive_weighting)
    local = torch.tensor(
        [batch, dim, *codes, int(needs_grad), text_emb.shape[0], int(grouped), weighting],
        dtype=torch.int64,
        device=image_emb.device,
    )
    everyone = [torch.empty_like(local) for _ in range(world_size)]
    dist.all_gather(everyone, local, group=group)
    table = [tuple(int(v) for v in row.tolist()) for row in everyone]
    dims = [row[1] for row in table]
    if any(d != dim for d in dims):
        raise ValueError(
            f"image_emb: expected the same embedding dim on every rank, got dims {dims} "
            f"(in group-rank order)"
        )
    for column, name in ((2, "image_emb"), (3, "text_emb")):
        names = [FLOATING_DTYPE_NAMES[row[column]] for row in table]
        if len(set(names)) > 1:
            raise ValueError(
                f"{name}: expected the same dtype on every rank, got {names} (in group-rank order)"
            )
    with_groups = [rank for rank, row in enumerate(table) if row[6]]
    if with_groups and len(with_groups) < world_size:
        raise ValueError(
            f"image_groups: expected group ids on every rank or on none, got them on ranks "
            f"{with_groups} of {world_size} (in group-rank order)"
        )
    weightings = [POSITIVE_WEIGHTINGS[row[7]] for row in table]
    if len(set(weightings)) > 1:
        raise ValueError(
            f"positive_weighting: expected the same value on every rank, got {weightings} "
            "(in group-rank order)"
        )
    return _Ranks(
        group=group,
        rank=dist.get_rank(group),
        world_size=world_size,
        batch_sizes=tuple(row[0] for row in table),
        any_needs_grad=any(row[4] for row in table),
        text_batch_sizes=tuple(row[5] for row in table),
        grouped=bool(with_groups),
    )


class _GatheredGroups(NamedTuple):
    image: tuple[torch.Tensor, ...]  # every rank's image ids, in group-rank order
    text: tuple[torch.Tensor, ...]  # every rank's text ids


def _gather_groups(
    image_groups: torch.Tensor, text_groups: torch.Tensor, ranks: _Ranks
) -> _GatheredGroups:
    """Every rank's group ids (one all-gather of ``max n + max m`` int64 per rank: kilobytes)."""
    largest_images, largest_texts = max(ranks.batch_sizes), max(ranks.text_batch_sizes)
    local = image_groups.new_zeros(largest_images + largest_texts)
    local[: image_groups.shape[0]] = image_groups
    local[largest_images : largest_images + text_groups.shape[0]] = text_groups
    everyone = [torch.empty_like(local) for _ in range(ranks.world_size)]
    dist.all_gather(everyone, local, group=ranks.group)
    return _GatheredGroups(
        image=tuple(row[:n] for row, n in zip(everyone, ranks.batch_sizes, strict=True)),
        text=tuple(
            row[largest_images : largest_images + m]
            for row, m in zip(everyone, ranks.text_batch_sizes, strict=True)
        ),
    )


def distributed_sigmoid_loss(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    *,
    scale: Scalar,
    bias: Scalar,
    image_groups: torch.Tensor | None = None,
    text_groups: torch.Tensor | None = None,
    positive_weighting: PositiveWeighting = "uniform",
    group: dist.ProcessGroup | None = None,
    strategy: Strategy = "ring",
    block_size: int | None = None,
) -> torch.Tensor:
    r"""The SigLIP sigmoid loss over a process group: this rank's share of the global loss.

    Every rank passes its own rows; the negatives are the text rows of *all* ranks. With
    :math:`N = \sum_p n_p` rows in the group and :math:`W` ranks, rank :math:`r` returns

    .. math::
        \ell_r = \frac{W}{N} \sum_{i \in r} \sum_{j=1}^{N}
        \operatorname{softplus}\big(-z_{ij} (t \langle x_i, y_j \rangle + b)\big),
        \qquad \frac{1}{W} \sum_r \ell_r = L

    i.e. :math:`\frac{1}{n}` times its rows' sums over all global columns when the local batches
    are equal. The mean over ranks of the returned values is exactly the single-device loss
    :math:`L` on the concatenated batch, and DDP's gradient averaging yields exactly the
    single-device gradient: the gradient of each rank's text rows collects the contributions of
    every rank's loss (they travel back to their owner), and ``scale``/``bias`` get this rank's
    share, so their DDP average is the global gradient. Log ``all_reduce(loss) / W`` for the
    global value.

    Uneven local batches are supported exactly (the :math:`W/N` factor keeps the identity); the
    embedding dim must agree on every rank. Gradients assume that the incoming gradient of the
    loss is the same on every rank, which holds for ``loss.backward()``, a ``GradScaler``, and
    dividing by the number of accumulation steps; weighting the loss differently per rank is not
    supported.

    Several positives per row: with ``image_groups`` and ``text_groups`` on every rank, pair
    ``(i, j)`` of the global batch is a positive iff their ids are equal, wherever the two rows
    live (the ids of every rank are all-gathered once per call: ``n + m`` integers per rank, so a
    caption on another rank is a positive there too); local text batches may then differ from the
    image batches, :math:`N` counts the images, and ``positive_weighting="inverse_count"`` counts
    ``k_i``/``k'_j`` over the global batch. The identities above hold unchanged: the mean over
    ranks is :func:`sigmoid_loss` with the same groups on the concatenated batch.

    Memory: ``"ring"`` keeps per rank only its own embeddings, two text blocks and five
    ``[n, dim]`` gradient buffers, independent of ``W``; backward stores two ``[n, dim]``
    gradients. ``"all_gather"`` needs one collective instead of ``W - 1`` hops but holds the
    gathered ``[N, dim]`` text tower and its gradient during the forward. Sums and gradient
    buffers are float32 (float64 for float64 inputs), as in :func:`sigmoid_loss`.

    Args:
        image_emb: ``[batch, dim]`` this rank's image embeddings (normalise them first).
        text_emb: ``[batch, dim]`` this rank's text embeddings; row ``i`` pairs with image row ``i``
            (``[text_batch, dim]`` with groups).
        scale: the positive multiplier ``t = exp(log_scale)``, not its log; float or 0-d tensor.
        bias: the logit bias ``b``; float or 0-d tensor.
        image_groups: ``[batch]`` integer group ids of this rank's images, or None (diagonal).
        text_groups: ``[text_batch]`` integer group ids of this rank's texts, or None.
        positive_weighting: ``"uniform"`` or ``"inverse_count"`` (see :func:`sigmoid_loss`).
        group: the process group (default: the world). Every rank of it must call this function.
        strategy: ``"ring"`` (point-to-point, overlaps the next block's transfer with the current
            block's compute) or ``"all_gather"``.
        block_size: tile edge of the fused block computation (None: the fused default).

    Returns:
        0-d float32 tensor (float64 for float64 inputs): this rank's loss :math:`\ell_r`.

    Raises:
        RuntimeError: ``torch.distributed`` is not initialised.
        ValueError: bad shapes, groups or ``scale``, an unknown ``strategy`` or
            ``positive_weighting``, dims, dtypes, the presence of groups or the weighting that
            differ between ranks, or a ``group`` this process is not part of.
        TypeError: an embedding is not a floating tensor, a group tensor is not an integer
            tensor, or ``block_size`` is not an int.

    Reference: Zhai et al., arXiv:2303.15343, section 3.3 (the ring).

    Examples:
        On ``W`` ranks (``torchrun``) every rank runs these lines with its own rows, and DDP (or an
        all-reduce mean) averages the gradients; a whole DDP script is in ``docs/distributed.md``.
        One process is a group of one, where the loss is :func:`sigmoid_loss`:

        >>> import torch
        >>> import torch.distributed as dist
        >>> from siglip_loss.torch import distributed_sigmoid_loss, l2_normalize, sigmoid_loss
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> _ = torch.manual_seed(0)
        >>> image = l2_normalize(torch.randn(8, 16)).requires_grad_()
        >>> text = l2_normalize(torch.randn(8, 16))
        >>> loss = distributed_sigmoid_loss(image, text, scale=10.0, bias=-10.0)
        >>> loss.backward()
        >>> torch.allclose(loss, sigmoid_loss(image, text, scale=10.0, bias=-10.0))
        True
        >>> dist.destroy_process_group()
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
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {STRATEGIES}, got {strategy!r}")
    check_block_size(block_size)
    process_group = _process_group(group, "distributed_sigmoid_loss", "sigmoid_loss")
    scale_tensor, bias_tensor = scale_and_bias_keeping_graph(
        image_emb, text_emb, scale=scale, bias=bias
    )
    dtype = scale_tensor.dtype
    inputs = (image_emb, text_emb, scale_tensor, bias_tensor)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
    grouped = image_groups is not None and text_groups is not None
    ranks = _gather_ranks(
        image_emb,
        text_emb,
        process_group,
        needs_grad,
        grouped=grouped,
        positive_weighting=positive_weighting,
    )
    plan = _Plan(
        group=process_group,
        rank=ranks.rank,
        world_size=ranks.world_size,
        batch_sizes=ranks.batch_sizes,
        text_batch_sizes=ranks.text_batch_sizes,
        strategy=strategy,
        block_size=block_size,
        compute_grads=ranks.any_needs_grad,
        dtype=dtype,
    )
    if image_groups is not None and text_groups is not None:
        plan = _with_groups(
            plan, ranks, image_groups, text_groups, positive_weighting, image_emb.device
        )
    loss: torch.Tensor = _DistributedSigmoidLoss.apply(*inputs, plan)
    return loss


def _with_groups(
    plan: _Plan,
    ranks: _Ranks,
    image_groups: torch.Tensor,
    text_groups: torch.Tensor,
    positive_weighting: PositiveWeighting,
    device: torch.device,
) -> _Plan:
    """``plan`` with every rank's ids and, for ``"inverse_count"``, the global pair weights.

    The ids go to ``device`` (the embeddings' device: NCCL exchanges device tensors only).
    """
    gathered = _gather_groups(
        as_group_ids(image_groups, device), as_group_ids(text_groups, device), ranks
    )
    own_images = gathered.image[plan.rank]
    image_weights = None
    text_weights: tuple[torch.Tensor | None, ...] = (None,) * plan.world_size
    if positive_weighting == "inverse_count":
        every_image, every_text = torch.cat(gathered.image), torch.cat(gathered.text)
        image_weights = half_inverse_counts(own_images, every_text, plan.dtype)
        text_weights = tuple(
            half_inverse_counts(texts, every_image, plan.dtype) for texts in gathered.text
        )
    return dataclasses.replace(
        plan,
        image_groups=own_images,
        image_weights=image_weights,
        text_groups=gathered.text,
        text_weights=text_weights,
    )


class _AllGatherRows(torch.autograd.Function):
    """Every rank's ``[n, dim]`` rows, concatenated in group-rank order; backward sums over ranks.

    The gradient of the gathered ``[N, dim]`` tensor is reduce-scattered: each rank gets the sum
    over every rank's loss of the gradient of its own rows. (``torch.distributed.nn``'s all-gather
    does the same but is deprecated in torch 2.13 and writes a module to a temporary directory when
    imported.) Every rank must run the backward, as with DDP.
    """

    @staticmethod
    def forward(ctx: Any, rows: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        gathered = [torch.empty_like(rows) for _ in range(dist.get_world_size(group))]
        dist.all_gather(gathered, rows.contiguous(), group=group)
        return torch.cat(gathered)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        world_size = dist.get_world_size(ctx.group)
        pieces = [piece.contiguous() for piece in grad_output.chunk(world_size)]
        own = torch.empty_like(pieces[0])
        dist.reduce_scatter(own, pieces, op=dist.ReduceOp.SUM, group=ctx.group)
        return own, None


def distributed_softmax_loss(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    *,
    scale: Scalar,
    bias: Scalar | None = None,
    group: dist.ProcessGroup | None = None,
) -> torch.Tensor:
    r"""CLIP's softmax loss with global negatives over a process group: this rank's share.

    Each of the :math:`W` ranks passes its own :math:`n` rows; rank :math:`r` scores them against
    all :math:`N = W n` rows of the other modality and returns

    .. math::
        \ell_r = \frac{1}{2n} \sum_{i \in r} \Big[ \mathrm{CE}(t\, x_i Y^\top, i)
              + \mathrm{CE}(t\, y_i X^\top, i) \Big],
        \qquad \frac{1}{W} \sum_r \ell_r = L

    where :math:`L` is :func:`softmax_loss` on the concatenated batch. The all-gather is
    differentiable (its backward reduce-scatters the gradients, summed over the ranks), so the
    gradient of each rank's rows collects the contributions of every rank's loss, and DDP's
    gradient averaging gives exactly the single-device gradient, ``scale`` included. The same
    convention as :func:`distributed_sigmoid_loss`. Memory: the gathered ``[N, dim]`` towers and
    two ``[n, N]`` logit matrices per rank.

    Args:
        image_emb: ``[batch, dim]`` this rank's image embeddings (normalise them first); the
            same batch on every rank.
        text_emb: ``[batch, dim]`` this rank's text embeddings; row ``i`` pairs with image row ``i``.
        scale: the positive multiplier ``t = exp(log_scale)``, not its log; float or 0-d tensor.
        bias: accepted so that the sigmoid and softmax losses share one signature, and unused
            (the softmax is shift-invariant); checked to be finite when given.
        group: the process group (default: the world). Every rank of it must call this function.

    Returns:
        0-d float32 tensor (float64 for float64 inputs): this rank's loss :math:`\ell_r`.

    Raises:
        RuntimeError: ``torch.distributed`` is not initialised.
        ValueError: bad shapes, a non-finite or non-positive ``scale``, a non-finite ``bias``,
            batches, dims or dtypes that differ between ranks, or a ``group`` this process is
            not part of.
        TypeError: an input is not a floating tensor.

    Reference: Radford et al., arXiv:2103.00020 (CLIP), figure 3.

    Examples:
        On ``W`` ranks every rank runs these lines with its own rows, and DDP averages the
        gradients. One process is a group of one, where the loss is :func:`softmax_loss`:

        >>> import torch
        >>> import torch.distributed as dist
        >>> from siglip_loss.torch import distributed_softmax_loss, l2_normalize, softmax_loss
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> _ = torch.manual_seed(0)
        >>> image = l2_normalize(torch.randn(8, 16)).requires_grad_()
        >>> text = l2_normalize(torch.randn(8, 16))
        >>> loss = distributed_softmax_loss(image, text, scale=10.0)
        >>> loss.backward()
        >>> torch.allclose(loss, softmax_loss(image, text, scale=10.0))
        True
        >>> dist.destroy_process_group()
    """
    check_inputs(image_emb, text_emb, scale=scale, bias=bias)
    process_group = _process_group(group, "distributed_softmax_loss", "softmax_loss")
    ranks = _gather_ranks(image_emb, text_emb, process_group, needs_grad=False)
    if len(set(ranks.batch_sizes)) > 1:
        raise ValueError(
            f"image_emb: expected the same batch on every rank, got batches "
            f"{list(ranks.batch_sizes)} (in group-rank order)"
        )
    dtype, device = compute_dtype(image_emb, text_emb), image_emb.device
    # Gathered in the input dtype (half the traffic for 16-bit inputs), then computed in dtype.
    all_images = _AllGatherRows.apply(image_emb, process_group).to(dtype)  # [N, dim]
    all_texts = _AllGatherRows.apply(text_emb, process_group).to(dtype)  # [N, dim]
    scale_tensor = scalar_keeping_graph("scale", scale, dtype=dtype, device=device)
    local = image_emb.shape[0]
    labels = torch.arange(local, device=device) + ranks.rank * local
    logits_image = scale_tensor * (image_emb.to(dtype) @ all_texts.T)  # [n, N]
    logits_text = scale_tensor * (text_emb.to(dtype) @ all_images.T)  # [n, N]
    return 0.5 * (F.cross_entropy(logits_image, labels) + F.cross_entropy(logits_text, labels))
