"""Dataset readers for evaluation: folders, jsonl / Karpathy captions, WebDataset shards, arrays.

Classification readers (``image_folder``, ``classification_shards``, ``classification_arrays``)
return a ``ClassificationDataset``; retrieval readers (``karpathy_json``, ``retrieval_jsonl``,
``retrieval_shards``, ``retrieval_arrays``) a ``RetrievalDataset``; ``built_dataset`` reads a
dataset written by ``siglip_data.builders``; ``xm3600`` reads a Crossmodal-3600-layout folder
(XM3600 itself or ``siglip-data build emoji-multilingual``) into a ``MultilingualDataset``. Each yields ``ImageBatch`` es whose pixels went
through ``siglip_data.preprocess_image``, the toolkit's one image pipeline.
"""

from siglip_eval._datasets import ClassificationDataset
from siglip_eval._datasets import ImageBatch
from siglip_eval._datasets import RetrievalDataset
from siglip_eval._datasets import classification_arrays
from siglip_eval._datasets import image_folder
from siglip_eval._datasets import karpathy_json
from siglip_eval._datasets import retrieval_arrays
from siglip_eval._datasets import retrieval_jsonl
from siglip_eval._multilingual import MultilingualDataset
from siglip_eval._multilingual import xm3600
from siglip_eval._shards import built_dataset
from siglip_eval._shards import classification_shards
from siglip_eval._shards import retrieval_shards

__all__ = [
    "ClassificationDataset",
    "ImageBatch",
    "MultilingualDataset",
    "RetrievalDataset",
    "built_dataset",
    "classification_arrays",
    "classification_shards",
    "image_folder",
    "karpathy_json",
    "retrieval_arrays",
    "retrieval_jsonl",
    "retrieval_shards",
    "xm3600",
]
