"""siglip-eval: zero-shot classification, retrieval and linear probe for SigLIP-style encoders.

Importing this package needs only numpy, pillow and tqdm. The model adapters live in
``siglip_eval.torch`` and ``siglip_eval.flax`` and import their framework only when imported.

- Metrics on arrays: ``zeroshot_metrics``, ``retrieval_metrics`` (CLIP_benchmark's numbers).
- Protocols: ``evaluate_zeroshot``, ``evaluate_retrieval``, ``evaluate_linear_probe`` over an
  ``Encoder`` (two numpy callables) and a dataset reader.
- Report: ``write_report`` and the ``siglip-eval`` command line.
"""

from ._datasets import ClassificationDataset
from ._datasets import ImageBatch
from ._datasets import RetrievalDataset
from ._datasets import classification_arrays
from ._datasets import image_folder
from ._datasets import karpathy_json
from ._datasets import retrieval_arrays
from ._datasets import retrieval_jsonl
from ._encoders import EmbeddingCache
from ._encoders import Encoder
from ._encoders import ImageTextEncoder
from ._encoders import embed_image_batches
from ._encoders import embed_texts
from ._linear_probe import LinearProbeResult
from ._linear_probe import evaluate_linear_probe
from ._linear_probe import linear_probe
from ._metrics import RankParts
from ._metrics import classification_rank_parts
from ._metrics import classification_ranks
from ._metrics import confusion_matrix
from ._metrics import l2_normalize
from ._metrics import per_class_recall
from ._metrics import recall_at_k
from ._metrics import retrieval_metrics
from ._metrics import retrieval_rank_parts
from ._metrics import retrieval_ranks
from ._metrics import zeroshot_metrics
from ._metrics import zeroshot_scores
from ._retrieval import RetrievalResult
from ._retrieval import evaluate_retrieval
from ._retrieval import retrieval_from_embeddings
from ._shards import built_dataset
from ._shards import classification_shards
from ._shards import retrieval_shards
from ._templates import IMAGENET_TEMPLATES
from ._templates import IMAGENET_TEMPLATES_7
from ._templates import ONE_TEMPLATE
from ._templates import fill_templates
from ._templates import get_templates
from ._zeroshot import ZeroShotResult
from ._zeroshot import class_embeddings
from ._zeroshot import evaluate_zeroshot
from ._zeroshot import zeroshot_from_embeddings

__version__ = "0.1.0"

__all__ = [
    "IMAGENET_TEMPLATES",
    "IMAGENET_TEMPLATES_7",
    "ONE_TEMPLATE",
    "ClassificationDataset",
    "EmbeddingCache",
    "Encoder",
    "ImageBatch",
    "ImageTextEncoder",
    "LinearProbeResult",
    "RankParts",
    "RetrievalDataset",
    "RetrievalResult",
    "ZeroShotResult",
    "__version__",
    "built_dataset",
    "class_embeddings",
    "classification_arrays",
    "classification_rank_parts",
    "classification_ranks",
    "classification_shards",
    "confusion_matrix",
    "embed_image_batches",
    "embed_texts",
    "evaluate_linear_probe",
    "evaluate_retrieval",
    "evaluate_zeroshot",
    "fill_templates",
    "get_templates",
    "image_folder",
    "karpathy_json",
    "l2_normalize",
    "linear_probe",
    "per_class_recall",
    "recall_at_k",
    "retrieval_arrays",
    "retrieval_from_embeddings",
    "retrieval_jsonl",
    "retrieval_metrics",
    "retrieval_rank_parts",
    "retrieval_ranks",
    "retrieval_shards",
    "zeroshot_from_embeddings",
    "zeroshot_metrics",
    "zeroshot_scores",
]
