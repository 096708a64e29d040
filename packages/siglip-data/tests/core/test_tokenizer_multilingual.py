"""Lowercasing modes, the Gemma-style SigLIP 2 preset, and multilingual SentencePiece training.

- ``lowercase="ascii"`` is big_vision's ``tf.strings.lower`` (A-Z only); ``"unicode"`` is
  transformers' ``normalizers.Lowercase`` (every character, one at a time): both are checked
  against an independent definition for any text.
- The ``siglip2`` preset gives ``[ids..., eos=1, pad=0, ...]`` at length 64 with a sticky EOS
  (golden rows on a Gemma-style model trained here) and equals transformers' ``Siglip2Tokenizer``
  and ``GemmaTokenizerFast`` built from the same model file, without the Hub.
- ``train_sentencepiece`` on a mapping language -> captions samples languages with a temperature.
"""

from __future__ import annotations

import json
import math
import shutil
import string
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sentencepiece
import transformers
from hypothesis import given
from hypothesis import strategies as st
from tokenizers import normalizers

import siglip_data
from siglip_data import SentencePieceTokenizer
from siglip_data._tokenizer import PRESETS
from siglip_data._tokenizer import canonicalize_text
from siglip_data._tokenizer import language_sample_counts
from siglip_data._tokenizer import lowercase_text

# Scripts whose case mappings have not changed for many Unicode versions, so Python's tables and
# the Rust ones inside `tokenizers` agree: Latin (with Turkish dotted I and sharp s), Greek
# (final sigma), Cyrillic, Armenian, and uncased scripts (Arabic, Devanagari, Thai, CJK).
MULTILINGUAL_ALPHABET = (
    string.ascii_letters
    + string.digits
    + " .,!?;:'\"()-/&%"
    + "".join(chr(c) for c in range(0x00C0, 0x0250))
    + "".join(chr(c) for c in range(0x0386, 0x03CF))
    + "".join(chr(c) for c in range(0x0400, 0x0460))
    + "".join(chr(c) for c in range(0x0531, 0x0557))
    + "مرحبا بالعالم नमस्ते दुनिया สวัสดีชาวโลก 你好世界 こんにちは"
)
multilingual_texts = st.text(alphabet=MULTILINGUAL_ALPHABET, max_size=60)

GREEK_SIGMA = "ΟΔΟΣ ΚΑΙ ΣΠΙΤΙ"


@given(text=st.text(max_size=80))
def test_ascii_lowercasing_changes_only_a_to_z_for_any_text(text: str) -> None:
    expected = "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)
    assert lowercase_text(text, "ascii") == expected


@given(text=multilingual_texts)
def test_unicode_lowercasing_equals_transformers_lowercase_normalizer_for_any_text(
    text: str,
) -> None:
    assert lowercase_text(text, "unicode") == normalizers.Lowercase().normalize_str(text)


def test_the_modes_differ_outside_ascii_and_unicode_has_no_final_sigma_rule() -> None:
    text = "Ein FOTO: ÉTÉ, Собака, " + GREEK_SIGMA
    assert lowercase_text(text, "ascii") == "ein foto: ÉtÉ, Собака, " + GREEK_SIGMA
    assert lowercase_text(text, "unicode") == "ein foto: été, собака, οδοσ και σπιτι"
    assert GREEK_SIGMA.lower() == "οδος και σπιτι"  # Python's str.lower: final sigma
    assert lowercase_text(text, None) == text
    assert canonicalize_text("ΟΔΟΣ, ΚΑΙ!", lowercase="ascii") == "ΟΔΟΣ ΚΑΙ"
    assert canonicalize_text("ΟΔΟΣ, ΚΑΙ!", lowercase="unicode") == "οδοσ και"
    with pytest.raises(ValueError, match="lowercase must be 'ascii', 'unicode' or None"):
        lowercase_text("x", "upper")  # type: ignore[arg-type]


