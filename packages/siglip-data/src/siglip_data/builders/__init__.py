"""Real image-caption datasets built offline from Debian packages (no downloads).

``build_emoji`` (Noto Color Emoji + Unicode names; ``fonts-noto-color-emoji``, ``unicode-data``),
``build_fashion_mnist`` (``dataset-fashion-mnist``) and ``build_rendered_words`` (words and
phrases in DejaVu fonts at their natural aspect ratio; ``wamerican``, ``fonts-dejavu-core``)
write train / held-out shards and a ``dataset.json`` (read back with ``load_dataset_info``).
``build_emoji_scenes`` (1-4 emoji and Fashion-MNIST items per canvas with boxes, a scene caption
and a per-pixel object map: ``decode_object_map``, ``category_map``, ``scene_categories``; the
grounded data of SigLIP 2's LocCa tasks and dense probe) writes train / test / heldout shards.
``build_emoji_multilingual`` (the emoji with their CLDR names in many languages;
``unicode-cldr-core`` too) writes the same split in the Crossmodal-3600 layout
(``XM3600_LANGUAGES``), described by a ``MultilingualDatasetInfo``. ``build_emoji_style`` draws the same emoji in other artists' styles (``EMOJI_STYLES``: Noto,
Twemoji from the npm tarball ``emoji-datasource-twitter`` that ``npm_tarball`` finds in a cache,
Symbola from ``fonts-symbola``) with one name-level split (``emoji_style_split``).
``check_debian_packages`` says
whether the packages are installed; ``MissingDebianPackageError``'s message ends with the command
to run. The library never installs anything itself. Command line: ``python -m siglip_data build
...``.
"""

from siglip_data._builders import DatasetInfo
from siglip_data._builders import MissingDebianPackageError
from siglip_data._builders import SplitInfo
from siglip_data._builders import build_emoji
from siglip_data._builders import build_fashion_mnist
from siglip_data._builders import check_debian_packages
from siglip_data._builders import load_dataset_info
from siglip_data._emoji_multilingual import XM3600_LANGUAGES
from siglip_data._emoji_multilingual import MultilingualDatasetInfo
from siglip_data._emoji_multilingual import build_emoji_multilingual
from siglip_data._emoji_scenes import build_emoji_scenes
from siglip_data._emoji_scenes import category_map
from siglip_data._emoji_scenes import decode_object_map
from siglip_data._emoji_scenes import scene_categories
from siglip_data._emoji_styles import EMOJI_STYLES
from siglip_data._emoji_styles import EmojiStyle
from siglip_data._emoji_styles import MissingNpmPackageError
from siglip_data._emoji_styles import build_emoji_style
from siglip_data._emoji_styles import default_npm_cache
from siglip_data._emoji_styles import emoji_flippable
from siglip_data._emoji_styles import emoji_split_key
from siglip_data._emoji_styles import emoji_style_split
from siglip_data._emoji_styles import npm_tarball
from siglip_data._rendered_words import build_rendered_words

__all__ = [
    "EMOJI_STYLES",
    "XM3600_LANGUAGES",
    "DatasetInfo",
    "EmojiStyle",
    "MissingDebianPackageError",
    "MissingNpmPackageError",
    "MultilingualDatasetInfo",
    "SplitInfo",
    "build_emoji",
    "build_emoji_multilingual",
    "build_emoji_scenes",
    "build_emoji_style",
    "build_fashion_mnist",
    "build_rendered_words",
    "category_map",
    "check_debian_packages",
    "decode_object_map",
    "default_npm_cache",
    "emoji_flippable",
    "emoji_split_key",
    "emoji_style_split",
    "load_dataset_info",
    "npm_tarball",
    "scene_categories",
]
