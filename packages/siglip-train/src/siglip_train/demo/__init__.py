"""The one-command demo: a tiny SigLIP trained on Noto emoji + Fashion-MNIST on CPU.

Not part of the training library: it builds its own datasets (offline, with siglip-data, from
Debian packages it never installs), its own model (:func:`demo_model_config`) and batches, trains
them with :class:`siglip_train.Trainer` and evaluates with siglip-eval. Run it as
``siglip-train demo``, ``python -m siglip_train.demo`` or ``nox -s demo``; see docs/train.md.
"""

from siglip_train.demo._cli import main
from siglip_train.demo._data import DemoBatches
from siglip_train.demo._data import DemoData
from siglip_train.demo._data import prepare_demo_data
from siglip_train.demo._run import build_demo_model
from siglip_train.demo._run import demo_config
from siglip_train.demo._run import demo_model_config
from siglip_train.demo._run import evaluate_demo
from siglip_train.demo._run import run_demo

__all__ = [
    "DemoBatches",
    "DemoData",
    "build_demo_model",
    "demo_config",
    "demo_model_config",
    "evaluate_demo",
    "main",
    "prepare_demo_data",
    "run_demo",
]
