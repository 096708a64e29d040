"""SentencePieceTokenizer: fixed length, sticky EOS, presets, canonicalization, HF parity."""

from __future__ import annotations

import pickle
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

import siglip_data
from siglip_data import SentencePieceTokenizer
from siglip_data._tokenizer import DynamicPaddingWarning
from siglip_data._tokenizer import canonicalize_text

# No '<' / '>' (HF splits "</s>" typed in text as a special token) and no '▁'.
TEXT_ALPHABET = (
    string.ascii_letters
    + string.digits
    + " .,!?;:'\"()-_/&%#@*+=[]{}|~`^$\\\t\n"
    + "éÉßøÅ日本語ümoji"
)
texts = st.text(alphabet=TEXT_ALPHABET, max_size=80)


def raw_pieces(model_file: Path, text: str) -> list[int]:
    """Independent oracle: plain sentencepiece on the lowercased text."""
    processor = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    return list(processor.encode(text.lower()))


@given(batch=st.lists(texts, min_size=1, max_size=6), length=st.integers(2, 24))
def test_rows_are_first_l_minus_1_pieces_then_eos_then_pad_for_any_text(
    spm_models: dict[str, Path], batch: list[str], length: int
) -> None:
    for preset, pad_id in (("siglip", 1), ("siglip2", 0)):
        tok = SentencePieceTokenizer(spm_models[preset], preset=preset, length=length)
        ids = tok(batch)
        assert ids.dtype == np.int32
        assert ids.shape == (len(batch), length)
        for row, text in zip(ids, batch):
            pieces = raw_pieces(spm_models[preset], text)[: length - 1]
            expected = [*pieces, 1] + [pad_id] * (length - 1 - len(pieces))
            assert row.tolist() == expected
        assert tok.check(ids)


def test_short_and_long_captions_follow_big_vision_sticky_eos(spm_models: dict[str, Path]) -> None:
    # big_vision ops_text.py docstring, max_len=3: "a" -> [a, eos, pad], "aaa..." -> [a, a, eos].
    tok = SentencePieceTokenizer(spm_models["siglip"], preset="siglip", length=3)
    (first,) = raw_pieces(spm_models["siglip"], "ka")[:1]
    short, long = tok(["ka", "ka " * 20])
    assert short.tolist() == [first, 1, 1]
    assert long[-1] == 1
    assert long[0] == first


