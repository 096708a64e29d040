"""Build real image-caption shards from data that ships in Debian packages (no downloads).

- Noto Color Emoji + Unicode emoji names (``fonts-noto-color-emoji``, ``unicode-data``): 3,655
  fully-qualified emoji rendered with Pillow, captioned with their CLDR names, split train /
  held-out by a hash of the base name so skin-tone / gender variants never straddle the split.
- Fashion-MNIST (``dataset-fashion-mnist``): 60,000 train + 10,000 test 28x28 grayscale images,
  captioned from templates over the class names.
- Rendered words (``wamerican``, ``fonts-dejavu-core``): see ``_rendered_words.py``.

Each build writes ``<out>/<split>/shard-*.tar`` plus ``<out>/dataset.json`` (a
:class:`DatasetInfo`: split patterns and sizes, class names, caption templates).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from siglip_data._atomic import atomic_write_text
from siglip_data._shards import ShardWriter

# Where the Debian packages put their files (read at call time, so tests can point them elsewhere).
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_TEST_FILE = Path("/usr/share/unicode/emoji/emoji-test.txt")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# unicode-cldr-core: CLDR's emoji names and keywords per locale (annotations/<locale>.xml, and
# annotationsDerived/ for skin-tone, flag and other sequences).
CLDR_DIR = Path("/usr/share/unicode/cldr/common")
FASHION_MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# The Debian packages behind each offline dataset.
DEBIAN_PACKAGES: dict[str, tuple[str, ...]] = {
    "emoji": ("fonts-noto-color-emoji", "unicode-data"),
    "fashion-mnist": ("dataset-fashion-mnist",),
    "emoji-multilingual": ("fonts-noto-color-emoji", "unicode-data", "unicode-cldr-core"),
    "rendered-words": ("wamerican", "fonts-dejavu-core"),
    # The other emoji styles (siglip_data._emoji_styles): Symbola, and the names alone (Twemoji's
    # images come from an npm tarball, checked separately).
    "emoji-symbola": ("fonts-symbola", "unicode-data"),
    "emoji-names": ("unicode-data",),
}
SYMBOLA_FONT = Path("/usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf")
# The files of the rendered-words dataset (siglip_data._rendered_words reads them).
WORD_LIST = Path("/usr/share/dict/american-english")
DEJAVU_DIR = Path("/usr/share/fonts/truetype/dejavu")
DEJAVU_CORE_FONTS: tuple[str, ...] = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
)

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# What a caption calls each class (natural English, lowercase).
FASHION_MNIST_CAPTION_NAMES: tuple[str, ...] = (
    "t-shirt",
    "pair of trousers",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
FASHION_MNIST_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a black and white photo of a {}.",
    "a low resolution photo of a {}.",
    "a grayscale picture of a {}.",
    "a small photo of a {}.",
    "a product photo of a {}.",
)
EMOJI_TEMPLATES: tuple[str, ...] = ("an emoji of {}.",)
EMOJI_HELDOUT_PERCENT = 25


class MissingDebianPackageError(FileNotFoundError):
    """A Debian package behind an offline dataset is not installed.

    The message ends with the exact command to run. The library never installs anything itself.

    Attributes:
        packages: the Debian packages to install.
        missing_files: the files that were looked for and not found.
        command: ``"apt install -y <packages>"`` (run it as root; ``apt``, the interactive
            front end, since a person runs it).
    """

    def __init__(
        self, message: str, packages: tuple[str, ...] = (), missing_files: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.packages = packages
        self.missing_files = missing_files
        self.command = _install_command(packages)


def _install_command(packages: tuple[str, ...]) -> str:
    # Printed for the user to run; the library never runs it.
    return "apt install -y " + " ".join(packages)


def _debian_files(dataset: str) -> tuple[Path, ...]:
    if dataset == "emoji":
        return (EMOJI_FONT, EMOJI_TEST_FILE)
    if dataset == "emoji-multilingual":
        return (EMOJI_FONT, EMOJI_TEST_FILE, CLDR_DIR / "annotations" / "en.xml")
    if dataset == "emoji-symbola":
        return (SYMBOLA_FONT, EMOJI_TEST_FILE)
    if dataset == "emoji-names":
        return (EMOJI_TEST_FILE,)
    if dataset == "rendered-words":
        return (WORD_LIST, *(DEJAVU_DIR / name for name in DEJAVU_CORE_FONTS))
    return tuple(FASHION_MNIST_DIR / name for pair in FASHION_MNIST_FILES.values() for name in pair)


def check_debian_packages(*datasets: str) -> None:
    """Check that the Debian packages behind offline datasets are installed; does no other work.

    The builders call it first. Call it yourself to check before a long run, or to print the
    install command: the error's message ends with it, and ``error.command`` is the command alone.

    Args:
        *datasets: ``"emoji"`` (``fonts-noto-color-emoji``, ``unicode-data``),
            ``"fashion-mnist"`` (``dataset-fashion-mnist``), ``"emoji-multilingual"`` (the emoji
            packages and ``unicode-cldr-core``), ``"rendered-words"`` (``wamerican``,
            ``fonts-dejavu-core``), ``"emoji-symbola"`` (``fonts-symbola``, ``unicode-data``)
            and / or ``"emoji-names"`` (``unicode-data``); none: all of them.

    Raises:
        MissingDebianPackageError: some file is missing; ``packages`` and ``command`` cover
            every requested dataset with a missing file, in one ``apt install`` line.
        ValueError: an unknown dataset name.

    Examples:
        >>> def install_command(*datasets):
        ...     try:
        ...         check_debian_packages(*datasets)
        ...     except MissingDebianPackageError as error:
        ...         return error.command
        ...     return None  # installed
        >>> install_command("fashion-mnist") in (None, "apt install -y dataset-fashion-mnist")
        True
    """
    names = list(dict.fromkeys(datasets or DEBIAN_PACKAGES))
    unknown = [name for name in names if name not in DEBIAN_PACKAGES]
    if unknown:
        raise ValueError(
            f"unknown dataset {unknown[0]!r}, expected one of {sorted(DEBIAN_PACKAGES)}"
        )
    incomplete: list[str] = []
    packages: list[str] = []
    missing: list[str] = []
    for name in names:
        absent = [str(path) for path in _debian_files(name) if not path.is_file()]
        if absent:
            incomplete.append(name)
            packages += DEBIAN_PACKAGES[name]
            missing += absent
    # Datasets share packages (the emoji font): name each package and file once.
    packages = list(dict.fromkeys(packages))
    missing = list(dict.fromkeys(missing))
    if missing:
        command = _install_command(tuple(packages))
        what = f"the {' and '.join(incomplete)} dataset" + ("s" if len(incomplete) > 1 else "")
        raise MissingDebianPackageError(
            f"{what} needs {', '.join(missing)}, which is not installed. Install the Debian "
            f"packages with (as root; run apt update first on a fresh system):\n    {command}",
            tuple(packages),
            tuple(missing),
        )


@dataclasses.dataclass(frozen=True)
class SplitInfo:
    """One split of a built dataset.

    Attributes:
        pattern: brace pattern of its shards (absolute).
        shards: the shard paths.
        num_samples: samples written.
    """

    pattern: str
    shards: tuple[str, ...]
    num_samples: int


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a builder wrote; saved as ``<out>/dataset.json``.

    Attributes:
        name: ``"emoji"`` or ``"fashion-mnist"``.
        splits: split name -> :class:`SplitInfo`.
        class_names: label -> class name (emoji: the Unicode groups; Fashion-MNIST: its classes).
        caption_names: label -> how captions name the class (for zero-shot prompts).
        caption_templates: prompt templates with one ``{}`` (zero-shot classifiers).
        image_size: side of the stored square images.
        label_key: metadata field with the integer label.
        license: licence of the images (and captions), when the builder records it.
        source: where the images come from (package names), when the builder records it.
    """

    name: str
    splits: dict[str, SplitInfo]
    class_names: tuple[str, ...]
    caption_names: tuple[str, ...]
    caption_templates: tuple[str, ...]
    image_size: int
    label_key: str
    license: str = ""
    source: str = ""

    def to_json(self) -> str:
        payload = dataclasses.asdict(self)
        return json.dumps(payload, indent=2, sort_keys=True)