def test_tokenizer_lowercase_option_presets_and_aliases(spm_models: dict[str, Path]) -> None:
    model = spm_models["siglip2"]
    assert {name: preset.lowercase for name, preset in PRESETS.items()} == {
        "siglip": "unicode",
        "siglip-i18n": "unicode",
        "siglip2": "unicode",
    }
    default = SentencePieceTokenizer(model, preset="siglip2")
    assert default.lowercase == "unicode"
    assert default.normalize("ÉTÉ Ж") == "été ж"
    ascii_only = SentencePieceTokenizer(model, preset="siglip2", lowercase="ascii")
    assert ascii_only.normalize("ÉTÉ Ж Go") == "ÉtÉ Ж go"
    cased = SentencePieceTokenizer(model, preset="siglip2", lowercase=None)
    assert cased.normalize("ÉTÉ Go") == "ÉTÉ Go"
    # The earlier boolean argument keeps its meaning.
    assert SentencePieceTokenizer(model, preset="siglip2", lowercase=True).lowercase == "unicode"
    assert SentencePieceTokenizer(model, preset="siglip2", lowercase=False).lowercase is None
    assert "lowercase='ascii'" in repr(ascii_only)
    with pytest.raises(ValueError, match="lowercase must be 'ascii', 'unicode', None or 'preset'"):
        SentencePieceTokenizer(model, preset="siglip2", lowercase="upper")  # type: ignore[arg-type]
    # The modes change the ids exactly where the lowercased texts differ.
    assert np.array_equal(default(["A Cat"]), ascii_only(["A Cat"]))
    assert not np.array_equal(default(["ΕΝΑ ΣΚΥΛΙ"]), ascii_only(["ΕΝΑ ΣΚΥΛΙ"]))


# ------------------------------------------------------------------ the Gemma-style preset

GOLDEN_CAPTIONS = [
    "a photo of a cat",
    "a photo of a dog",
    "a photo of two cats on a red sofa",
    "ein Foto einer Katze",
    "une photo d'un chat",
    "Ένα σκυλί στο πάρκο",
    "Собака в парке",
] * 60


@pytest.fixture(scope="module")
def gemma_style_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("gemma-style")
    return siglip_data.train_sentencepiece(
        GOLDEN_CAPTIONS, directory / "tokenizer.model", vocab_size=400, preset="siglip2"
    )


def test_siglip2_rows_are_pieces_then_eos_1_then_pad_0_at_length_64(
    gemma_style_model: Path,
) -> None:
    tokenizer = SentencePieceTokenizer(gemma_style_model, preset="siglip2")
    processor = sentencepiece.SentencePieceProcessor(model_file=str(gemma_style_model))
    # Gemma's layout: <pad>=0, <eos>=1, <bos>=2, <unk>=3; no dummy prefix (a word after a space
    # carries the "▁").
    assert [processor.id_to_piece(i) for i in range(4)] == ["<pad>", "<eos>", "<bos>", "<unk>"]
    golden_pieces = ["a", "▁photo", "▁of", "▁a", "▁cat"]
    assert processor.encode("a photo of a cat", out_type=str) == golden_pieces
    golden_ids = [processor.piece_to_id(piece) for piece in golden_pieces]
    row = tokenizer(["A Photo of a CAT"])[0].tolist()
    assert len(row) == tokenizer.length == 64
    assert row == [*golden_ids, 1] + [0] * 58
    assert 2 not in row  # no BOS
    tokenizer.check(tokenizer(["A Photo of a CAT"]))
    # Sticky EOS: a caption longer than 63 pieces keeps its first 63 and ends with EOS, no pad.
    long = tokenizer(["a photo of a cat " * 40])[0].tolist()
    assert long[-1] == 1
    assert 0 not in long
    assert long[:5] == golden_ids
    # The empty caption is EOS then padding.
    assert tokenizer([""])[0].tolist() == [1] + [0] * 63


def siglip2_tokenizer(model_file: Path, directory: Path) -> Any:
    """transformers' Siglip2Tokenizer over a local Gemma-style model (no Hub): the vocabulary and
    merges of the GemmaTokenizerFast that reads the same file, right padding and an EOS, as HF's
    conversion of the released checkpoints sets them."""
    shutil.copy(model_file, directory / "tokenizer.model")
    gemma = transformers.GemmaTokenizerFast.from_pretrained(
        str(directory), add_bos_token=False, add_eos_token=True, padding_side="right"
    )
    spec = json.loads(gemma._tokenizer.to_str())
    return transformers.Siglip2Tokenizer(
        vocab=spec["model"]["vocab"],
        merges=[tuple(merge) for merge in spec["model"]["merges"]],
        padding_side="right",
        add_bos_token=False,
        add_eos_token=True,
    ), gemma


