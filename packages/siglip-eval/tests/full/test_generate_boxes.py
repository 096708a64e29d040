"""generate_boxes: the LocCa decoder's referring-expression answers parsed back to boxes."""

from __future__ import annotations

from pathlib import Path

import torch

import siglip_data
from siglip_eval.torch import generate_boxes


def test_generate_boxes_parses_what_the_decoder_emits(tmp_path: Path) -> None:
    from siglip_models import TextDecoderConfig
    from siglip_models import get_config
    from siglip_models.torch import SiglipTextDecoder

    corpus = ["ARef: cat face :", "ARef: sneaker :", " ".join(str(v) for v in range(100))] * 30
    siglip_data.train_sentencepiece(corpus, str(tmp_path / "t.model"), vocab_size=32)
    tokenizer = siglip_data.SentencePieceTokenizer(str(tmp_path / "t.model"), length=16)
    torch.manual_seed(0)
    config = TextDecoderConfig.from_siglip(
        get_config("tiny-test"), max_length=48, vocab_size=tokenizer.vocab_size
    )
    decoder = SiglipTextDecoder(config).eval()
    # Force the answer "12 20 40 52" + EOS whatever the image: logits by position only.
    answer = tokenizer.encode_pieces(["12 20 40 52"])[0] + [tokenizer.eos_id]
    names = ["cat face", "cat face"]
    prefix_lengths = [len(p) for p in tokenizer.encode_pieces([f"ARef: {n} :" for n in names])]
    table = torch.full((config.max_length, config.vocab_size), -10.0)
    for length in set(prefix_lengths):
        for offset, token in enumerate(answer):
            table[length + offset, token] = 10.0

    def positional_logits(tokens: torch.Tensor, *_: object, **__: object) -> torch.Tensor:
        return table[: tokens.shape[1]].expand(tokens.shape[0], -1, -1)

    decoder.forward = positional_logits  # type: ignore[method-assign]
    boxes = generate_boxes(
        decoder, torch.zeros(2, 4, config.image_width), names, tokenizer, image_size=64
    )
    expected = siglip_data.grounding.text_to_box("12 20 40 52", image_size=64)
    assert boxes == [expected, expected]
    table[:] = -10.0
    table[:, tokenizer.eos_id] = 10.0  # an empty answer is no box
    assert generate_boxes(
        decoder, torch.zeros(1, 4, 32), ["sneaker"], tokenizer, image_size=64
    ) == [None]
