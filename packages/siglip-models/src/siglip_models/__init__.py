"""siglip-models: SigLIP and SigLIP 2 towers in PyTorch and Flax that load the released checkpoints.

Importing this package costs nothing beyond numpy: configs, the registry, the checkpoint layout and
position-embedding resampling. The models live in their own submodules:

- ``siglip_models.torch``: ``SiglipModel`` (``nn.Module``, NCHW pixels; extra ``[torch]``) and
  ``SiglipTextDecoder`` (the SigLIP 2 captioning decoder).
- ``siglip_models.flax``: ``SiglipModel`` (Flax NNX, NHWC pixels; extra ``[flax]``).
"""

from siglip_models._config import SiglipConfig
from siglip_models._config import TextConfig
from siglip_models._config import VisionConfig
from siglip_models._config import get_config
from siglip_models._config import list_configs
from siglip_models._config import register_config
from siglip_models._decoder_config import TextDecoderConfig
from siglip_models._layout import CheckpointError
from siglip_models._layout import config_from_hf_dict
from siglip_models._layout import config_to_hf_dict
from siglip_models._layout import hf_parameter_shapes
from siglip_models._layout import read_hf_config
from siglip_models._layout import resolve_model_directory
from siglip_models._npz import read_big_vision_npz
from siglip_models._npz import save_big_vision_npz
from siglip_models._resample import resample_position_embedding

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "SiglipConfig",
    "TextConfig",
    "TextDecoderConfig",
    "VisionConfig",
    "__version__",
    "config_from_hf_dict",
    "config_to_hf_dict",
    "get_config",
    "hf_parameter_shapes",
    "list_configs",
    "read_big_vision_npz",
    "read_hf_config",
    "register_config",
    "resample_position_embedding",
    "resolve_model_directory",
    "save_big_vision_npz",
]
