"""siglip-data: SigLIP / SigLIP 2 data pipelines that match the reference preprocessing.

The core is numpy-only (``import siglip_data`` imports neither torch, jax nor numba):

- Text: ``SentencePieceTokenizer(model_file, *, preset="siglip", length=64)`` -> int32
  ``[batch, length]`` right-padded with the family's pad id and a sticky EOS;
  ``train_sentencepiece`` trains a vocabulary; ``check_token_ids`` rejects dynamic padding.
- Images: ``preprocess_image(image, *, size, resample="bicubic")`` -> float32
  ``[size, size, 3]`` in [-1, 1] (squash resize; ``"bilinear"`` is big_vision's kernel);
  ``normalize_uint8_pixels`` is the one uint8 -> [-1, 1] scaling.
- Data: ``ImageTextDataset`` over WebDataset shards (``ShardSource``) or a folder with
  ``captions.jsonl`` (``FolderSource``), configured by ``DecodeOptions``, ``Topology`` (ranks and
  workers) and ``QualityPolicy``: seeded shuffle, exact ``state_dict()`` /
  ``load_state_dict()``, bad samples skipped and counted (``skipped``).
- Shards: ``ShardWriter`` / ``write_shards`` (atomic), ``read_shard``, ``resolve_shards``.
- SigLIP 2 NaFlex (native aspect ratio, patch sequences), in ``siglip_data.naflex``:
  ``naflex_preprocess``, ``collate_naflex``, ``NaflexOptions`` (``ImageTextDataset(naflex=...)``).
- Offline datasets from Debian packages: ``build_emoji``, ``build_fashion_mnist``,
  ``build_emoji_scenes``, ``check_debian_packages`` (``python -m siglip_data build ...``).
- Boxes as quantised text and the LocCa task prefixes: ``siglip_data.grounding``.

Adapters: ``siglip_data.torch`` (``ImageTextLoader``: NCHW tensors, multi-worker, resumable) and
``siglip_data.jax`` (``JaxImageTextLoader``). See docs/data.md.
"""

from siglip_data import augment as augment  # public submodule
from siglip_data import builders as builders  # public submodule
from siglip_data import grounding as grounding  # public submodule
from siglip_data import naflex as naflex  # public submodule
from siglip_data._dataset import DataQualityError
from siglip_data._dataset import DecodeOptions
from siglip_data._dataset import ImageTextDataset
from siglip_data._dataset import QualityPolicy
from siglip_data._dataset import Topology
from siglip_data._image import Augmentation
from siglip_data._image import normalize_uint8_pixels
from siglip_data._image import preprocess_image
from siglip_data._shards import RawSample
from siglip_data._shards import ShardWriter
from siglip_data._shards import UnreadableShardError
from siglip_data._shards import read_shard
from siglip_data._shards import resolve_shards
from siglip_data._shards import write_shards
from siglip_data._sources import FolderSource
from siglip_data._sources import ShardSource
from siglip_data._tokenizer import DynamicPaddingError
from siglip_data._tokenizer import SentencePieceTokenizer
from siglip_data._tokenizer import check_token_ids
from siglip_data._tokenizer import train_sentencepiece

__version__ = "0.1.0"

__all__ = [
    "Augmentation",
    "DataQualityError",
    "DecodeOptions",
    "DynamicPaddingError",
    "FolderSource",
    "ImageTextDataset",
    "QualityPolicy",
    "RawSample",
    "SentencePieceTokenizer",
    "ShardSource",
    "ShardWriter",
    "Topology",
    "UnreadableShardError",
    "__version__",
    "check_token_ids",
    "normalize_uint8_pixels",
    "preprocess_image",
    "read_shard",
    "resolve_shards",
    "train_sentencepiece",
    "write_shards",
]
