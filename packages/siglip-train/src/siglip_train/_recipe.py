"""The SigLIP 2 recipe trainer (PyTorch, one process): sigmoid loss + LocCa decoder, SILC + TIPS
self-distillation against an EMA teacher from a fraction of training, ACID data curation.

The losses are siglip-loss's (``sigmoid_loss``, ``token_cross_entropy``,
``self_distillation_loss``, ``masked_patch_distillation_loss``, ``update_center``); the decoder
is ``siglip_models.torch.SiglipTextDecoder``. The vision tower is driven through its public
parts (``embeddings``, ``encoder``, ``post_layernorm``, ``head``) so that one forward yields both
the patch tokens (decoder memory, TIPS) and the pooled embedding, a local crop can use a resized
position embedding, and TIPS can mask patch embeddings before the positions are added.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import math
import os
from collections.abc import Iterable
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from siglip_train._atomic import atomic_write_bytes
from siglip_train._common import warmup_cosine_multiplier
from siglip_train._config import TrainConfig
from siglip_train._optim import build_optimizer
from siglip_train._optim import build_parameter_groups
from siglip_train._recipe_config import RecipeConfig
from siglip_train._recipe_data import LOCCA_TASKS

DISTILLATION_GROUP = "distillation"


class DistillationHead(nn.Module):
    """SILC / TIPS projection head: MLP -> L2 norm -> weight-normalised prototypes (DINO).

    .. math::
        h(x) = \\hat W\\, \\frac{g(x)}{\\lVert g(x) \\rVert}, \\quad
        \\hat W_k = W_k / \\lVert W_k \\rVert

    Args:
        width: input width (the vision tower's).
        hidden: MLP hidden width.
        bottleneck: width before the normalisation.
        prototypes: output size ``K``.
    """

    def __init__(self, width: int, *, hidden: int, bottleneck: int, prototypes: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, bottleneck),
        )
        self.prototypes = nn.Parameter(torch.empty(prototypes, bottleneck))
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.prototypes, std=0.02)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[..., width]`` -> ``[..., prototypes]`` logits."""
        projected = F.normalize(self.mlp(features), dim=-1)
        return F.linear(projected, F.normalize(self.prototypes, dim=-1))


def has_patch_tokens(model: Any) -> bool:
    """Whether ``model`` exposes a fixed-resolution ViT with patch tokens (what LocCa and
    SILC/TIPS need): ``model.vision_model`` with ``embeddings.patch_embedding``,
    ``embeddings.position_embedding``, ``encoder``, ``post_layernorm`` and ``head``."""
    tower = getattr(model, "vision_model", None)
    embeddings = getattr(tower, "embeddings", None)
    config = getattr(getattr(model, "config", None), "vision", None)
    return (
        tower is not None
        and all(hasattr(tower, name) for name in ("encoder", "post_layernorm", "head"))
        and hasattr(embeddings, "patch_embedding")
        and hasattr(embeddings, "position_embedding")
        and not getattr(config, "naflex", False)
    )


def vision_tokens(
    tower: nn.Module,
    pixels: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    mask_token: torch.Tensor | None = None,
) -> torch.Tensor:
    """Final-LayerNorm patch tokens ``[batch, patches, width]`` of any square input size.

    The position embedding is resized (bilinear) when the patch grid differs from the
    trained one; ``mask`` (bool ``[batch, patches]``) replaces those patch embeddings by
    ``mask_token`` before the positions are added (TIPS).
    """
    embeddings: Any = tower.embeddings
    conv: nn.Conv2d = embeddings.patch_embedding
    patches = conv(pixels.to(conv.weight.dtype))
    _, width, rows, columns = patches.shape
    tokens = patches.flatten(2).transpose(1, 2)  # row-major, as the position table
    if mask is not None:
        assert mask_token is not None
        tokens = torch.where(mask[..., None], mask_token.to(tokens.dtype), tokens)
    positions: torch.Tensor = embeddings.position_embedding.weight
    side = math.isqrt(positions.shape[0])
    if (rows, columns) != (side, side):
        grid = positions.reshape(1, side, side, width).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(rows, columns), mode="bilinear", align_corners=False)
        positions = grid.permute(0, 2, 3, 1).reshape(rows * columns, width)
    tokens = tokens + positions.to(tokens.dtype)
    encoded: torch.Tensor = tower.post_layernorm(tower.encoder(tokens))  # type: ignore[operator]
    return encoded


