"""siglip-eval: zero-shot classification, retrieval and linear probe for SigLIP-style encoders.

Importing this package needs numpy, pillow, tqdm and siglip-data's numpy core. The model
adapters live in ``siglip_eval.torch`` and ``siglip_eval.flax`` and import their framework only
when imported. The command line is ``siglip-eval`` (or ``python -m siglip_eval``).

- Metrics on arrays: ``zeroshot_metrics``, ``retrieval_metrics`` (CLIP_benchmark's numbers),
  ``multilingual_retrieval_metrics`` (per-language Recall@K, XM3600's two protocols).
- Protocols: ``evaluate_zeroshot``, ``evaluate_retrieval``, ``evaluate_linear_probe``,
  ``evaluate_multilingual`` over an
  ``Encoder`` (two numpy callables) and a dataset reader; ``zeroshot_from_embeddings``,
  ``retrieval_from_embeddings`` and ``linear_probe`` from saved embeddings.
- Readers, in ``siglip_eval.datasets``: ``image_folder``, ``karpathy_json``, ``retrieval_jsonl``,
  ``classification_shards``, ``retrieval_shards``, ``built_dataset``, ``classification_arrays``,
  ``retrieval_arrays``, ``xm3600``; every image goes through ``siglip_data.preprocess_image``.
- Dense features and localisation, in ``siglip_eval.grounding``: ``dense_linear_probe`` (pixel
  accuracy, mIoU), ``referring_expression_accuracy``; ``siglip_eval.torch.generate_boxes``.
"""

from siglip_eval import datasets as datasets  # public submodule
from siglip_eval import grounding as grounding  # public submodule
from siglip_eval._encoders import EmbeddingCache
from siglip_eval._encoders import Encoder
from siglip_eval._linear_probe import LinearProbeResult
from siglip_eval._linear_probe import evaluate_linear_probe
from siglip_eval._linear_probe import linear_probe
from siglip_eval._metrics import retrieval_metrics
from siglip_eval._metrics import zeroshot_metrics
from siglip_eval._multilingual import MultilingualResult
from siglip_eval._multilingual import evaluate_multilingual
from siglip_eval._multilingual import multilingual_retrieval_metrics
from siglip_eval._retrieval import RetrievalResult
from siglip_eval._retrieval import evaluate_retrieval
from siglip_eval._retrieval import retrieval_from_embeddings
from siglip_eval._templates import IMAGENET_TEMPLATES
from siglip_eval._templates import fill_templates
from siglip_eval._zeroshot import ZeroShotResult
from siglip_eval._zeroshot import class_embeddings
from siglip_eval._zeroshot import evaluate_zeroshot
from siglip_eval._zeroshot import zeroshot_from_embeddings

__version__ = "0.1.0"

__all__ = [
    "IMAGENET_TEMPLATES",
    "EmbeddingCache",
    "Encoder",
    "LinearProbeResult",
    "MultilingualResult",
    "RetrievalResult",
    "ZeroShotResult",
    "__version__",
    "class_embeddings",
    "evaluate_linear_probe",
    "evaluate_multilingual",
    "evaluate_retrieval",
    "evaluate_zeroshot",
    "fill_templates",
    "linear_probe",
    "multilingual_retrieval_metrics",
    "retrieval_from_embeddings",
    "retrieval_metrics",
    "zeroshot_from_embeddings",
    "zeroshot_metrics",
]
