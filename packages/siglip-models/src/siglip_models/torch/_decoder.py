"""The SigLIP 2 text decoder in PyTorch: captioning / LocCa head over the un-pooled image tokens.

Training uses causal teacher forcing or parallel prediction, chosen per example; the loss lives in
``siglip_loss`` (models never import it): ``token_cross_entropy(decoder(tokens, image_tokens),
tokens, weights=...)``, or ``chunked_token_cross_entropy(decoder.hidden_states(...),
decoder.head.weight, tokens, weights=..., vocab_bias=decoder.head.bias, chunk_size=...)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from siglip_models._decoder_config import TextDecoderConfig
from siglip_models.torch._layers import MLP


def _is_integer(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


class _Attention(nn.Module):
    """Multi-head attention from ``queries`` to ``keys_values`` (the same tensor for self-attention)."""

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(
        self, queries: torch.Tensor, keys_values: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """``mask``: bool, True = may attend, broadcastable to ``[batch, heads, queries, keys]``."""
        query, key, value = (
            rearrange(
                projection(source),
                "batch length (heads head_dim) -> batch heads length head_dim",
                heads=self.num_heads,
            )
            for projection, source in (
                (self.q_proj, queries),
                (self.k_proj, keys_values),
                (self.v_proj, keys_values),
            )
        )
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
        out: torch.Tensor = self.out_proj(
            rearrange(attended, "batch heads length head_dim -> batch length (heads head_dim)")
        )
        return out


class DecoderLayer(nn.Module):
    """Pre-LN block: ``x + self_attn(LN1(x))``, ``x + cross_attn(LN2(x), image)``,
    ``x + mlp(LN3(x))``."""

    def __init__(self, config: TextDecoderConfig) -> None:
        super().__init__()
        width, eps = config.width, config.layer_norm_eps
        self.layer_norm1 = nn.LayerNorm(width, eps=eps)
        self.self_attn = _Attention(width, config.num_heads)
        self.layer_norm2 = nn.LayerNorm(width, eps=eps)
        self.cross_attn = _Attention(width, config.num_heads)
        self.layer_norm3 = nn.LayerNorm(width, eps=eps)
        self.mlp = MLP(width, config.mlp_dim)

    def forward(
        self,
        tokens: torch.Tensor,
        image: torch.Tensor,
        self_mask: torch.Tensor,
        image_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        normed = self.layer_norm1(tokens)
        tokens = tokens + self.self_attn(normed, normed, self_mask)
        tokens = tokens + self.cross_attn(self.layer_norm2(tokens), image, image_mask)
        out: torch.Tensor = tokens + self.mlp(self.layer_norm3(tokens))
        return out


class SiglipTextDecoder(nn.Module):
    r"""Transformer text decoder over the un-pooled image tokens (SigLIP 2's LocCa decoder).

    ``tokens`` are the **target** sequence: the decoder shifts them right itself (position 0 reads
    :attr:`~siglip_models.TextDecoderConfig.begin_id`), so ``logits[:, i]`` predicts
    ``tokens[:, i]`` in both modes and the loss is
    ``token_cross_entropy(logits, tokens, weights=...)``. Per example (``parallel: [batch]``):

    - causal (False): input ``[begin, t_0, ..., t_{L-2}]`` with a causal mask, so position ``i``
      sees ``t_{<i}`` only;
    - parallel (True): every input is the mask token, no causal mask (CapPa's parallel
      prediction; SigLIP 2 uses it for half the caption targets): the logits depend on the image
      and the positions only.

    Every block is pre-LN self-attention, cross-attention to ``image_tokens`` (projected to
    ``width`` when ``image_width`` differs) and an MLP; learned positions; a final LayerNorm and
    ``head`` (``nn.Linear(width, vocab_size)``, zero-initialised as in CapPa). Greedy
    :meth:`generate` re-runs the whole sequence per step (no key/value cache: a toy-scale
    choice). PyTorch only: the JAX trainer has not landed. Papers: LocCa arXiv:2403.19596, CapPa
    arXiv:2306.07915, SigLIP 2 arXiv:2502.14786.

    Args:
        config: the decoder's shape (:meth:`~siglip_models.TextDecoderConfig.from_siglip` derives
            it from a two-tower config).

    Examples:
        >>> import torch
        >>> from siglip_models import TextDecoderConfig, get_config
        >>> from siglip_models.torch import SiglipTextDecoder
        >>> _ = torch.manual_seed(0)
        >>> config = TextDecoderConfig.from_siglip(get_config("tiny-test"), max_length=8)
        >>> decoder = SiglipTextDecoder(config)
        >>> image_tokens = torch.randn(2, 4, config.image_width)
        >>> tokens = torch.randint(0, config.vocab_size, (2, 8))
        >>> parallel = decoder.sample_parallel(2)  # per example, with parallel_probability
        >>> decoder(tokens, image_tokens, parallel=parallel).shape
        torch.Size([2, 8, 100])
        >>> decoder.generate(image_tokens, tokens[:, :3], max_new_tokens=2).shape
        torch.Size([2, 5])
    """

    def __init__(self, config: TextDecoderConfig) -> None:
        super().__init__()
        if not isinstance(config, TextDecoderConfig):
            raise TypeError(
                f"SiglipTextDecoder: config must be a TextDecoderConfig, got {type(config).__name__}"
            )
        self.config = config
        self.token_embedding = nn.Embedding(config.input_vocab_size, config.width)
        self.position_embedding = nn.Embedding(config.max_length, config.width)
        self.image_projection: nn.Module = (
            nn.Identity()
            if config.image_width == config.width
            else nn.Linear(config.image_width, config.width)
        )
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.depth))
        self.final_layer_norm = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.head = nn.Linear(config.width, config.vocab_size)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Xavier-uniform dense kernels and zero biases (as the towers), normal(1/sqrt(width))
        embeddings, unit LayerNorms, and a zero head (CapPa: the first loss is log(vocab))."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=self.config.width**-0.5)
        nn.init.zeros_(self.head.weight)

    # ------------------------------------------------------------ checks
    def _check_inputs(
        self,
        tokens: torch.Tensor,
        image_tokens: torch.Tensor,
        parallel: torch.Tensor | bool | None,
        image_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Validate the arguments and return ``parallel`` as a ``[batch]`` bool tensor."""
        config = self.config
        if not isinstance(tokens, torch.Tensor) or not _is_integer(tokens.dtype):
            got = tokens.dtype if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise TypeError(f"tokens: expected an integer tensor [batch, length], got {got}")
        if tokens.dim() != 2:
            raise ValueError(
                f"tokens: expected rank 2 [batch, length], got shape {tuple(tokens.shape)}"
            )
        batch, length = tokens.shape
        if not 1 <= length <= config.max_length:
            raise ValueError(
                f"tokens: expected a length in [1, max_length={config.max_length}], got shape "
                f"{tuple(tokens.shape)}"
            )
        # Values are checked where that costs no device synchronisation.
        if tokens.device.type == "cpu" and tokens.numel():
            low, high = int(tokens.min()), int(tokens.max())
            if low < 0 or high >= config.vocab_size:
                raise ValueError(
                    f"tokens: expected ids in [0, vocab_size={config.vocab_size}), got ids in "
                    f"[{low}, {high}] (the mask and begin rows are inputs the decoder writes itself)"
                )
        if not isinstance(image_tokens, torch.Tensor) or not image_tokens.is_floating_point():
            got = (
                image_tokens.dtype
                if isinstance(image_tokens, torch.Tensor)
                else type(image_tokens).__name__
            )
            raise TypeError(
                f"image_tokens: expected a floating tensor [batch, patches, image_width], got {got}"
            )
        if image_tokens.dim() != 3 or image_tokens.shape[-1] != config.image_width:
            raise ValueError(
                f"image_tokens: expected [batch, patches, {config.image_width}] (the un-pooled "
                f"tokens of the image tower), got shape {tuple(image_tokens.shape)}"
            )
        if image_tokens.shape[0] != batch or image_tokens.shape[1] == 0:
            raise ValueError(
                f"image_tokens: expected batch {batch} (of tokens) and at least one patch, got "
                f"shape {tuple(image_tokens.shape)}"
            )
        if image_mask is not None:
            if not isinstance(image_mask, torch.Tensor) or image_mask.dtype != torch.bool:
                raise TypeError(
                    "image_mask: expected a bool tensor [batch, patches] (True = attend)"
                )
            if tuple(image_mask.shape) != tuple(image_tokens.shape[:2]):
                raise ValueError(
                    f"image_mask: expected shape {tuple(image_tokens.shape[:2])} ([batch, patches] "
                    f"of image_tokens), got {tuple(image_mask.shape)}"
                )
        if parallel is None or isinstance(parallel, bool):
            return torch.full((batch,), bool(parallel), dtype=torch.bool, device=tokens.device)
        if not isinstance(parallel, torch.Tensor) or parallel.dtype != torch.bool:
            raise TypeError(
                "parallel: expected None, a bool or a bool tensor [batch] (True = parallel "
                f"prediction), got {getattr(parallel, 'dtype', type(parallel).__name__)}"
            )
        if tuple(parallel.shape) != (batch,):
            raise ValueError(
                f"parallel: expected shape ({batch},) (one flag per example), got "
                f"{tuple(parallel.shape)}"
            )
        return parallel.to(tokens.device)

    # ------------------------------------------------------------ forward
    def sample_parallel(
        self,
        batch: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | None = None,
    ) -> torch.Tensor:
        """``[batch]`` bool flags, each True with ``config.parallel_probability``.

        Examples:
            >>> import torch
            >>> from siglip_models import TextDecoderConfig, get_config
            >>> from siglip_models.torch import SiglipTextDecoder
            >>> config = TextDecoderConfig.from_siglip(
            ...     get_config("tiny-test"), parallel_probability=1.0
            ... )
            >>> SiglipTextDecoder(config).sample_parallel(3)
            tensor([True, True, True])
        """
        draws = torch.rand(batch, generator=generator, device=device)
        return draws < self.config.parallel_probability

    def hidden_states(
        self,
        tokens: torch.Tensor,
        image_tokens: torch.Tensor,
        *,
        parallel: torch.Tensor | bool | None = None,
        image_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final-LayerNorm states ``[batch, length, width]``, before the vocabulary head.

        For a vocabulary-chunked loss: ``chunked_token_cross_entropy(hidden, decoder.head.weight,
        tokens, weights=..., vocab_bias=decoder.head.bias, chunk_size=...)``. Arguments as
        :meth:`forward`.
        """
        parallel_flags = self._check_inputs(tokens, image_tokens, parallel, image_mask)
        config = self.config
        batch, length = tokens.shape
        begin = torch.full((batch, 1), config.begin_id, dtype=tokens.dtype, device=tokens.device)
        shifted = torch.cat([begin, tokens[:, :-1]], dim=1)
        inputs = torch.where(parallel_flags[:, None], config.mask_id, shifted)
        dtype = self.final_layer_norm.weight.dtype
        states = (self.token_embedding(inputs) + self.position_embedding.weight[:length]).to(dtype)
        image = self.image_projection(image_tokens.to(dtype))
        causal = torch.ones(length, length, dtype=torch.bool, device=tokens.device).tril()
        # [batch, 1, length, length]: causal rows for causal examples, all True for parallel ones.
        self_mask = (causal | parallel_flags[:, None, None])[:, None]
        cross_mask = None if image_mask is None else image_mask[:, None, None, :]
        for layer in self.layers:
            states = layer(states, image, self_mask, cross_mask)
        out: torch.Tensor = self.final_layer_norm(states)
        return out

    def forward(
        self,
        tokens: torch.Tensor,
        image_tokens: torch.Tensor,
        *,
        parallel: torch.Tensor | bool | None = None,
        image_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``[batch, length, vocab_size]``; ``logits[:, i]`` predicts ``tokens[:, i]``.

        Args:
            tokens: ``[batch, length]`` integer target ids in ``[0, vocab_size)``, ``length <=
                max_length`` (pad as the tokenizer does; the loss weights pads 0).
            image_tokens: ``[batch, patches, image_width]`` un-pooled image-tower tokens (after
                the final LayerNorm, before the MAP head: ``SiglipModel.encode_image_patches``).
            parallel: ``[batch]`` bool (True = parallel prediction), a bool for the whole batch,
                or None (causal).
            image_mask: ``[batch, patches]`` bool, True for the image tokens to attend to
                (NaFlex padding is False); None attends to all.

        Returns:
            ``[batch, length, vocab_size]`` logits in the parameters' dtype.

        Raises:
            TypeError: ``tokens`` not an integer tensor, ``image_tokens`` not floating,
                ``parallel``/``image_mask`` not bool.
            ValueError: ``tokens`` not ``[batch, length]`` with ``1 <= length <= max_length`` or
                holding ids outside ``[0, vocab_size)`` (checked on CPU), ``image_tokens`` not
                ``[batch, patches, image_width]`` with the tokens' batch, ``parallel`` not
                ``[batch]``, ``image_mask`` not ``[batch, patches]``.
        """
        logits: torch.Tensor = self.head(
            self.hidden_states(tokens, image_tokens, parallel=parallel, image_mask=image_mask)
        )
        return logits

    @torch.no_grad()
    def generate(
        self,
        image_tokens: torch.Tensor,
        prefix: torch.Tensor,
        *,
        max_new_tokens: int,
        eos_id: int | None = None,
        image_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Greedy causal decoding after a prefix (e.g. the LocCa task prompt ``"ARef: cat :"``).

        Each new token is the argmax of the causal logits at its position, so the result equals
        the argmax of a teacher-forced :meth:`forward` of itself at every generated position.
        After ``eos_id`` an example's remaining positions are ``eos_id``; decoding stops early
        once every example has emitted it (the shape stays fixed).

        Args:
            image_tokens: ``[batch, patches, image_width]`` un-pooled image tokens.
            prefix: ``[batch, prefix_length]`` integer ids (``prefix_length`` may be 0).
            max_new_tokens: tokens to generate (>= 1); ``prefix_length + max_new_tokens`` must
                not exceed ``max_length``.
            eos_id: the end-of-sequence id, or None to always generate ``max_new_tokens``.
            image_mask: as in :meth:`forward`.

        Returns:
            ``[batch, prefix_length + max_new_tokens]`` ids: the prefix, then the generated ones.

        Raises:
            TypeError: ``prefix`` not an integer tensor, or ``max_new_tokens`` not an int.
            ValueError: ``max_new_tokens < 1``, a prefix longer than ``max_length -
                max_new_tokens`` (the task prefix must leave room for the answer), ``eos_id``
                outside the vocabulary, and the errors of :meth:`forward`.

        Examples:
            >>> import torch
            >>> from siglip_models import TextDecoderConfig, get_config
            >>> from siglip_models.torch import SiglipTextDecoder
            >>> config = TextDecoderConfig.from_siglip(get_config("tiny-test"), max_length=8)
            >>> decoder = SiglipTextDecoder(config)
            >>> decoder.generate(
            ...     torch.zeros(1, 4, config.image_width), torch.tensor([[5, 6]]), max_new_tokens=3
            ... ).tolist()  # a zero-initialised head predicts id 0 everywhere
            [[5, 6, 0, 0, 0]]
        """
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
            raise TypeError(
                f"max_new_tokens: expected a positive int, got {type(max_new_tokens).__name__}"
            )
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens: expected a positive int, got {max_new_tokens}")
        if not isinstance(prefix, torch.Tensor) or not _is_integer(prefix.dtype):
            got = prefix.dtype if isinstance(prefix, torch.Tensor) else type(prefix).__name__
            raise TypeError(f"prefix: expected an integer tensor [batch, prefix_length], got {got}")
        if prefix.dim() != 2:
            raise ValueError(
                f"prefix: expected rank 2 [batch, prefix_length], got shape {tuple(prefix.shape)}"
            )
        limit = self.config.max_length
        if prefix.shape[1] + max_new_tokens > limit:
            raise ValueError(
                f"prefix: {prefix.shape[1]} tokens + max_new_tokens={max_new_tokens} exceed "
                f"max_length={limit}: the task prefix must leave room for the answer"
            )
        if eos_id is not None and not 0 <= eos_id < self.config.vocab_size:
            raise ValueError(
                f"eos_id: expected an id in [0, vocab_size={self.config.vocab_size}), got {eos_id}"
            )
        batch, start = prefix.shape
        sequence = torch.cat(
            [prefix, prefix.new_zeros(batch, max_new_tokens)], dim=1
        )  # the zeros are placeholders: causal positions never see what follows them
        finished = torch.zeros(batch, dtype=torch.bool, device=prefix.device)
        for position in range(start, start + max_new_tokens):
            logits = self(sequence[:, : position + 1], image_tokens, image_mask=image_mask)
            chosen = logits[:, position].argmax(dim=-1).to(sequence.dtype)
            if eos_id is not None:
                chosen = torch.where(finished, eos_id, chosen)
                finished = finished | (chosen == eos_id)
            sequence[:, position] = chosen
            if eos_id is not None and bool(finished.all()):
                sequence[:, position + 1 :] = eos_id
                break
        return sequence
