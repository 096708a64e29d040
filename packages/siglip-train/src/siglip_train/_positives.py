"""Group ids for the multi-positive sigmoid loss (``loss.positives``), computed from a batch.

- ``"diagonal"``: none; each image's one positive is its own caption (the standard loss).
- ``"caption"``: identical captions are positives. The id of a row is a 64-bit BLAKE2b hash of
  its token ids, the same on every rank and in every process, so a repeated caption on another
  rank is a positive there too (the distributed loss exchanges the ids).
- ``"group_key"``: the batch's ``group_key`` entry (one key per row, e.g. the image key shared by
  an image's captions, as ``siglip_data.ImageTextDataset(captions_per_image=...)`` yields): integer
  keys are used as they are, strings and bytes are hashed like captions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def _hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def caption_ids(token_ids: Any) -> torch.Tensor:
    """``[B]`` int64: one id per row of ``token_ids`` ``[B, L]``, equal iff the rows are equal.

    Examples:
        >>> ids = caption_ids(np.array([[5, 6, 1], [7, 1, 1], [5, 6, 1]]))
        >>> bool(ids[0] == ids[2]), bool(ids[0] == ids[1])
        (True, False)
    """
    if isinstance(token_ids, torch.Tensor):
        token_ids = token_ids.detach().cpu().numpy()
    rows = np.ascontiguousarray(np.asarray(token_ids), dtype="<i8")  # one canonical byte layout
    if rows.ndim != 2:
        raise ValueError(f"batch['token_ids'] must be [B, L], got shape {rows.shape}")
    return torch.tensor([_hash64(row.tobytes()) for row in rows], dtype=torch.int64)


def key_ids(keys: Any) -> torch.Tensor:
    """``[B]`` int64 ids of per-row keys: integers as they are, strings and bytes hashed.

    Raises:
        TypeError: a key that is neither an integer nor a string / bytes.
    """
    if isinstance(keys, torch.Tensor):
        keys = keys.detach().cpu().numpy()
    if isinstance(keys, np.ndarray) and np.issubdtype(keys.dtype, np.integer):
        return torch.from_numpy(keys.astype(np.int64).reshape(-1))
    ids = []
    for key in keys if isinstance(keys, Sequence | np.ndarray) else [keys]:
        if isinstance(key, bool) or not isinstance(key, int | np.integer | str | bytes):
            raise TypeError(
                f"batch['group_key'] must hold integers or strings, got {type(key).__name__}"
            )
        if isinstance(key, str):
            key = key.encode("utf-8")
        ids.append(_hash64(key) if isinstance(key, bytes) else int(key))
    return torch.tensor(ids, dtype=torch.int64)


def positive_groups(
    batch: Mapping[str, Any], positives: str, device: torch.device
) -> torch.Tensor | None:
    """The ``[B]`` int64 group ids of a batch for ``loss.positives`` (None for ``"diagonal"``).

    Every row is one (image, caption) pair, so the image and the text of a row share its id.

    Args:
        batch: the batch (``token_ids`` ``[B, L]``; ``group_key`` ``[B]`` for ``"group_key"``).
        positives: ``"diagonal"``, ``"caption"`` or ``"group_key"``.
        device: where the ids go (the embeddings' device).

    Returns:
        The ids, or None.

    Raises:
        KeyError: ``"group_key"`` and the batch has no ``group_key``.
        ValueError: ``group_key`` does not have one key per row.
    """
    if positives == "diagonal":
        return None
    if positives == "caption":
        ids = caption_ids(batch["token_ids"])
    else:
        if "group_key" not in batch:
            raise KeyError(
                "loss.positives='group_key' needs a 'group_key' entry (one key per row) in every "
                "batch, e.g. from siglip_data.ImageTextDataset(captions_per_image=k) "
                f"(data.captions_per_image=k); this batch has {sorted(batch)}"
            )
        ids = key_ids(batch["group_key"])
        rows = len(batch["token_ids"])
        if ids.shape[0] != rows:
            raise ValueError(
                f"batch['group_key'] must have one key per row ({rows}), got {ids.shape[0]}"
            )
    return ids.to(device)
