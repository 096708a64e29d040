"""siglip-data: SigLIP / SigLIP 2 data pipelines that match the reference preprocessing.

The core is numpy-only (``import siglip_data`` imports neither torch nor jax):

- Text: ``SentencePieceTokenizer(model_file, *, preset="siglip", length=64)`` -> int32
  ``[batch, length]`` right-padded with the family's pad id and a sticky EOS;
  ``train_sentencepiece`` trains a vocabulary; ``check_token_ids`` rejects dynamic padding.
- Images: ``preprocess_image(image, *, size, resample="bicubic")`` -> float32
  ``[size, size, 3]`` in [-1, 1] (squash resize; ``"bilinear"`` is big_vision's kernel).
- Data: ``ImageTextDataset`` over WebDataset shards (``ShardSource``) or a folder with
  ``captions.jsonl`` (``FolderSource``): sharded over ranks and workers, seeded shuffle, exact
  ``state_dict()`` / ``load_state_dict()``, bad samples skipped and counted (``skipped``).
  Batches: ``pixels [B, H, W, 3]``, ``token_ids [B, L]`` int32, ``captions``, ``keys``,
  ``metadata``.
- Shards: ``ShardWriter`` / ``write_shards`` (atomic), ``read_shard``, ``expand_braces``.
- Offline datasets: ``build_emoji``, ``build_fashion_mnist`` (CLI ``siglip-data build ...``).

Adapters: ``siglip_data.torch`` (``TorchImageTextDataset``, ``ImageTextLoader``: NCHW tensors,
multi-worker, resumable) and ``siglip_data.jax`` (``JaxImageTextLoader``, ``to_jax``).
See docs/data.md.
"""

from siglip_data._builders import EMOJI_APT_LINE
from siglip_data._builders import EMOJI_FONT
from siglip_data._builders import EMOJI_TEST_FILE
from siglip_data._builders import FASHION_MNIST_APT_LINE
from siglip_data._builders import FASHION_MNIST_CAPTION_NAMES
from siglip_data._builders import FASHION_MNIST_CLASSES
from siglip_data._builders import FASHION_MNIST_DIR
from siglip_data._builders import FASHION_MNIST_TEMPLATES
from siglip_data._builders import DatasetInfo
from siglip_data._builders import MissingDebianPackageError
from siglip_data._builders import SplitInfo
from siglip_data._builders import build_emoji
from siglip_data._builders import build_fashion_mnist
from siglip_data._builders import emoji_split
from siglip_data._builders import load_dataset_info
from siglip_data._builders import read_emoji_test
from siglip_data._builders import read_idx
from siglip_data._dataset import SKIP_REASONS
from siglip_data._dataset import DataQualityError
from siglip_data._dataset import FolderSource
from siglip_data._dataset import ImageTextDataset
from siglip_data._dataset import ShardSource
from siglip_data._image import RESAMPLE_METHODS
from siglip_data._image import Augmentation
from siglip_data._image import decode_image
from siglip_data._image import normalize_uint8_pixels
from siglip_data._image import preprocess_image
from siglip_data._image import resize_bilinear_tf
from siglip_data._shards import RawSample
from siglip_data._shards import ShardWriter
from siglip_data._shards import UnreadableShardError
from siglip_data._shards import expand_braces
from siglip_data._shards import read_shard
from siglip_data._shards import resolve_shards
from siglip_data._shards import write_shards
from siglip_data._tokenizer import PRESETS
from siglip_data._tokenizer import DynamicPaddingError
from siglip_data._tokenizer import DynamicPaddingWarning
from siglip_data._tokenizer import SentencePieceTokenizer
from siglip_data._tokenizer import TokenizerPreset
from siglip_data._tokenizer import canonicalize_text
from siglip_data._tokenizer import check_token_ids
from siglip_data._tokenizer import train_sentencepiece

__version__ = "0.1.0"

__all__ = [
    "EMOJI_APT_LINE",
    "EMOJI_FONT",
    "EMOJI_TEST_FILE",
    "FASHION_MNIST_APT_LINE",
    "FASHION_MNIST_CAPTION_NAMES",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_TEMPLATES",
    "PRESETS",
    "RESAMPLE_METHODS",
    "SKIP_REASONS",
    "Augmentation",
    "DataQualityError",
    "DatasetInfo",
    "DynamicPaddingError",
    "DynamicPaddingWarning",
    "FolderSource",
    "ImageTextDataset",
    "MissingDebianPackageError",
    "RawSample",
    "SentencePieceTokenizer",
    "ShardSource",
    "ShardWriter",
    "SplitInfo",
    "TokenizerPreset",
    "UnreadableShardError",
    "__version__",
    "build_emoji",
    "build_fashion_mnist",
    "canonicalize_text",
    "check_token_ids",
    "decode_image",
    "emoji_split",
    "expand_braces",
    "load_dataset_info",
    "normalize_uint8_pixels",
    "preprocess_image",
    "read_emoji_test",
    "read_idx",
    "read_shard",
    "resize_bilinear_tf",
    "resolve_shards",
    "train_sentencepiece",
    "write_shards",
]