def load_dataset_info(directory: str | os.PathLike[str]) -> DatasetInfo:
    """Read ``<directory>/dataset.json`` written by :func:`build_emoji` / :func:`build_fashion_mnist`.

    Raises:
        FileNotFoundError: no ``dataset.json`` (the directory was not built).
    """
    path = Path(directory) / "dataset.json"
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist: build the dataset first")
    payload: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    splits = {
        name: SplitInfo(split["pattern"], tuple(split["shards"]), split["num_samples"])
        for name, split in payload["splits"].items()
    }
    return DatasetInfo(
        name=payload["name"],
        splits=splits,
        class_names=tuple(payload["class_names"]),
        caption_names=tuple(payload["caption_names"]),
        caption_templates=tuple(payload["caption_templates"]),
        image_size=int(payload["image_size"]),
        label_key=payload["label_key"],
        license=payload.get("license", ""),
        source=payload.get("source", ""),
    )


@dataclasses.dataclass(frozen=True)
class EmojiEntry:
    """One fully-qualified emoji from ``emoji-test.txt``."""

    emoji: str
    name: str
    base_name: str
    group: str
    subgroup: str


def read_emoji_test(path: str | os.PathLike[str] = EMOJI_TEST_FILE) -> list[EmojiEntry]:
    """Parse the fully-qualified emoji of Unicode's ``emoji-test.txt`` with their groups."""
    entries = []
    group = subgroup = ""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line.startswith("# group:"):
                group = line.split(":", 1)[1].strip()
            elif line.startswith("# subgroup:"):
                subgroup = line.split(":", 1)[1].strip()
            elif line and not line.startswith("#"):
                fields, _, comment = line.partition("#")
                status = fields.split(";")[1].strip()
                if status != "fully-qualified":
                    continue
                # comment: " 😀 E1.0 grinning face"
                emoji, _version, name = comment.strip().split(" ", 2)
                base_name = name.split(":", 1)[0].strip()
                entries.append(EmojiEntry(emoji, name, base_name, group, subgroup))
    return entries


