"""SentencePiece tokenization with the SigLIP / SigLIP 2 conventions built in.

SigLIP's text tower has no attention mask and pools the LAST position (index L-1), so the token
ids must be right-padded to exactly the trained length L with the family's pad id, with a "sticky"
EOS (always kept, even after truncation). Getting any of this wrong silently degrades zero-shot
accuracy (big_vision #186, mteb #1424). This module makes those conventions the only behaviour.

Lowercasing has two definitions in the references, and they differ outside ASCII:

- ``"ascii"``: only ``A``-``Z`` become ``a``-``z``. big_vision's ``lower`` op is
  ``tf.strings.lower(text)`` whose default ``encoding=''`` means ASCII; its v1 ``tokenize`` op
  lowercases the same way. ``É``, ``Ж`` and ``Σ`` stay upper case.
- ``"unicode"``: every character's full Unicode lowercase mapping, one character at a time, as
  transformers' ``normalizers.Lowercase()`` (used by ``Siglip2Tokenizer``). Python's
  ``str.lower()`` agrees except that it writes a word-final capital sigma as ``ς``; this maps
  every ``Σ`` to ``σ``, as transformers does.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import re
import string
import warnings
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from typing import Literal

import numpy as np
import numpy.typing as npt
import sentencepiece

from siglip_data._atomic import atomic_write_bytes

_PUNCTUATION_TABLE = str.maketrans("", "", string.punctuation)
_WHITESPACE = re.compile(r"\s+")
_ASCII_LOWER_TABLE = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

Lowercase = Literal["ascii", "unicode"]
LOWERCASE_MODES: tuple[str, ...] = ("ascii", "unicode")


def lowercase_text(text: str, mode: Lowercase | None) -> str:
    """Lowercase ``text`` the way ``mode`` says: ``"ascii"``, ``"unicode"`` or None (unchanged).

    ``"ascii"`` maps only ``A``-``Z`` (big_vision's ``tf.strings.lower``); ``"unicode"`` maps every
    character to its full Unicode lowercase, one character at a time (transformers'
    ``normalizers.Lowercase``, so ``Σ`` always becomes ``σ``, also at the end of a word).

    Args:
        text: the caption.
        mode: ``"ascii"``, ``"unicode"`` or None.

    Returns:
        The lowercased text.

    Examples:
        >>> lowercase_text("Ein FOTO: Ωραίο ΣΠΙΤΙ, Собака", "ascii")
        'ein foto: Ωραίο ΣΠΙΤΙ, Собака'
        >>> lowercase_text("Ein FOTO: Ωραίο ΣΠΙΤΙ, Собака", "unicode")
        'ein foto: ωραίο σπιτι, собака'
        >>> lowercase_text("ΟΔΟΣ", "unicode"), "ΟΔΟΣ".lower()  # no final-sigma rule
        ('οδοσ', 'οδος')
    """
    if mode is None:
        return text
    if mode == "ascii":
        return text.translate(_ASCII_LOWER_TABLE)
    if mode == "unicode":
        return "".join(character.lower() for character in text)
    raise ValueError(f"lowercase must be 'ascii', 'unicode' or None, got {mode!r}")


def resolve_lowercase(value: object, preset_mode: Lowercase | None) -> Lowercase | None:
    """The lowercasing mode an argument asks for: ``"preset"`` -> the preset's, bools as aliases.

    ``True`` means ``"unicode"`` and ``False`` means None (the meaning of the earlier boolean
    argument).
    """
    if isinstance(value, str) and value == "preset":
        return preset_mode
    if value is True:
        return "unicode"
    if value is False or value is None:
        return None
    if value == "ascii":
        return "ascii"
    if value == "unicode":
        return "unicode"
    raise ValueError(
        f"lowercase must be 'ascii', 'unicode', None or 'preset' (the preset's mode), got {value!r}"
    )


@dataclasses.dataclass(frozen=True)
class TokenizerPreset:
    """The text conventions of one model family.

    Attributes:
        name: preset name, e.g. ``"siglip"``.
        pad_id: id written after the EOS up to the fixed length.
        eos_id: id appended after the text (kept on truncation: "sticky" EOS).
        lowercase: how the text is lowercased before tokenizing: ``"ascii"``, ``"unicode"`` or
            None (see :func:`lowercase_text`).
        pieces: the (id, piece) pairs a SentencePiece model of this family has; checked on load and
            used by ``train_sentencepiece`` to lay out the special ids.
    """

    name: str
    pad_id: int
    eos_id: int
    lowercase: Lowercase | None
    pieces: tuple[tuple[int, str], ...]


# Lowercasing: "unicode" for every preset, as transformers' tokenizers do (SiglipTokenizer:
# str.lower; Siglip2Tokenizer: normalizers.Lowercase). big_vision's pipelines lowercase ASCII
# only; which of the two SigLIP 2's training used is not published. docs/multilingual.md.
PRESETS: dict[str, TokenizerPreset] = {
    # T5 / c4_en SentencePiece layout (<pad>=0, </s>=1, <unk>=2); big_vision pads with the EOS id.
    "siglip": TokenizerPreset(
        name="siglip",
        pad_id=1,
        eos_id=1,
        lowercase="unicode",
        pieces=((0, "<pad>"), (1, "</s>"), (2, "<unk>")),
    ),
    # mC4 250k vocabulary: same special layout and padding as the English models.
    "siglip-i18n": TokenizerPreset(
        name="siglip-i18n",
        pad_id=1,
        eos_id=1,
        lowercase="unicode",
        pieces=((0, "<pad>"), (1, "</s>"), (2, "<unk>")),
    ),
    # Gemma layout (<pad>=0, <eos>=1, <bos>=2, <unk>=3); SigLIP 2 adds no BOS and pads with 0.
    "siglip2": TokenizerPreset(
        name="siglip2",
        pad_id=0,
        eos_id=1,
        lowercase="unicode",
        pieces=((0, "<pad>"), (1, "<eos>"), (2, "<bos>"), (3, "<unk>")),
    ),
}


def canonicalize_text(text: str, *, lowercase: bool | Lowercase | None = True) -> str:
    """Canonicalize a caption the way HF ``SiglipTokenizer`` and big_vision zero-shot prompts do.

    Lowercases (optionally), removes ASCII punctuation (``string.punctuation``), collapses runs of
    whitespace to one space and strips the ends.

    Args:
        text: the caption.
        lowercase: ``"ascii"``, ``"unicode"`` (or True) or None (or False): see
            :func:`lowercase_text`.

    Returns:
        The canonical text.

    Examples:
        >>> canonicalize_text("A photo of a  Dog!")
        'a photo of a dog'
    """
    text = lowercase_text(text, resolve_lowercase(lowercase, None))
    text = text.translate(_PUNCTUATION_TABLE)
    return _WHITESPACE.sub(" ", text).strip()


class DynamicPaddingError(ValueError):
    """Token ids that are not padded to the model's fixed length (SigLIP pools position L-1)."""


class DynamicPaddingWarning(UserWarning):
    """Warning form of :class:`DynamicPaddingError` (``on_error="warn"``)."""


def check_token_ids(
    token_ids: npt.ArrayLike,
    *,
    length: int,
    pad_id: int,
    eos_id: int,
    on_error: Literal["raise", "warn"] = "raise",
) -> bool:
    """Check that token ids follow the SigLIP fixed-length convention.

    SigLIP's text tower pools the last position and uses no attention mask, so a batch padded to
    its longest caption (``padding=True`` in transformers) gives different, worse embeddings.
    Each row must be ``[t_1 .. t_n, eos, pad, ..., pad]`` of width exactly ``length``.

    Args:
        token_ids: ``[batch, width]`` integer ids from any tokenizer.
        length: the trained text length L (64 for most checkpoints).
        pad_id: the family's pad id (1 for SigLIP, 0 for SigLIP 2).
        eos_id: the EOS id (1 for both families).
        on_error: ``"raise"`` a :class:`DynamicPaddingError` or ``"warn"`` with
            :class:`DynamicPaddingWarning` and return False.

    Returns:
        True when the ids follow the convention (False only with ``on_error="warn"``).

    Raises:
        DynamicPaddingError: wrong width, missing EOS, or non-pad ids after the EOS.

    Examples:
        >>> check_token_ids([[5, 6, 1, 1]], length=4, pad_id=1, eos_id=1)
        True
    """
    ids = np.asarray(token_ids)
    problem = None
    if ids.ndim != 2:
        problem = f"token_ids must be [batch, {length}], got shape {ids.shape}"
    elif ids.shape[1] != length:
        problem = (
            f"token_ids has width {ids.shape[1]} but the model was trained with length {length}: "
            "the batch was dynamically padded (or truncated). SigLIP pools the last position, so "
            f"pad every caption to exactly {length} tokens (transformers: padding='max_length', "
            f"max_length={length})"
        )
    else:
        for row_index, row in enumerate(ids):
            eos_positions = np.flatnonzero(row == eos_id)
            if eos_positions.size == 0:
                problem = f"row {row_index} has no EOS id {eos_id}: {row.tolist()}"
                break
            tail = row[eos_positions[0] + 1 :]
            if pad_id != eos_id and np.any(row[: eos_positions[0]] == pad_id):
                problem = (
                    f"row {row_index} has pad id {pad_id} before its EOS: {row.tolist()} "
                    "(left padding? SigLIP pads on the right)"
                )
                break
            if np.any(tail != pad_id):
                problem = (
                    f"row {row_index} has ids other than pad id {pad_id} after its EOS: "
                    f"{row.tolist()} (wrong pad id or left padding?)"
                )
                break
    if problem is None:
        return True
    if on_error == "raise":
        raise DynamicPaddingError(problem)
    if on_error == "warn":
        warnings.warn(problem, DynamicPaddingWarning, stacklevel=2)
        return False
    raise ValueError(f"on_error must be 'raise' or 'warn', got {on_error!r}")


class SentencePieceTokenizer:
    """Fixed-length SigLIP tokenizer over any SentencePiece ``.model`` file.

    ``tok(["a dog", ...])`` returns int32 ``[batch, length]``: the text is lowercased (per preset),
    optionally canonicalized (HF ``SiglipTokenizer`` strips punctuation), encoded without BOS,
    truncated to ``length - 1`` pieces, followed by the EOS id and right-padded with the pad id.
    Example for L = 4, SigLIP: ``"a b" -> [a, b, 1, 1]``, ``"a b c d" -> [a, b, c, 1]``.

    Args:
        model_file: path to a SentencePiece model (``spiece.model``, ``tokenizer.model``).
        preset: ``"siglip"`` (English c4, pad = eos = 1), ``"siglip-i18n"`` (mC4, pad = eos = 1)
            or ``"siglip2"`` (Gemma, pad 0, eos 1, no BOS).
        length: the fixed text length L the model was trained with (64; 16 for SigLIP So400m/14-224).
        canonicalize: also strip punctuation and collapse whitespace like HF ``SiglipTokenizer``
            (big_vision's zero-shot prompt canonicalization). Default False (the big_vision
            training/demo pipeline only lowercases).
        lowercase: ``"preset"`` (default: the preset's mode, ``"unicode"`` for every preset),
            ``"ascii"`` (only ``A``-``Z``, big_vision's ``tf.strings.lower``), ``"unicode"`` (every
            character, transformers' ``Siglip2Tokenizer``) or None (keep the case); see
            :func:`lowercase_text`. ``True`` / ``False`` mean ``"unicode"`` / None.
        num_threads: threads SentencePiece uses to encode a batch (1: the calling thread, which
            suits dataloader workers; -1: every core).

    Raises:
        FileNotFoundError: ``model_file`` does not exist.
        ValueError: unknown preset, ``length < 2``, an unknown ``lowercase``, or a model whose
            special pieces contradict the preset (e.g. a Gemma model loaded with
            ``preset="siglip"``).

    Examples:
        >>> import os
        >>> import tempfile
        >>> directory = tempfile.TemporaryDirectory()
        >>> captions = ["a photo of a cat", "a photo of a dog", "two birds in the snow"] * 50
        >>> model_file = train_sentencepiece(
        ...     captions, os.path.join(directory.name, "tiny.model"), vocab_size=20
        ... )
        >>> tokenizer = SentencePieceTokenizer(model_file, preset="siglip", length=8)
        >>> token_ids = tokenizer(["A CAT", "a photo of a dog in the snow"])
        >>> token_ids.shape, token_ids.dtype
        ((2, 8), dtype('int32'))
        >>> int(token_ids[0, -1]) == tokenizer.pad_id == 1  # right-padded with the pad id
        True
        >>> int(token_ids[1, -1]) == tokenizer.eos_id  # truncated, EOS kept
        True
        >>> tokenizer.decode(token_ids)[0]  # lowercased
        'a cat'
        >>> tokenizer.check(token_ids)  # the fixed-length convention holds
        True
        >>> directory.cleanup()
    """

    def __init__(
        self,
        model_file: str | os.PathLike[str],
        *,
        preset: str = "siglip",
        length: int = 64,
        canonicalize: bool = False,
        lowercase: Lowercase | Literal["preset"] | bool | None = "preset",
        num_threads: int = 1,
    ) -> None:
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
        if not isinstance(length, int) or length < 2:
            raise ValueError(
                f"length must be an int >= 2 (room for a token and EOS), got {length!r}"
            )
        path = Path(model_file)
        if not path.is_file():
            raise FileNotFoundError(f"model_file {str(path)!r} does not exist")
        self.preset = PRESETS[preset]
        self.model_file = path
        self._length = length
        self.canonicalize = canonicalize
        self.lowercase: Lowercase | None = resolve_lowercase(lowercase, self.preset.lowercase)
        self.num_threads = num_threads
        self._processor = sentencepiece.SentencePieceProcessor(model_file=str(path))
        self._check_model_matches_preset()

    def __getstate__(self) -> dict[str, object]:
        # SentencePieceProcessor does not pickle; ship the model bytes (DataLoader workers).
        state = self.__dict__.copy()
        state["_processor"] = self._processor.serialized_model_proto()
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        model_proto = state.pop("_processor")
        assert isinstance(model_proto, bytes)
        self.__dict__.update(state)
        self._processor = sentencepiece.SentencePieceProcessor(model_proto=model_proto)

    def _check_model_matches_preset(self) -> None:
        size = self._processor.get_piece_size()
        for token_id in (self.preset.pad_id, self.preset.eos_id):
            if token_id >= size:
                raise ValueError(
                    f"model_file {str(self.model_file)!r} has {size} pieces, too few for preset "
                    f"{self.preset.name!r} (needs id {token_id})"
                )
        model_eos = self._processor.eos_id()
        if model_eos >= 0 and model_eos != self.preset.eos_id:
            raise ValueError(
                f"model_file {str(self.model_file)!r} defines EOS id {model_eos} but preset "
                f"{self.preset.name!r} expects EOS id {self.preset.eos_id}: wrong preset for this "
                "vocabulary (train one with train_sentencepiece(..., preset=...))"
            )
        expected_eos = dict(self.preset.pieces)[self.preset.eos_id]
        actual_eos = self._processor.id_to_piece(self.preset.eos_id)
        if actual_eos != expected_eos:
            raise ValueError(
                f"model_file {str(self.model_file)!r}: id {self.preset.eos_id} is {actual_eos!r}, "
                f"but preset {self.preset.name!r} expects {expected_eos!r} there (a "
                f"{'Gemma' if actual_eos == '<eos>' else 'T5 / mC4'}-layout vocabulary needs preset "
                f"{'siglip2' if actual_eos == '<eos>' else 'siglip'!r})"
            )
        if not self._processor.is_control(self.preset.eos_id):
            raise ValueError(
                f"model_file {str(self.model_file)!r}: id {self.preset.eos_id} is the ordinary piece "
                f"{self._processor.id_to_piece(self.preset.eos_id)!r}, not an EOS control token as "
                f"preset {self.preset.name!r} expects"
            )
        # The whole special layout, pad included: a Gemma-style model must hold <pad>, <eos>,
        # <bos>, <unk> at 0-3, or padding with id 0 writes some other piece.
        layout = ", ".join(f"{piece}={token_id}" for token_id, piece in self.preset.pieces)
        for token_id, piece in self.preset.pieces:
            actual = self._processor.id_to_piece(token_id) if token_id < size else None
            if actual != piece:
                raise ValueError(
                    f"model_file {str(self.model_file)!r}: id {token_id} is {actual!r}, but preset "
                    f"{self.preset.name!r} expects {piece!r} there (its special layout is "
                    f"{layout}; train a model with train_sentencepiece(..., preset="
                    f"{self.preset.name!r}))"
                )

    @property
    def length(self) -> int:
        """The fixed output length L."""
        return self._length

    @property
    def vocab_size(self) -> int:
        """Number of pieces in the SentencePiece model (the text embedding's rows)."""
        return int(self._processor.get_piece_size())

    @property
    def pad_id(self) -> int:
        """Id written after the EOS."""
        return self.preset.pad_id

    @property
    def eos_id(self) -> int:
        """Id that ends every row (sticky)."""
        return self.preset.eos_id

    def normalize(self, text: str) -> str:
        """Apply the preset's text rules (lowercase, optional canonicalization) to one caption."""
        if not isinstance(text, str):
            raise TypeError(f"each text must be a str, got {type(text).__name__}: {text!r}")
        if self.canonicalize:
            return canonicalize_text(text, lowercase=self.lowercase)
        return lowercase_text(text, self.lowercase)

    def encode_pieces(self, texts: Sequence[str]) -> list[list[int]]:
        """Normalized texts -> unpadded SentencePiece ids (no BOS, no EOS, no truncation)."""
        normalized = [self.normalize(text) for text in texts]
        ids: list[list[int]] = self._processor.encode(normalized, num_threads=self.num_threads)
        return ids

    def __call__(self, texts: Sequence[str] | str) -> npt.NDArray[np.int32]:
        """Tokenize a batch.

        Args:
            texts: ``batch`` captions (a single str is treated as a batch of one).

        Returns:
            int32 ``[batch, length]`` ids: pieces[:length-1] + [eos] + [pad] * rest.
        """
        if isinstance(texts, str):
            texts = [texts]
        pieces = self.encode_pieces(texts)
        keep = self._length - 1
        token_ids = np.full((len(pieces), self._length), self.pad_id, dtype=np.int32)
        for row, row_pieces in enumerate(pieces):
            count = min(len(row_pieces), keep)
            token_ids[row, :count] = row_pieces[:count]
            token_ids[row, count] = self.eos_id
        return token_ids

    def decode(self, token_ids: npt.ArrayLike) -> list[str]:
        """``[batch, length]`` ids -> texts, dropping everything from the first EOS on."""
        ids = np.asarray(token_ids)
        if ids.ndim != 2:
            raise ValueError(f"token_ids must be [batch, length], got shape {ids.shape}")
        texts = []
        for row in ids:
            eos_positions = np.flatnonzero(row == self.eos_id)
            end = int(eos_positions[0]) if eos_positions.size else len(row)
            texts.append(self._processor.decode([int(i) for i in row[:end]]))
        return texts

    def check(
        self, token_ids: npt.ArrayLike, *, on_error: Literal["raise", "warn"] = "raise"
    ) -> bool:
        """:func:`check_token_ids` with this tokenizer's length, pad and EOS ids."""
        return check_token_ids(
            token_ids,
            length=self._length,
            pad_id=self.pad_id,
            eos_id=self.eos_id,
            on_error=on_error,
        )

    def __repr__(self) -> str:
        return (
            f"SentencePieceTokenizer({str(self.model_file)!r}, preset={self.preset.name!r}, "
            f"length={self._length}, canonicalize={self.canonicalize}, "
            f"lowercase={self.lowercase!r})"
        )


def language_sample_counts(
    sizes: Mapping[str, int], *, temperature: float, total: int
) -> dict[str, int]:
    """How many captions of each language a temperature-sampled corpus of ``total`` holds.

    ``q_l = n_l^(1/T) / sum_j n_j^(1/T)`` (mT5 / XLM-R; ``T = 1`` keeps the natural shares,
    ``T = inf`` makes them uniform); ``count_l = round(q_l * total)`` by largest remainder, so the
    counts sum to ``total``.

    Args:
        sizes: language -> number of captions available (each > 0).
        temperature: T > 0 (``math.inf`` for uniform).
        total: size of the sampled corpus.

    Returns:
        language -> number of captions to draw (in the order of ``sizes``).

    Raises:
        ValueError: no languages, a language without captions, or ``temperature <= 0``.

    Examples:
        >>> language_sample_counts({"en": 900, "de": 100}, temperature=1.0, total=1000)
        {'en': 900, 'de': 100}
        >>> language_sample_counts({"en": 900, "de": 100}, temperature=2.0, total=1000)
        {'en': 750, 'de': 250}
        >>> import math
        >>> language_sample_counts({"en": 900, "de": 100}, temperature=math.inf, total=1000)
        {'en': 500, 'de': 500}
    """
    if not sizes:
        raise ValueError("captions: expected at least one language, got an empty mapping")
    empty = [language for language, size in sizes.items() if size <= 0]
    if empty:
        raise ValueError(f"captions: language {empty[0]!r} has no captions")
    if not temperature > 0:  # also rejects NaN
        raise ValueError(f"language_temperature must be > 0 (math.inf: uniform), got {temperature}")
    exponent = 0.0 if math.isinf(temperature) else 1.0 / temperature
    weights = np.array([float(size) ** exponent for size in sizes.values()])
    exact = weights / weights.sum() * total
    counts = np.floor(exact).astype(np.int64)
    # Largest remainder; ties go to the earlier language (a stable sort).
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - int(counts.sum())]] += 1
    return {language: int(count) for language, count in zip(sizes, counts)}