def per_example_sigmoid_loss(
    image_emb: torch.Tensor, text_emb: torch.Tensor, *, scale: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """Row ``i``'s share of the sigmoid loss: ``sum_j softplus(-z_ij (t x_i.y_j + b))``.

    Args:
        image_emb: ``[batch, dim]`` L2-normalised.
        text_emb: ``[batch, dim]`` L2-normalised.
        scale: ``t``.
        bias: ``b``.

    Returns:
        ``[batch]``; its mean is the sigmoid loss.
    """
    logits = scale * image_emb @ text_emb.T + bias
    signs = 2 * torch.eye(len(logits), dtype=logits.dtype, device=logits.device) - 1
    losses: torch.Tensor = F.softplus(-signs * logits).sum(dim=1)
    return losses


def acid_select(
    learner_losses: torch.Tensor, reference_losses: torch.Tensor, keep: int
) -> torch.Tensor:
    """Indices (ascending) of the ``keep`` most learnable examples of a super-batch.

    Learnability ``s_i = l_i^learner - l_i^reference`` (JEST / ACID's score, per example; the
    joint, chunked selection of JEST is not done at toy scale).

    Args:
        learner_losses: ``[super_batch]`` per-example losses of the model being trained.
        reference_losses: ``[super_batch]`` per-example losses of the reference model.
        keep: how many to keep.

    Returns:
        ``[keep]`` int64 indices, sorted.

    Examples:
        >>> import torch
        >>> acid_select(torch.tensor([3.0, 1.0, 2.0]), torch.tensor([0.0, 0.0, 2.5]), 2)
        tensor([0, 1])
    """
    learnability = learner_losses - reference_losses
    indices: torch.Tensor = torch.topk(learnability, keep, sorted=False).indices
    return indices.sort().values


def _l2(x: torch.Tensor) -> torch.Tensor:
    normalised: torch.Tensor = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return normalised


def _random_crops(
    pixels: torch.Tensor,
    rng: np.random.Generator,
    *,
    scale: tuple[float, float],
    size: int,
) -> torch.Tensor:
    """One random resized crop (area fraction ``scale``) per image, resized to ``size``, with a
    random horizontal flip (SILC's views; colour jitter is left out at toy scale)."""
    from siglip_data import Augmentation

    augmentation = Augmentation(scale=scale)
    side = pixels.shape[-1]
    views = []
    for image in pixels:
        left, top, right, bottom = augmentation.crop_box(side, side, rng)
        view = image[None, :, top:bottom, left:right]
        view = F.interpolate(view, size=(size, size), mode="bilinear", align_corners=False)
        if rng.random() < 0.5:
            view = view.flip(-1)
        views.append(view)
    return torch.cat(views)


@dataclasses.dataclass
class RecipeStep:
    """What one step measured (floats; the components that are off are absent)."""

    step: int
    loss: float
    parts: dict[str, float]
    lr: float


class RecipeTrainer:
    """Train a SigLIP model with the SigLIP 2 recipe on one process (CPU or one GPU).

    ``L = L_sigmoid + locca_weight * (L_cap + L_aref + L_gcap)
    + size_factor * (silc_weight * L_silc + tips_weight * L_tips)``; SILC/TIPS start at
    ``recipe.distillation_start * config.steps`` (:meth:`start_distillation`): the EMA teacher is
    a copy of the student's vision tower, the heads and the mask token are fresh and go into a
    NEW optimizer parameter group (the existing groups and their Adam state are untouched).
    With ``recipe.acid`` each batch is a super-batch; the most learnable ``acid_keep_fraction``
    (learner loss - ``reference`` loss per example) is trained on.

    Args:
        model: a ``siglip_models.torch.SiglipModel`` (fixed resolution: LocCa and SILC/TIPS
            need its patch tokens).
        batches: an iterable of batches (:class:`SceneBatches` keys), resumable through
            ``state_dict`` / ``load_state_dict`` when it has them.
        config: steps, seed, optimizer (lr, weight decay, betas, clip, warmup).
        recipe: the recipe's flags.
        decoder: a ``siglip_models.torch.SiglipTextDecoder`` (required with ``recipe.locca``).
        reference: the ACID reference model (required with ``recipe.acid``; frozen).

    Raises:
        ValueError: LocCa without a decoder, ACID without a reference, or LocCa / distillation
            on a model without patch tokens (e.g. NaFlex).
    """

    def __init__(
        self,
        model: nn.Module,
        batches: Iterable[Mapping[str, Any]],
        config: TrainConfig,
        recipe: RecipeConfig,
        *,
        decoder: nn.Module | None = None,
        reference: nn.Module | None = None,
    ) -> None:
        if (recipe.locca or recipe.distillation) and not has_patch_tokens(model):
            wanted = "distillation (SILC/TIPS)" if recipe.distillation else "LocCa"
            raise ValueError(
                f"{wanted} needs a model with patch tokens (a fixed-resolution ViT exposing "
                f"vision_model.embeddings/encoder/post_layernorm/head); "
                f"{type(model).__name__} has none (NaFlex towers are not supported)"
            )
        if recipe.locca and decoder is None:
            raise ValueError("recipe.locca is on but no decoder was given")
        if recipe.acid and reference is None:
            raise ValueError("recipe.acid is on but no reference model was given")
        self.model = model
        self.decoder = decoder
        self.reference = reference
        if reference is not None:
            reference.requires_grad_(False)
            reference.eval()
        self.batches = batches
        self._iterator = iter(batches)
        self.config = config
        self.recipe = recipe
        self.step = 0
        self.start_step = round(recipe.distillation_start * config.steps)
        self.distilling = False
        self.student_heads: nn.ModuleDict | None = None
        self.teacher: nn.ModuleDict | None = None
        self.mask_token: nn.Parameter | None = None
        self.centers: dict[str, torch.Tensor] = {}
        self.trainable = nn.ModuleDict({"model": model})
        if decoder is not None:
            self.trainable["decoder"] = decoder
        optimizer_config = config.optimizer
        names = [name for name, _ in self.trainable.named_parameters()]
        groups = build_parameter_groups(
            self.trainable,
            lr=optimizer_config.lr,
            weight_decay=optimizer_config.weight_decay,
            image_parameter_names=[n for n in names if n.startswith("model.vision_model.")],
            text_parameter_names=[
                n for n in names if n.startswith(("model.text_model.", "decoder."))
            ],
            image_lr_multiplier=optimizer_config.image_lr_multiplier,
            text_lr_multiplier=optimizer_config.text_lr_multiplier,
            logit_lr_multiplier=optimizer_config.logit_lr_multiplier,
        )
        self.optimizer = build_optimizer(
            groups, betas=(optimizer_config.beta1, optimizer_config.beta2), eps=optimizer_config.eps
        )

    # ------------------------------------------------------------------ distillation
    def start_distillation(self, teacher: nn.Module | None = None) -> None:
        """Switch SILC + TIPS on: EMA teacher, fresh heads and mask token, a new param group.

        Args:
            teacher: the teacher's vision tower (default: a copy of the student's); it must
                have the student's parameter names and shapes.

        Raises:
            ValueError: distillation already on, or a teacher of another shape.
        """
        if self.distilling:
            raise ValueError("distillation is already on")
        recipe = self.recipe
        tower: Any = self.model.vision_model
        width = int(tower.post_layernorm.weight.shape[0])
        generator_state = torch.get_rng_state()
        torch.manual_seed(self.config.seed * 1_000_003 + self.start_step)  # same heads on resume
        self.student_heads = nn.ModuleDict(
            {
                name: DistillationHead(
                    width,
                    hidden=recipe.head_hidden,
                    bottleneck=recipe.head_bottleneck,
                    prototypes=recipe.prototypes,
                )
                for name in ("image", "patch")
            }
        )
        self.mask_token = nn.Parameter(torch.randn(width) * 0.02)
        torch.set_rng_state(generator_state)
        device = next(tower.parameters()).device
        self.student_heads.to(device)
        self.mask_token.data = self.mask_token.data.to(device)
        teacher_tower = copy.deepcopy(tower) if teacher is None else teacher
        check_same_shapes(teacher_tower, tower, what="teacher")
        self.teacher = nn.ModuleDict(
            {"tower": teacher_tower, "heads": copy.deepcopy(self.student_heads)}
        )
        self.teacher.requires_grad_(False)
        self.centers = {
            name: torch.zeros(recipe.prototypes, device=device) for name in ("image", "patch")
        }
        lr = self.config.optimizer.lr * recipe.distillation_lr_multiplier
        self.optimizer.add_param_group(
            {
                "name": DISTILLATION_GROUP,
                "params": [*self.student_heads.parameters(), self.mask_token],
                "lr": lr,
                "initial_lr": lr,
                "weight_decay": 0.0,
            }
        )
        self.distilling = True

    @torch.no_grad()
    def _update_teacher(self) -> None:
        assert self.teacher is not None
        assert self.student_heads is not None
        weight = 1.0 - self.recipe.teacher_momentum
        pairs = [
            (self.teacher["tower"], self.model.vision_model),
            (self.teacher["heads"], self.student_heads),
        ]
        for teacher, student in pairs:
            for target, source in zip(
                teacher.parameters(),
                student.parameters(),  # type: ignore[union-attr]
                strict=True,
            ):
                target.lerp_(source.detach(), weight)

    # ------------------------------------------------------------------ the step
    def _tensor_pixels(self, pixels: Any) -> torch.Tensor:
        device = next(self.model.parameters()).device
        array = torch.as_tensor(np.asarray(pixels), device=device)
        return array.permute(0, 3, 1, 2).float() / 127.5 - 1.0

    def _learnability_select(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        assert self.reference is not None
        total = len(batch["token_ids"])
        keep = max(1, round(total * self.recipe.acid_keep_fraction))
        pixels = self._tensor_pixels(batch["pixels"])
        device = pixels.device
        token_ids = torch.as_tensor(np.asarray(batch["token_ids"]), device=device).long()
        losses = []
        with torch.no_grad():
            scorers: list[Any] = [self.model, self.reference]
            for scorer in scorers:
                image = _l2(scorer.encode_image(pixels).float())
                text = _l2(scorer.encode_text(token_ids).float())
                losses.append(
                    per_example_sigmoid_loss(
                        image, text, scale=scorer.log_scale.float().exp(), bias=scorer.bias.float()
                    )
                )
        chosen = acid_select(losses[0], losses[1], keep).cpu().numpy()
        return {key: np.asarray(value)[chosen] for key, value in batch.items()}

    def train_step(self, batch: Mapping[str, Any]) -> RecipeStep:
        """One optimizer step on ``batch`` (switching distillation on first when it is time)."""
        from siglip_loss import torch as loss_torch

        recipe = self.recipe
        if recipe.distillation and not self.distilling and self.step >= self.start_step:
            self.start_distillation()
        multiplier = warmup_cosine_multiplier(
            self.step,
            total_steps=self.config.steps,
            warmup_steps=self.config.optimizer.warmup_steps,
            min_lr_ratio=self.config.optimizer.min_lr_ratio,
        )
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * multiplier
        if recipe.acid:
            batch = self._learnability_select(batch)
        rng = np.random.default_rng([self.config.seed, 7, self.step])
        pixels = self._tensor_pixels(batch["pixels"])
        device = pixels.device
        model: Any = self.model
        tower = model.vision_model
        patch_tokens = vision_tokens(tower, pixels)
        image_emb = tower.head(patch_tokens)
        text_emb = model.encode_text(
            torch.as_tensor(np.asarray(batch["token_ids"]), device=device).long()
        )
        parts: dict[str, torch.Tensor] = {}
        parts["sigmoid"] = loss_torch.sigmoid_loss(
            _l2(image_emb.float()),
            _l2(text_emb.float()),
            scale=model.log_scale.float().exp(),
            bias=model.bias.float(),
        )
        total = parts["sigmoid"]
        if recipe.locca:
            assert self.decoder is not None
            locca = torch.zeros((), device=device)
            for task in LOCCA_TASKS:
                tokens = torch.as_tensor(np.asarray(batch[f"decoder/{task}/tokens"])).long()
                weights = torch.as_tensor(np.asarray(batch[f"decoder/{task}/weights"])).float()
                parallel = torch.zeros(len(tokens), dtype=torch.bool)
                if task == "cap":
                    parallel = torch.as_tensor(
                        rng.random(len(tokens)) < recipe.parallel_probability
                    )
                tokens, weights, parallel = (
                    tokens.to(device),
                    weights.to(device),
                    parallel.to(device),
                )
                decoder: Any = self.decoder
                if recipe.vocab_chunk_size:
                    hidden = decoder.hidden_states(tokens, patch_tokens, parallel=parallel)
                    parts[task] = loss_torch.chunked_token_cross_entropy(
                        hidden.float(),
                        decoder.head.weight,
                        tokens,
                        weights=weights,
                        vocab_bias=decoder.head.bias,
                        chunk_size=recipe.vocab_chunk_size,
                    )
                else:
                    logits = decoder(tokens, patch_tokens, parallel=parallel)
                    parts[task] = loss_torch.token_cross_entropy(
                        logits.float(), tokens, weights=weights
                    )
                locca = locca + parts[task]
            total = total + recipe.locca_weight * locca
        if self.distilling:
            silc, tips = self._distillation_losses(pixels, rng)
            parts["silc"], parts["tips"] = silc, tips
            total = total + recipe.size_factor * (
                recipe.silc_weight * silc + recipe.tips_weight * tips
            )
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        clip = self.config.optimizer.grad_clip
        torch.nn.utils.clip_grad_norm_(parameters, clip if clip > 0 else math.inf)
        self.optimizer.step()
        if self.distilling:
            self._update_teacher()
        lr = self.optimizer.param_groups[0]["lr"]
        result = RecipeStep(
            self.step, float(total.detach()), {k: float(v.detach()) for k, v in parts.items()}, lr
        )
        self.step += 1
        return result

    def _distillation_losses(
        self, pixels: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        from siglip_loss import torch as loss_torch

        recipe = self.recipe
        assert self.teacher is not None
        assert self.student_heads is not None
        assert self.mask_token is not None
        tower: Any = self.model.vision_model
        side = pixels.shape[-1]
        patch = tower.embeddings.patch_embedding.kernel_size[0]
        local_side = recipe.local_crop_size or side // 2
        local_side = max(patch, local_side - local_side % patch)
        global_view = _random_crops(pixels, rng, scale=recipe.global_crop_scale, size=side)
        local_views = torch.cat(
            [
                _random_crops(pixels, rng, scale=recipe.local_crop_scale, size=local_side)
                for _ in range(recipe.local_crops)
            ]
        )
        teacher_tower: Any = self.teacher["tower"]
        teacher_heads: Any = self.teacher["heads"]
        with torch.no_grad():
            teacher_tokens = vision_tokens(teacher_tower, global_view)
            teacher_image = teacher_heads["image"](teacher_tower.head(teacher_tokens)).float()
            teacher_patch = teacher_heads["patch"](teacher_tokens).float()
        # SILC: the student on every local view against the teacher's global view.
        student_local = tower.head(vision_tokens(tower, local_views))
        student_image = self.student_heads["image"](student_local).float()
        silc = loss_torch.self_distillation_loss(
            student_image,
            teacher_image.repeat(recipe.local_crops, 1),
            center=self.centers["image"],
            student_temperature=recipe.student_temperature,
            teacher_temperature=recipe.teacher_temperature,
        )
        # TIPS: the student on the masked global view, per masked patch.
        batch, patches = teacher_tokens.shape[:2]
        scores = torch.as_tensor(rng.random((batch, patches)))
        masked = round(recipe.tips_mask_ratio * patches)
        mask = torch.zeros(batch, patches, dtype=torch.bool)
        mask.scatter_(1, scores.argsort(dim=1)[:, :masked], True)
        mask = mask.to(pixels.device)
        student_tokens = vision_tokens(tower, global_view, mask=mask, mask_token=self.mask_token)
        student_patch = self.student_heads["patch"](student_tokens).float()
        tips = loss_torch.masked_patch_distillation_loss(
            student_patch,
            teacher_patch,
            mask,
            center=self.centers["patch"],
            student_temperature=recipe.student_temperature,
            teacher_temperature=recipe.teacher_temperature,
        )
        momentum = recipe.center_momentum
        self.centers["image"] = loss_torch.update_center(
            self.centers["image"], teacher_image, momentum=momentum
        )
        self.centers["patch"] = loss_torch.update_center(
            self.centers["patch"], teacher_patch, momentum=momentum
        )
        return silc, tips

    def fit(self, steps: int | None = None) -> list[RecipeStep]:
        """Train until ``steps`` (default ``config.steps``); returns each step's record."""
        end = self.config.steps if steps is None else steps
        history = []
        while self.step < end:
            history.append(self.train_step(next(self._iterator)))
        return history

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs (model, decoder, heads, teacher, centres, optimizer, data)."""
        state: dict[str, Any] = {
            "step": self.step,
            "distilling": self.distilling,
            "trainable": self.trainable.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }
        if hasattr(self.batches, "state_dict"):
            state["data"] = self.batches.state_dict()
        if self.distilling:
            assert self.teacher is not None
            assert self.student_heads is not None
            assert self.mask_token is not None
            state["student_heads"] = self.student_heads.state_dict()
            state["mask_token"] = self.mask_token.detach().clone()
            state["teacher"] = self.teacher.state_dict()
            state["centers"] = {name: value.clone() for name, value in self.centers.items()}
        return state

    def save_checkpoint(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`state_dict` to ``path`` atomically."""
        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)
        return atomic_write_bytes(path, buffer.getvalue())

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Resume from :meth:`save_checkpoint` output (also mid-distillation).

        Raises:
            ValueError: the checkpoint's teacher, heads or model have other shapes.
        """
        state = torch.load(path, map_location="cpu", weights_only=False)
        check_state_shapes(state["trainable"], self.trainable.state_dict(), what="model")
        self.trainable.load_state_dict(state["trainable"])
        if state["distilling"] and not self.distilling:
            self.start_distillation()
        if self.distilling:
            assert self.teacher is not None
            assert self.student_heads is not None
            assert self.mask_token is not None
            check_state_shapes(state["teacher"], self.teacher.state_dict(), what="teacher")
            self.teacher.load_state_dict(state["teacher"])
            self.student_heads.load_state_dict(state["student_heads"])
            with torch.no_grad():
                self.mask_token.copy_(state["mask_token"])
            self.centers = dict(state["centers"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        if "data" in state and hasattr(self.batches, "load_state_dict"):
            self.batches.load_state_dict(state["data"])
            self._iterator = iter(self.batches)


def check_same_shapes(candidate: nn.Module, reference: nn.Module, *, what: str) -> None:
    """Raise a clear ValueError unless both modules have the same parameter names and shapes."""
    check_state_shapes(candidate.state_dict(), reference.state_dict(), what=what)


def check_state_shapes(
    candidate: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], *, what: str
) -> None:
    """Raise a clear ValueError unless two state dicts have the same names and shapes."""
    missing = sorted(set(expected) - set(candidate))
    extra = sorted(set(candidate) - set(expected))
    if missing or extra:
        raise ValueError(
            f"the {what} does not match the student: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    for name, value in expected.items():
        if tuple(candidate[name].shape) != tuple(value.shape):
            raise ValueError(
                f"the {what} has another shape than the student: {name} is "
                f"{tuple(candidate[name].shape)}, the student's is {tuple(value.shape)}"
            )