def emoji_split(base_name: str, heldout_percent: int = EMOJI_HELDOUT_PERCENT) -> str:
    """``"train"`` or ``"heldout"`` from a stable hash (SHA-256) of the base name."""
    digest = hashlib.sha256(base_name.encode("utf-8")).digest()
    return "heldout" if int.from_bytes(digest[:8], "big") % 100 < heldout_percent else "train"


def render_emoji(emoji: str, font: ImageFont.FreeTypeFont, *, image_size: int) -> Image.Image:
    """Draw one emoji (colour bitmap font, size 109) centred on a transparent square, resized."""
    canvas_side = 136
    canvas = Image.new("RGBA", (canvas_side, canvas_side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = font.getbbox(emoji)
    offset = ((canvas_side - (right - left)) // 2 - left, (canvas_side - (bottom - top)) // 2 - top)
    draw.text(offset, emoji, font=font, embedded_color=True)
    if image_size != canvas_side:
        canvas = canvas.resize((image_size, image_size), Image.Resampling.LANCZOS)
    return canvas


def build_emoji(
    output_dir: str | os.PathLike[str],
    *,
    image_size: int = 128,
    samples_per_shard: int = 1000,
    limit: int | None = None,
    heldout_percent: int = EMOJI_HELDOUT_PERCENT,
) -> DatasetInfo:
    """Render Noto Color Emoji into ``train`` / ``heldout`` shards captioned with Unicode names.

    Metadata per sample: ``{"name", "base_name", "group", "subgroup", "group_label", "split"}``;
    the caption is the name (``"grinning face with big eyes"``). Images are RGBA PNGs (the emoji
    on transparency; preprocessing composites them on white). ``group_label`` indexes the
    groups in file order (``class_names``).

    Args:
        output_dir: where to write ``train/``, ``heldout/`` and ``dataset.json``.
        image_size: side of the stored square images (the glyphs are drawn at 136 px).
        samples_per_shard: samples per tar shard.
        limit: build only the first ``limit`` emoji of the file (fast tests / demos).
        heldout_percent: percent of base names held out.

    Returns:
        The :class:`DatasetInfo` (also written to ``dataset.json``).

    Raises:
        MissingDebianPackageError: the font or ``emoji-test.txt`` is not installed.
    """
    check_debian_packages("emoji")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    entries = read_emoji_test()
    if limit is not None:
        entries = entries[:limit]
    groups: list[str] = []
    for entry in read_emoji_test():
        if entry.group not in groups:
            groups.append(entry.group)
    font = ImageFont.truetype(str(EMOJI_FONT), 109)

    def samples(split: str) -> Iterator[tuple[str, Image.Image, str, dict[str, Any]]]:
        for index, entry in enumerate(entries):
            if emoji_split(entry.base_name, heldout_percent) != split:
                continue
            metadata = {
                "name": entry.name,
                "base_name": entry.base_name,
                "group": entry.group,
                "subgroup": entry.subgroup,
                "group_label": groups.index(entry.group),
                "split": split,
                "emoji": entry.emoji,
            }
            image = render_emoji(entry.emoji, font, image_size=image_size)
            yield f"emoji{index:05d}", image, entry.name, metadata

    splits = {
        split: write_split(Path(output_dir) / split, samples(split), samples_per_shard)
        for split in ("train", "heldout")
    }
    info = DatasetInfo(
        name="emoji",
        splits=splits,
        class_names=tuple(groups),
        caption_names=tuple(group.lower() for group in groups),
        caption_templates=EMOJI_TEMPLATES,
        image_size=image_size,
        label_key="group_label",
    )
    atomic_write_text(Path(output_dir) / "dataset.json", info.to_json())
    return info


def write_split(
    directory: Path,
    samples: Iterator[tuple[str, Image.Image, str, dict[str, Any]]],
    samples_per_shard: int,
) -> SplitInfo:
    with ShardWriter(directory, samples_per_shard=samples_per_shard) as writer:
        for key, image, caption, metadata in samples:
            writer.write(image, caption, key=key, metadata=metadata)
    # A rebuild with fewer samples must not leave shards of the previous build behind.
    written = {Path(shard).name for shard in writer.shards}
    for stale in directory.glob("shard-*.tar"):
        if stale.name not in written:
            stale.unlink()
    last = len(writer.shards) - 1
    pattern = str(directory.resolve() / f"shard-{{00000..{last:05d}}}.tar") if writer.shards else ""
    return SplitInfo(
        pattern=pattern,
        shards=tuple(str(Path(shard).resolve()) for shard in writer.shards),
        num_samples=writer.num_samples,
    )


def read_idx(path: str | os.PathLike[str]) -> npt.NDArray[np.uint8]:
    """Read a (gzipped) IDX file (the MNIST format) into a uint8 array.

    Raises:
        ValueError: not an unsigned-byte IDX file, or a size that contradicts its header.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4:
        raise ValueError(f"{path}: too short for an IDX header")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (header {data[:4]!r})")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    payload = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if payload.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {payload.size} bytes")
    return payload.reshape(shape)


def fashion_mnist_caption(label: int, index: int) -> str:
    """The caption of sample ``index`` with ``label``: a template picked by the index."""
    template = FASHION_MNIST_TEMPLATES[index % len(FASHION_MNIST_TEMPLATES)]
    return template.format(FASHION_MNIST_CAPTION_NAMES[label])


def build_fashion_mnist(
    output_dir: str | os.PathLike[str],
    *,
    image_size: int = 28,
    samples_per_shard: int = 5000,
    limit: int | None = None,
) -> DatasetInfo:
    """Write Fashion-MNIST as ``train`` / ``test`` shards of grayscale PNGs with template captions.

    Metadata per sample: ``{"label": int, "class_name": str, "split": "train"|"test"}``. The
    caption is ``fashion_mnist_caption(label, index)``, e.g. ``"a photo of a dress."``.

    Args:
        output_dir: where to write ``train/``, ``test/`` and ``dataset.json``.
        image_size: stored side (28 = original; larger upsamples with bicubic).
        samples_per_shard: samples per tar shard.
        limit: write only the first ``limit`` samples of each split.

    Returns:
        The :class:`DatasetInfo` (also written to ``dataset.json``).

    Raises:
        MissingDebianPackageError: ``dataset-fashion-mnist`` is not installed.
    """
    check_debian_packages("fashion-mnist")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")

    def samples(split: str) -> Iterator[tuple[str, Image.Image, str, dict[str, Any]]]:
        image_file, label_file = FASHION_MNIST_FILES[split]
        images = read_idx(FASHION_MNIST_DIR / image_file)
        labels = read_idx(FASHION_MNIST_DIR / label_file)
        if len(images) != len(labels):
            raise ValueError(f"{split}: {len(images)} images but {len(labels)} labels")
        count = len(images) if limit is None else min(limit, len(images))
        for index in range(count):
            label = int(labels[index])
            image = Image.fromarray(images[index], mode="L")
            if image_size != image.width:
                image = image.resize((image_size, image_size), Image.Resampling.BICUBIC)
            metadata = {"label": label, "class_name": FASHION_MNIST_CLASSES[label], "split": split}
            yield f"{split}{index:05d}", image, fashion_mnist_caption(label, index), metadata

    splits = {
        split: write_split(Path(output_dir) / split, samples(split), samples_per_shard)
        for split in ("train", "test")
    }
    info = DatasetInfo(
        name="fashion-mnist",
        splits=splits,
        class_names=FASHION_MNIST_CLASSES,
        caption_names=FASHION_MNIST_CAPTION_NAMES,
        caption_templates=FASHION_MNIST_TEMPLATES,
        image_size=image_size,
        label_key="label",
    )
    atomic_write_text(Path(output_dir) / "dataset.json", info.to_json())
    return info
