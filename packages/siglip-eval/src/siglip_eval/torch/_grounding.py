"""Referring expressions with a LocCa decoder: generate the box for a name (PyTorch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


@torch.no_grad()
def generate_boxes(
    decoder: Any,
    image_tokens: torch.Tensor,
    names: Sequence[str],
    tokenizer: Any,
    *,
    image_size: int,
    bins: int = 100,
    max_new_tokens: int = 10,
) -> list[tuple[float, float, float, float] | None]:
    """Greedy-decode ``"ARef: {name} :"`` -> box text for each image, parsed back to pixels.

    Args:
        decoder: a ``siglip_models.torch.SiglipTextDecoder`` (its ``generate``).
        image_tokens: ``[batch, patches, width]`` the images' un-pooled patch tokens.
        names: one object name per image.
        tokenizer: a ``siglip_data.SentencePieceTokenizer`` (``encode_pieces``, ``decode``,
            ``eos_id``), the one the decoder was trained with.
        image_size: the canvas side the boxes refer to.
        bins: box quantisation bins (as in training).
        max_new_tokens: tokens generated after the prompt.

    Returns:
        Per image ``(x0, y0, x1, y1)`` in pixels, or None when the text is not a box.

    Raises:
        ValueError: ``names`` and ``image_tokens`` differ in length.
    """
    from siglip_data.grounding import locca_prompts
    from siglip_data.grounding import text_to_box

    if len(names) != len(image_tokens):
        raise ValueError(f"{len(names)} names for {len(image_tokens)} images")
    dummy_box = [0, 0, image_size, image_size]
    prompts = [
        locca_prompts("", name, dummy_box, image_size=image_size, bins=bins)["aref"][0]
        for name in names
    ]
    prefixes = tokenizer.encode_pieces(prompts)
    results: list[tuple[float, float, float, float] | None] = [None] * len(names)
    # generate() takes one prefix length per call: group the prompts by length.
    by_length: dict[int, list[int]] = {}
    for index, prefix in enumerate(prefixes):
        by_length.setdefault(len(prefix), []).append(index)
    for length, indices in by_length.items():
        prefix = torch.tensor([prefixes[i] for i in indices], dtype=torch.long)
        new_tokens = min(max_new_tokens, decoder.config.max_length - length)
        generated = decoder.generate(
            image_tokens[indices], prefix.to(image_tokens.device),
            max_new_tokens=new_tokens, eos_id=tokenizer.eos_id,
        )  # fmt: skip
        for row, index in enumerate(indices):
            answer = generated[row, length:].tolist()
            if tokenizer.eos_id in answer:
                answer = answer[: answer.index(tokenizer.eos_id)]
            (text,) = tokenizer.decode([[*answer, tokenizer.eos_id]])
            try:
                results[index] = text_to_box(text, image_size=image_size, bins=bins)
            except ValueError:
                results[index] = None
    return results