def test_presets_have_the_families_pad_and_eos_ids(spm_models: dict[str, Path]) -> None:
    siglip = SentencePieceTokenizer(spm_models["siglip"], preset="siglip")
    siglip2 = SentencePieceTokenizer(spm_models["siglip2"], preset="siglip2")
    assert (siglip.pad_id, siglip.eos_id, siglip.length) == (1, 1, 64)
    assert (siglip2.pad_id, siglip2.eos_id) == (0, 1)
    assert (siglip.vocab_size, siglip2.vocab_size) == (128, 400)
    empty = siglip2([""])
    assert empty.tolist() == [[1] + [0] * 63]  # no BOS: the EOS comes first
    assert siglip2.preset.pieces[2] == (2, "<bos>")
    processor = sentencepiece.SentencePieceProcessor(model_file=str(spm_models["siglip2"]))
    assert [processor.id_to_piece(i) for i in range(4)] == ["<pad>", "<eos>", "<bos>", "<unk>"]
    processor = sentencepiece.SentencePieceProcessor(model_file=str(spm_models["siglip"]))
    assert [processor.id_to_piece(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]


def test_lowercase_and_canonicalize(spm_models: dict[str, Path]) -> None:
    plain = SentencePieceTokenizer(spm_models["siglip"], length=32)
    canonical = SentencePieceTokenizer(spm_models["siglip"], length=32, canonicalize=True)
    cased = SentencePieceTokenizer(spm_models["siglip"], length=32, lowercase=False)
    assert plain.normalize("KaTo, Mi!") == "kato, mi!"
    assert canonical.normalize("  KaTo,   Mi! ") == "kato mi"
    assert cased.normalize("KaTo") == "KaTo"
    np.testing.assert_array_equal(canonical(["KA-TO!!  mi"]), plain(["kato mi"]))
    assert canonicalize_text("A  photo; of a DOG.") == "a photo of a dog"


@given(text=texts)
def test_canonicalize_is_idempotent_and_has_no_punctuation(text: str) -> None:
    once = canonicalize_text(text)
    assert canonicalize_text(once) == once
    assert not set(once) & set(string.punctuation)
    assert once == once.strip()
    assert "  " not in once


@given(
    batch=st.lists(
        texts.filter(lambda t: t.strip(string.punctuation + " \t\n")), min_size=1, max_size=4
    )
)
def test_ids_equal_transformers_siglip_tokenizer_on_the_same_model_for_any_text(
    spm_models: dict[str, Path], batch: list[str]
) -> None:
    hf = transformers.SiglipTokenizer(str(spm_models["siglip"]), model_max_length=16)
    ours = SentencePieceTokenizer(
        spm_models["siglip"], preset="siglip", length=16, canonicalize=True
    )
    expected = hf(batch, padding="max_length", truncation=True, max_length=16, return_tensors="np")
    np.testing.assert_array_equal(ours(batch), expected["input_ids"])


@given(batch=st.lists(texts, min_size=1, max_size=4), length=st.integers(2, 20))
def test_siglip2_ids_equal_transformers_gemma_tokenizer_on_the_same_model_for_any_text(
    spm_models: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
    batch: list[str],
    length: int,
) -> None:
    # SigLIP 2's HF conversion: GemmaTokenizerFast(add_bos_token=False, add_eos_token=True,
    # padding_side="right") on lowercased text, padding="max_length", truncation=True.
    gemma = gemma_tokenizer(transformers, spm_models["siglip2"], tmp_path_factory)
    ours = SentencePieceTokenizer(spm_models["siglip2"], preset="siglip2", length=length)
    expected = gemma(
        [text.lower() for text in batch],
        padding="max_length",
        truncation=True,
        max_length=length,
        return_tensors="np",
    )
    np.testing.assert_array_equal(ours(batch), expected["input_ids"])


_GEMMA_CACHE: dict[Path, object] = {}


def gemma_tokenizer(transformers: Any, model_file: Path, factory: pytest.TempPathFactory) -> Any:
    if model_file not in _GEMMA_CACHE:
        directory = factory.mktemp("gemma")
        shutil.copy(model_file, directory / "tokenizer.model")
        _GEMMA_CACHE[model_file] = transformers.GemmaTokenizerFast.from_pretrained(
            str(directory), add_bos_token=False, add_eos_token=True, padding_side="right"
        )
    return _GEMMA_CACHE[model_file]


def test_check_token_ids_rejects_dynamic_padding_wrong_pad_and_left_padding() -> None:
    good = np.array([[7, 8, 1, 1], [7, 8, 9, 1]])
    assert siglip_data.check_token_ids(good, length=4, pad_id=1, eos_id=1)
    with pytest.raises(siglip_data.DynamicPaddingError, match="width 3"):
        siglip_data.check_token_ids(good[:, :3], length=4, pad_id=1, eos_id=1)
    with pytest.raises(siglip_data.DynamicPaddingError, match="after its EOS"):
        siglip_data.check_token_ids([[7, 1, 0, 0]], length=4, pad_id=1, eos_id=1)
    with pytest.raises(siglip_data.DynamicPaddingError, match="no EOS"):
        siglip_data.check_token_ids([[7, 8, 9, 10]], length=4, pad_id=1, eos_id=1)
    with pytest.raises(siglip_data.DynamicPaddingError, match="left padding"):
        siglip_data.check_token_ids([[5, 1, 0, 0], [0, 0, 7, 1]], length=4, pad_id=0, eos_id=1)
    with pytest.raises(siglip_data.DynamicPaddingError, match="after its EOS"):  # left, pad = eos
        siglip_data.check_token_ids([[1, 1, 7, 1]], length=4, pad_id=1, eos_id=1)
    with pytest.warns(DynamicPaddingWarning):
        assert not siglip_data.check_token_ids(
            good[:, :3], length=4, pad_id=1, eos_id=1, on_error="warn"
        )


def test_bad_arguments_raise_clear_errors(spm_models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="preset must be one of"):
        SentencePieceTokenizer(spm_models["siglip"], preset="clip")
    with pytest.raises(ValueError, match="length must be an int >= 2"):
        SentencePieceTokenizer(spm_models["siglip"], length=1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SentencePieceTokenizer(tmp_path / "missing.model")
    with pytest.raises(ValueError, match="needs preset 'siglip'"):  # T5 layout read as Gemma
        SentencePieceTokenizer(spm_models["siglip"], preset="siglip2")
    with pytest.raises(TypeError, match="must be a str"):
        SentencePieceTokenizer(spm_models["siglip"])([None])  # type: ignore[list-item]


def test_a_model_with_sentencepiece_default_ids_is_rejected(
    tmp_path: Path, caption_factory
) -> None:  # type: ignore[no-untyped-def]
    # sentencepiece's defaults are <unk>=0, <s>=1, </s>=2: id 1 would be BOS, not EOS.
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(caption_factory(500)),
        model_prefix=str(tmp_path / "default"),
        vocab_size=100,
        minloglevel=2,
    )
    with pytest.raises(ValueError, match="defines EOS id 2"):
        SentencePieceTokenizer(tmp_path / "default.model", preset="siglip")


def test_tokenizer_pickles_for_dataloader_workers(tokenizer: SentencePieceTokenizer) -> None:
    clone = pickle.loads(pickle.dumps(tokenizer))
    np.testing.assert_array_equal(clone(["kato mi ra"]), tokenizer(["kato mi ra"]))
    assert clone.decode(clone(["kato mi ra"])) == ["kato mi ra"]


def test_train_sentencepiece_is_deterministic_and_atomic(tmp_path: Path, caption_factory) -> None:  # type: ignore[no-untyped-def]
    captions = caption_factory(500, seed=1)
    first = siglip_data.train_sentencepiece(captions, tmp_path / "a.model", vocab_size=80)
    second = siglip_data.train_sentencepiece(captions, tmp_path / "b.model", vocab_size=80)
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.model", "b.model"]  # no temp files
    text_file = tmp_path / "captions.txt"
    text_file.write_text("\n".join(captions), encoding="utf-8")
    from_file = siglip_data.train_sentencepiece(text_file, tmp_path / "c.model", vocab_size=80)
    assert from_file.read_bytes() == first.read_bytes()
    with pytest.raises(ValueError, match="Vocabulary size too high"):
        siglip_data.train_sentencepiece(captions[:3], tmp_path / "d.model", vocab_size=5000)
    with pytest.raises(ValueError, match="captions is empty"):
        siglip_data.train_sentencepiece(["", "  "], tmp_path / "e.model")
    assert not (tmp_path / "d.model").exists()


def test_train_tokenizer_cli(tmp_path: Path, caption_factory) -> None:  # type: ignore[no-untyped-def]
    from siglip_data._cli import main

    text_file = tmp_path / "captions.txt"
    text_file.write_text("\n".join(caption_factory(400)), encoding="utf-8")
    output = tmp_path / "cli.model"
    assert (
        main(
            [
                "train-tokenizer",
                str(text_file),
                str(output),
                "--vocab-size",
                "300",
                "--preset",
                "siglip2",
            ]
        )
        == 0
    )
    tok = SentencePieceTokenizer(output, preset="siglip2", length=8)
    assert tok.vocab_size == 300