@pytest.fixture(scope="module")
def hf_tokenizers(gemma_style_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return siglip2_tokenizer(gemma_style_model, tmp_path_factory.mktemp("hf-siglip2"))


def test_siglip2_golden_row_equals_transformers_siglip2_tokenizer(
    gemma_style_model: Path, hf_tokenizers: Any
) -> None:
    siglip2, _ = hf_tokenizers
    ours = SentencePieceTokenizer(gemma_style_model, preset="siglip2")
    texts = ["A Photo of a CAT", "ΕΝΑ ΣΚΥΛΙ ΣΤΟ ΠΑΡΚΟΣ", "a photo of a cat " * 40]
    expected = siglip2(
        texts, padding="max_length", truncation=True, max_length=64, return_tensors="np"
    )["input_ids"]
    np.testing.assert_array_equal(ours(texts), expected)


@given(batch=st.lists(multilingual_texts, min_size=1, max_size=4), length=st.integers(2, 24))
def test_unicode_mode_ids_equal_transformers_siglip2_tokenizer_for_any_multilingual_text(
    gemma_style_model: Path, hf_tokenizers: Any, batch: list[str], length: int
) -> None:
    siglip2, _ = hf_tokenizers
    ours = SentencePieceTokenizer(gemma_style_model, preset="siglip2", length=length)
    expected = siglip2(
        batch, padding="max_length", truncation=True, max_length=length, return_tensors="np"
    )["input_ids"]
    np.testing.assert_array_equal(ours(batch), expected)


@given(batch=st.lists(multilingual_texts, min_size=1, max_size=4), length=st.integers(2, 24))
def test_ascii_mode_ids_equal_big_vision_pipeline_for_any_multilingual_text(
    gemma_style_model: Path, hf_tokenizers: Any, batch: list[str], length: int
) -> None:
    # big_vision: lower (ASCII, tf.strings.lower) | tok(eos="sticky", bos="no"), the Gemma model.
    _, gemma = hf_tokenizers
    ours = SentencePieceTokenizer(
        gemma_style_model, preset="siglip2", length=length, lowercase="ascii"
    )
    lowered = ["".join(c.lower() if c in string.ascii_uppercase else c for c in t) for t in batch]
    expected = gemma(
        lowered, padding="max_length", truncation=True, max_length=length, return_tensors="np"
    )["input_ids"]
    np.testing.assert_array_equal(ours(batch), expected)


def test_a_model_whose_special_layout_contradicts_the_preset_is_rejected(
    tmp_path: Path, caption_factory: Any
) -> None:
    # EOS at 1 is right, but id 2 is "<s>" where Gemma has "<bos>".
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(caption_factory(500)),
        model_prefix=str(tmp_path / "almost"),
        vocab_size=150,
        pad_id=0,
        eos_id=1,
        eos_piece="<eos>",
        bos_id=2,
        unk_id=3,
        minloglevel=2,
    )
    with pytest.raises(ValueError, match=r"id 2 is '<s>', but preset 'siglip2' expects '<bos>'"):
        SentencePieceTokenizer(tmp_path / "almost.model", preset="siglip2")


# ------------------------------------------------------------------ multilingual training


@given(
    sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=6),
    temperature=st.sampled_from([0.5, 1.0, 2.0, 5.0, math.inf]),
    total=st.integers(0, 20000),
)
def test_language_counts_sum_to_total_and_follow_n_to_the_one_over_t(
    sizes: list[int], temperature: float, total: int
) -> None:
    languages = {f"l{i}": size for i, size in enumerate(sizes)}
    counts = language_sample_counts(languages, temperature=temperature, total=total)
    assert list(counts) == list(languages)
    assert sum(counts.values()) == total
    exponent = 0.0 if math.isinf(temperature) else 1.0 / temperature
    weights = np.array([size**exponent for size in sizes], dtype=np.float64)
    exact = weights / weights.sum() * total
    assert np.all(np.abs(np.array(list(counts.values())) - exact) < 1.0)


