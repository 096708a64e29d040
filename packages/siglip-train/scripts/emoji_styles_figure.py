"""Draw docs/results/emoji_styles.png: the same emoji in each style (rows) the demo builds,
and the first style once more through the demo's training augmentation (last row).

Run with the demo's data built (``nox -s demo`` first, or any ``--data-root``):
``python packages/siglip-train/scripts/emoji_styles_figure.py --data-root runs/data --out docs/results/emoji_styles.png``
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image
from PIL import ImageDraw

from siglip_data import read_shard
from siglip_data.augment import BatchAugmentation
from siglip_data.augment import augment_batch
from siglip_data.builders import emoji_flippable
from siglip_data.builders import load_dataset_info

NAMES = (
    "grinning face",
    "red heart",
    "dog face",
    "hot beverage",
    "rocket",
    "umbrella with rain drops",
    "crab",
    "soccer ball",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-root", default="runs/data")
    parser.add_argument("--out", default="docs/results/emoji_styles.png")
    parser.add_argument("--styles", default="noto,twemoji,symbola")
    args = parser.parse_args()
    styles = args.styles.split(",")
    cell, label_width = 56, 70
    rows = len(styles) + 1
    figure = Image.new("RGB", (label_width + cell * len(NAMES), cell * rows), "white")
    first: dict[str, Image.Image] = {}
    draw = ImageDraw.Draw(figure)
    for row, style in enumerate(styles):
        info = load_dataset_info(Path(args.data_root) / f"emoji-{style}")
        found = {}
        for split in info.splits.values():
            for shard in split.shards:
                for sample in read_shard(shard):
                    if sample.caption in NAMES and sample.image is not None:
                        found[sample.caption] = sample.image
        draw.text((4, row * cell + cell // 2 - 6), style, fill="black")
        for column, name in enumerate(NAMES):
            if name not in found:
                continue
            image = Image.open(io.BytesIO(found[name])).convert("RGBA")
            image = image.resize((cell - 8, cell - 8), Image.Resampling.LANCZOS)
            figure.paste(image, (label_width + column * cell + 4, row * cell + 4), image)
            if row == 0:
                first[name] = image
    # The training augmentation (siglip_data.augment defaults) of the first style's images.
    names = [name for name in NAMES if name in first]
    pixels = np.stack([np.asarray(first[name]) for name in names])
    flippable = np.array([emoji_flippable(name, "") for name in names])
    augmented = augment_batch(
        pixels, config=BatchAugmentation(), seed=0, step=0, flippable=flippable
    )
    draw.text((4, len(styles) * cell + cell // 2 - 6), "augmented", fill="black")
    for column, name in enumerate(names):
        tile = Image.fromarray(augmented[column])
        figure.paste(tile, (label_width + NAMES.index(name) * cell + 4, len(styles) * cell + 4))
    figure.save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
