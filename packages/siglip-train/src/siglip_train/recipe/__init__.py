"""The SigLIP 2 recipe in miniature: sigmoid loss + LocCa decoder + SILC/TIPS + ACID (PyTorch).

- ``RecipeConfig``: one flag per component (``locca``, ``distillation`` from
  ``distillation_start``, ``acid``) and their hyperparameters.
- ``RecipeTrainer(model, batches, config, recipe, *, decoder=None, reference=None)``: one
  process; ``start_distillation`` (EMA teacher, fresh heads, a new optimizer parameter group),
  ``save_checkpoint`` / ``load_checkpoint`` (exact resume, also mid-distillation).
- Scenes: ``load_scenes`` (``siglip-data build emoji-scenes`` output), ``SceneBatches``
  (captions + the three LocCa decoder sequences), ``decoder_sequence``, ``scene_corpus``,
  ``train_scene_tokenizer``.
- Pieces: ``DistillationHead``, ``vision_tokens``, ``per_example_sigmoid_loss``, ``acid_select``.

See docs/siglip2-recipe.md.
"""

from siglip_train._recipe import DistillationHead
from siglip_train._recipe import RecipeStep
from siglip_train._recipe import RecipeTrainer
from siglip_train._recipe import acid_select
from siglip_train._recipe import has_patch_tokens
from siglip_train._recipe import per_example_sigmoid_loss
from siglip_train._recipe import vision_tokens
from siglip_train._recipe_config import RecipeConfig
from siglip_train._recipe_data import SceneBatches
from siglip_train._recipe_data import SceneData
from siglip_train._recipe_data import decoder_sequence
from siglip_train._recipe_data import load_scenes
from siglip_train._recipe_data import scene_corpus
from siglip_train._recipe_data import train_scene_tokenizer

__all__ = [
    "DistillationHead",
    "RecipeConfig",
    "RecipeStep",
    "RecipeTrainer",
    "SceneBatches",
    "SceneData",
    "acid_select",
    "decoder_sequence",
    "has_patch_tokens",
    "load_scenes",
    "per_example_sigmoid_loss",
    "scene_corpus",
    "train_scene_tokenizer",
    "vision_tokens",
]