@given(
    sizes=st.lists(st.integers(1, 5000), min_size=2, max_size=6),
    temperatures=st.lists(
        st.sampled_from([0.5, 1.0, 2.0, 5.0, math.inf]), min_size=2, max_size=2, unique=True
    ),
)
def test_a_higher_temperature_never_shrinks_the_smallest_language_share(
    sizes: list[int], temperatures: list[float]
) -> None:
    low, high = sorted(temperatures)
    smallest = f"l{int(np.argmin(sizes))}"
    languages = {f"l{i}": size for i, size in enumerate(sizes)}
    total = 100_000
    share_low = language_sample_counts(languages, temperature=low, total=total)[smallest]
    share_high = language_sample_counts(languages, temperature=high, total=total)[smallest]
    assert share_high >= share_low - 1


def test_a_higher_temperature_gives_the_small_language_more_vocabulary(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    english_words = ["photo", "cat", "dog", "red", "small", "house", "tree", "car", "bird"]
    german_words = ["Katze", "Hund", "Baum", "Vogel", "Haus", "rotes", "kleiner", "Wagen"]
    english = [" ".join(rng.choice(english_words, 5)) for _ in range(3000)]
    german = [" ".join(rng.choice(german_words, 5)) for _ in range(60)]
    pieces_per_german_caption = {}
    for temperature in (1.0, math.inf):
        model = siglip_data.train_sentencepiece(
            {"en": english, "de": german},
            tmp_path / f"t{temperature}.model",
            vocab_size=300,
            preset="siglip2",
            language_temperature=temperature,
        )
        processor = sentencepiece.SentencePieceProcessor(model_file=str(model))
        lowered = [text.lower() for text in german]
        pieces_per_german_caption[temperature] = np.mean(
            [len(p) for p in processor.encode(lowered)]
        )
    assert pieces_per_german_caption[math.inf] < 0.8 * pieces_per_german_caption[1.0]


def test_multilingual_training_is_deterministic_and_rejects_bad_input(tmp_path: Path) -> None:
    captions = {"en": ["a red cat", "a dog"] * 50, "fr": ["un chat rouge"] * 10}
    first = siglip_data.train_sentencepiece(
        captions, tmp_path / "a.model", vocab_size=18, language_temperature=3.0
    )
    second = siglip_data.train_sentencepiece(
        captions, tmp_path / "b.model", vocab_size=18, language_temperature=3.0
    )
    assert first.read_bytes() == second.read_bytes()
    with pytest.raises(ValueError, match="language 'de' has no captions"):
        siglip_data.train_sentencepiece({**captions, "de": ["  "]}, tmp_path / "c.model")
    with pytest.raises(ValueError, match="language_temperature must be > 0"):
        siglip_data.train_sentencepiece(captions, tmp_path / "d.model", language_temperature=0)
    with pytest.raises(ValueError, match="language_temperature needs captions as a mapping"):
        siglip_data.train_sentencepiece(
            ["a cat"] * 20, tmp_path / "e.model", language_temperature=2.0
        )
    with pytest.raises(ValueError, match="lowercase must be"):
        siglip_data.train_sentencepiece(["a cat"] * 20, tmp_path / "f.model", lowercase="title")  # type: ignore[arg-type]


def test_training_lowercase_matches_the_tokenizer_mode(tmp_path: Path) -> None:
    captions = ["ΕΝΑ ΣΚΥΛΙ", "Ένα σκυλί", "A DOG", "a dog"] * 50
    cased = siglip_data.train_sentencepiece(
        captions, tmp_path / "ascii.model", vocab_size=290, preset="siglip2", lowercase="ascii"
    )
    processor = sentencepiece.SentencePieceProcessor(model_file=str(cased))
    pieces = {processor.id_to_piece(i) for i in range(processor.get_piece_size())}
    assert "Σ" in pieces  # ASCII lowercasing keeps Greek capitals in the corpus
    assert "D" not in pieces