def _sample_by_language(
    captions: Mapping[str, Sequence[str]], *, temperature: float, total: int, seed: int
) -> list[str]:
    """Draw the temperature-sampled corpus: each language's captions without replacement, then
    repeated whole (a small language is upsampled by repetition, a large one subsampled)."""
    counts = language_sample_counts(
        {language: len(texts) for language, texts in captions.items()},
        temperature=temperature,
        total=total,
    )
    rng = np.random.default_rng(seed)
    sampled: list[str] = []
    for language, count in counts.items():
        texts = captions[language]
        repeats, rest = divmod(count, len(texts))
        picks = [rng.permutation(len(texts)) for _ in range(repeats)]
        picks.append(rng.permutation(len(texts))[:rest])
        sampled += [texts[int(index)] for index in np.concatenate(picks)]
    return sampled


def train_sentencepiece(
    captions: Iterable[str] | str | os.PathLike[str] | Mapping[str, Iterable[str]],
    output_file: str | os.PathLike[str],
    *,
    vocab_size: int = 8000,
    preset: str = "siglip",
    model_type: Literal["unigram", "bpe"] | None = None,
    character_coverage: float = 0.9995,
    canonicalize: bool = False,
    lowercase: Lowercase | Literal["preset"] | bool | None = "preset",
    language_temperature: float = 1.0,
    max_sentences: int = 2_000_000,
    seed: int = 0,
) -> Path:
    """Train a SentencePiece model on captions with the special-id layout of a SigLIP family.

    The captions are normalized exactly as :class:`SentencePieceTokenizer` will normalize them
    (lowercase per preset or ``lowercase``, optional canonicalization), so no vocabulary is spent
    on upper case. The special pieces get the preset's ids (``siglip``: ``<pad>``=0, ``</s>``=1,
    ``<unk>``=2; ``siglip2``: ``<pad>``=0, ``<eos>``=1, ``<bos>``=2, ``<unk>``=3), so the resulting
    file loads with the same preset. ``siglip2`` models also follow Gemma's normalizer (BPE, no
    dummy prefix, no whitespace folding, byte fallback: ``vocab_size`` must exceed 260). The model
    is written atomically.

    Multilingual captions come as a mapping language -> captions. The training corpus then holds
    ``min(max_sentences, all captions)`` captions drawn with a temperature over languages:
    language l gets the share ``n_l^(1/T) / sum_j n_j^(1/T)`` of it (``n_l``: its captions, T:
    ``language_temperature``), as mT5 and XLM-R balance theirs. T = 1 keeps the natural shares, a
    larger T gives small languages more of the vocabulary, ``math.inf`` gives every language the
    same share. A language's captions are drawn without replacement and repeated when its share
    exceeds them.

    Args:
        captions: an iterable of captions, the path of a UTF-8 text file with one per line, or a
            mapping language -> captions.
        output_file: where to write the ``.model`` file.
        vocab_size: number of pieces, special pieces included.
        preset: the family whose conventions to follow: ``"siglip"``, ``"siglip-i18n"`` or
            ``"siglip2"`` (see :class:`SentencePieceTokenizer`).
        model_type: SentencePiece algorithm; None: ``"bpe"`` for ``siglip2`` (as Gemma),
            ``"unigram"`` otherwise (as the T5 / mC4 vocabularies).
        character_coverage: fraction of characters covered by the vocabulary.
        canonicalize: strip punctuation before training (pair with ``canonicalize=True`` later).
        lowercase: ``"preset"`` (the preset's mode), ``"ascii"``, ``"unicode"`` or None (train on
            cased text); pair it with the same ``lowercase`` on the tokenizer.
        language_temperature: T > 0 of the sampling over languages (mapping input only).
        max_sentences: at most this many captions are sampled for training.
        seed: seed of SentencePiece's sampling and of the language sampling (training is
            deterministic given it).

    Returns:
        The path of the written model.

    Raises:
        ValueError: unknown preset or ``lowercase``, no captions, a language without captions,
            ``language_temperature <= 0``, or a vocabulary too large for the corpus.

    Examples:
        >>> import os
        >>> import tempfile
        >>> directory = tempfile.TemporaryDirectory()
        >>> path = train_sentencepiece(
        ...     ["a dog", "a cat", "two dogs"] * 100,
        ...     os.path.join(directory.name, "tiny.model"),
        ...     vocab_size=12,
        ... )
        >>> path.name, SentencePieceTokenizer(path, length=4).vocab_size
        ('tiny.model', 12)
        >>> multilingual = {
        ...     "en": ["a dog", "a cat", "two dogs"] * 300,
        ...     "de": ["ein Hund", "eine Katze"] * 10,
        ... }
        >>> path = train_sentencepiece(
        ...     multilingual,
        ...     os.path.join(directory.name, "multilingual.model"),
        ...     vocab_size=300,
        ...     preset="siglip2",
        ...     language_temperature=3.0,
        ... )
        >>> tokenizer = SentencePieceTokenizer(path, preset="siglip2", length=8)
        >>> tokenizer.decode(tokenizer(["Eine KATZE"]))
        ['eine katze']
        >>> directory.cleanup()
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    family = PRESETS[preset]
    mode = resolve_lowercase(lowercase, family.lowercase)
    if language_temperature != 1.0 and not isinstance(captions, Mapping):
        raise ValueError(
            "language_temperature needs captions as a mapping language -> captions, got "
            f"{type(captions).__name__}"
        )
    raw_captions: Iterable[str]
    if isinstance(captions, (str, os.PathLike)):
        caption_path = Path(captions)
        if not caption_path.is_file():
            raise FileNotFoundError(f"captions file {str(caption_path)!r} does not exist")
        with caption_path.open(encoding="utf-8") as handle:
            raw_captions = [line.rstrip("\n") for line in handle]
    elif isinstance(captions, Mapping):
        by_language = {
            str(language): [text for text in texts if text.strip()]
            for language, texts in captions.items()
        }
        total = min(max_sentences, sum(len(texts) for texts in by_language.values()))
        raw_captions = _sample_by_language(
            by_language, temperature=language_temperature, total=total, seed=seed
        )
    else:
        raw_captions = captions

    def normalize(text: str) -> str:
        if canonicalize:
            return canonicalize_text(text, lowercase=mode)
        return lowercase_text(text, mode)

    sentences = [normalize(text) for text in raw_captions if text.strip()]
    if not sentences:
        raise ValueError("captions is empty: nothing to train a SentencePiece model on")

    special = dict(family.pieces)
    id_of = {piece: token_id for token_id, piece in family.pieces}
    unk_piece = next(piece for piece in special.values() if piece == "<unk>")
    eos_piece = special[family.eos_id]
    bos_piece = "<bos>" if "<bos>" in id_of else "<s>"
    options: dict[str, Any] = {
        "model_type": model_type or ("bpe" if preset == "siglip2" else "unigram"),
        "vocab_size": vocab_size,
        "character_coverage": character_coverage,
        "input_sentence_size": max_sentences,
        "shuffle_input_sentence": True,
        "pad_id": id_of["<pad>"],
        "pad_piece": "<pad>",
        "eos_id": family.eos_id,
        "eos_piece": eos_piece,
        "unk_id": id_of[unk_piece],
        "unk_piece": unk_piece,
        "bos_id": id_of.get(bos_piece, -1),
        "bos_piece": bos_piece,
        "minloglevel": 2,
        "num_threads": 1,
    }
    if preset == "siglip2":
        # Gemma's normalizer: text kept as is (no NFKC, no dummy "▁" prefix, spaces kept) and
        # unknown characters as UTF-8 bytes, so HF's GemmaTokenizerFast reads it identically.
        options |= {
            "normalization_rule_name": "identity",
            "add_dummy_prefix": False,
            "remove_extra_whitespaces": False,
            "byte_fallback": True,
        }
    model = io.BytesIO()
    sentencepiece.set_random_generator_seed(seed)
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=model, **options
        )
    except RuntimeError as error:
        raise ValueError(
            f"SentencePiece training failed for vocab_size={vocab_size} on {len(sentences)} "
            f"captions: {error} (adjust vocab_size as SentencePiece's message says)"
        ) from error
    return atomic_write_bytes(output_file, model.getvalue())
