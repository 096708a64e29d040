"""What ``siglip-eval --model`` loads: the model folder, its tokenizer, its preprocessing, and a
content key for the embedding cache.

A siglip-train checkpoint (``step_<N>/``) holds the model in ``model/`` together with the
tokenizer it was trained with (``model/tokenizer.model``) and its preprocessing settings
(``model/siglip_preprocessing.json``: tokenizer preset, text length, image size, resample).
Evaluation uses them by default and refuses another tokenizer unless forced: a model read with
a different vocabulary gives garbage without any error.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

PREPROCESSING_FILE = "siglip_preprocessing.json"
TOKENIZER_FILE = "tokenizer.model"


class ModelLoadingError(ValueError):
    """``--model`` / ``--tokenizer`` name something that cannot be evaluated as asked."""


def resolve_model_directory(path: str | os.PathLike[str]) -> Path:
    """The HF model folder ``path`` names: itself, or the ``model/`` of a training checkpoint.

    Raises:
        ModelLoadingError: neither (the message says what was expected and what is there).
    """
    directory = Path(path)
    if (directory / "config.json").is_file():
        return directory
    if (directory / "model" / "config.json").is_file():
        return directory / "model"
    if (directory / "checkpoints").is_dir():
        steps = sorted(p.name for p in (directory / "checkpoints").glob("step_*"))
        hint = f" (did you mean {str(directory / 'checkpoints' / steps[-1])!r}?)" if steps else ""
        raise ModelLoadingError(
            f"--model: expected a model folder (config.json + model.safetensors) or a checkpoint "
            f"step_<N> folder, got the run folder {str(directory)!r}{hint}"
        )
    raise ModelLoadingError(
        f"--model: expected a model folder (config.json + model.safetensors) or a checkpoint "
        f"step_<N> folder, got {str(directory)!r}"
        + ("" if directory.exists() else ", which does not exist")
    )


def read_preprocessing(model_directory: Path) -> dict[str, Any] | None:
    """The checkpoint's ``siglip_preprocessing.json``, or ``None`` when it has none."""
    path = model_directory / PREPROCESSING_FILE
    if not path.is_file():
        return None
    try:
        settings = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ModelLoadingError(f"{str(path)!r} is not valid JSON: {error}") from None
    if not isinstance(settings, dict):
        raise ModelLoadingError(f"{str(path)!r}: expected a JSON object")
    return settings


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def choose_tokenizer(
    model_directory: Path,
    settings: dict[str, Any] | None,
    tokenizer: str | None,
    *,
    force: bool,
) -> tuple[Path, str | None]:
    """``(tokenizer file, preset or None)``: the checkpoint's unless another is given (and forced).

    Raises:
        ModelLoadingError: no tokenizer at all, or one that differs from the checkpoint's
            without ``force``.
    """
    saved = model_directory / str((settings or {}).get("tokenizer", TOKENIZER_FILE))
    has_saved = settings is not None and saved.is_file()
    if tokenizer is None:
        if not has_saved:
            raise ModelLoadingError(
                "--tokenizer: expected a SentencePiece .model file (this model folder carries "
                "no tokenizer of its own), got none"
            )
        return saved, str(settings.get("tokenizer_preset")) if settings else None
    given = Path(tokenizer)
    if not given.is_file():
        raise ModelLoadingError(
            f"--tokenizer: expected a file, got {tokenizer!r}, which does not exist"
        )
    if has_saved and sha256_of(given) != sha256_of(saved) and not force:
        raise ModelLoadingError(
            f"--tokenizer {tokenizer!r} differs from the tokenizer the model was trained with "
            f"({str(saved)!r}): token ids would mean other words and the results would be "
            "garbage. Leave --tokenizer out to use the model's, or pass --force-tokenizer"
        )
    return given, None


def content_key(model_directory: Path, tokenizer_file: Path, **preprocessing: Any) -> str:
    """A cache key from what determines the embeddings: weights, tokenizer, preprocessing.

    Overwriting the weights at the same path changes the key, so stale embeddings are never used.
    """
    digest = hashlib.sha256()
    for file in [*sorted(model_directory.glob("*.safetensors")), model_directory / "config.json"]:
        if file.is_file():
            digest.update(file.name.encode())
            digest.update(sha256_of(file).encode())
    digest.update(sha256_of(tokenizer_file).encode())
    digest.update(json.dumps(preprocessing, sort_keys=True, default=str).encode())
    return f"{model_directory.parent.name}-{model_directory.name}-{digest.hexdigest()[:20]}"


def data_key(spec: str, *paths: str | None) -> str:
    """A short hash of a dataset's files (names, sizes, modification times) for the cache key."""
    digest = hashlib.sha256(spec.encode())
    for given in paths:
        if not given:
            continue
        root = Path(given)
        if not root.exists() and any(mark in given for mark in "{*?["):
            from siglip_data import resolve_shards

            try:
                for shard in resolve_shards(given):
                    if Path(shard).is_file():
                        stat = Path(shard).stat()
                        digest.update(f"{shard}:{stat.st_size}:{stat.st_mtime_ns}".encode())
            except ValueError:
                pass
            continue
        candidates = (
            [root]
            if root.is_file()
            else sorted(p for p in root.rglob("*") if p.is_file())
            if root.is_dir()
            else []
        )
        for file in candidates:
            stat = file.stat()
            digest.update(f"{file}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]
