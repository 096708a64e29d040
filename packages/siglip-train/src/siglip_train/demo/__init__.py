"""The one-command demo: a tiny SigLIP trained on Noto emoji + Fashion-MNIST on CPU.

Not part of the training library: it builds its own datasets (offline, with siglip-data, from
Debian packages it never installs), its own model (:func:`demo_model_config`) and batches, trains
them with :class:`siglip_train.Trainer` and evaluates with siglip-eval. The evaluation protocol is
public so it can be repeated on other data: the caption forms (``EMOJI_NAME_TEMPLATES``,
``EMOJI_GROUP_TEMPLATE``, ``emoji_caption_forms``), ``evaluate_emoji_retrieval`` (retrieval by
name + group zero-shot on any images), ``chance_levels`` and ``name_statistics``. Run it as
``siglip-train demo``, ``python -m siglip_train.demo`` or ``nox -s demo``; see docs/train.md.
"""

from siglip_train.demo._cli import main
from siglip_train.demo._data import DEMO_HELDOUT_STYLE
from siglip_train.demo._data import DEMO_TRAIN_STYLES
from siglip_train.demo._data import EMOJI_CAPTION_WEIGHTS
from siglip_train.demo._data import EMOJI_GROUP_TEMPLATE
from siglip_train.demo._data import EMOJI_NAME_TEMPLATES
from siglip_train.demo._data import DemoBatches
from siglip_train.demo._data import DemoData
from siglip_train.demo._data import EmojiEvalSet
from siglip_train.demo._data import emoji_caption_forms
from siglip_train.demo._data import name_statistics
from siglip_train.demo._data import prepare_demo_data
from siglip_train.demo._run import DEMO_BUDGETS
from siglip_train.demo._run import build_demo_model
from siglip_train.demo._run import chance_levels
from siglip_train.demo._run import demo_config
from siglip_train.demo._run import demo_model_config
from siglip_train.demo._run import evaluate_demo
from siglip_train.demo._run import evaluate_emoji_retrieval
from siglip_train.demo._run import run_demo

__all__ = [
    "DEMO_BUDGETS",
    "DEMO_HELDOUT_STYLE",
    "DEMO_TRAIN_STYLES",
    "EMOJI_CAPTION_WEIGHTS",
    "EMOJI_GROUP_TEMPLATE",
    "EMOJI_NAME_TEMPLATES",
    "DemoBatches",
    "DemoData",
    "EmojiEvalSet",
    "build_demo_model",
    "chance_levels",
    "demo_config",
    "demo_model_config",
    "emoji_caption_forms",
    "evaluate_demo",
    "evaluate_emoji_retrieval",
    "main",
    "name_statistics",
    "prepare_demo_data",
    "run_demo",
]
