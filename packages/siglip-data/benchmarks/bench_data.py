"""Benchmark: decode + resize + tokenize from shards, siglip-data vs transformers processors.

    nox -s bench-data                      # 512 samples at 224 px
    nox -s bench-data -- --num-samples 2048 --image-size 384

Both pipelines read the same tar shards with the same reader, so the comparison is the
per-sample work: decode (Pillow), squash resize to ``image_size`` (bicubic), scale to [-1, 1],
tokenize to 64 ids. "theirs" is ``SiglipImageProcessorPil`` (the Pillow backend transformers uses
without torchvision) + ``SiglipTokenizer`` with ``padding="max_length"``, on the same
SentencePiece model. Everything runs in one process with one thread per core count stated.
The images are synthetic photo-like JPEGs (smooth structure plus texture, 320 to 640 px per side)
because no photo dataset installs offline.

The script also times a ViT-B/16-shaped image tower's training step (forward + backward, torch,
2 threads) to say whether the loader keeps a 2-core training step fed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

import siglip_data

WORDS = [
    "a",
    "photo",
    "of",
    "the",
    "small",
    "large",
    "red",
    "green",
    "blue",
    "black",
    "white",
    "dog",
    "cat",
    "bird",
    "car",
    "house",
    "tree",
    "street",
    "river",
    "mountain",
    "beach",
    "people",
    "person",
    "man",
    "woman",
    "child",
    "playing",
    "running",
    "sitting",
    "on",
    "in",
    "with",
    "near",
    "under",
    "over",
    "two",
    "three",
    "some",
    "field",
    "city",
    "night",
    "day",
    "sunny",
    "snow",
    "water",
    "food",
    "table",
]


def make_image(rng: np.random.Generator) -> bytes:
    """A photo-like JPEG: low-frequency colour structure, edges and fine texture."""
    width, height = (int(side) for side in rng.integers(320, 641, size=2))
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))
    texture = rng.normal(0, 12, (height, width, 3))
    pixels = np.clip(base + texture, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def make_caption(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(6, 25)))).capitalize() + "."


def build_shards(directory: Path, num_samples: int) -> tuple[list[str], Path]:
    rng = np.random.default_rng(0)
    samples = [(make_image(rng), make_caption(rng)) for _ in range(num_samples)]
    shards = siglip_data.write_shards(samples, directory / "shards", samples_per_shard=128)
    corpus = [make_caption(rng) for _ in range(5000)]
    model = siglip_data.train_sentencepiece(corpus, directory / "bench.model", vocab_size=64)
    return shards, model


def best_rate(run: Callable[[], int], repeats: int) -> float:
    """Samples per second of the fastest of ``repeats`` runs (least disturbed by other load)."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        count = run()
        rates.append(count / (time.perf_counter() - start))
    return max(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-samples", type=int, default=512)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()

    import transformers

    transformers.logging.set_verbosity_error()
    size = args.image_size
    with tempfile.TemporaryDirectory() as temporary:
        shards, model = build_shards(Path(temporary), args.num_samples)
        tokenizer = siglip_data.SentencePieceTokenizer(
            model, preset="siglip", length=64, canonicalize=True
        )
        hf_tokenizer = transformers.SiglipTokenizer(str(model), model_max_length=64)
        hf_images = transformers.SiglipImageProcessorPil(size={"height": size, "width": size})
        raw = [sample for shard in shards for sample in siglip_data.read_shard(shard)]
        captions = [sample.caption or "" for sample in raw]

        def ours(num_threads: int, jpeg_draft: bool = False) -> Callable[[], int]:
            def run() -> int:
                data = siglip_data.ImageTextDataset(
                    shards,
                    tokenizer=tokenizer,
                    image_size=size,
                    batch_size=args.batch_size,
                    shuffle=False,
                    num_threads=num_threads,
                    jpeg_draft=jpeg_draft,
                )
                return sum(len(batch["keys"]) for batch in data)

            return run

        def theirs() -> int:
            count = 0
            for shard in shards:
                samples = list(siglip_data.read_shard(shard))
                for start in range(0, len(samples), args.batch_size):
                    chunk = samples[start : start + args.batch_size]
                    images = [Image.open(io.BytesIO(s.image or b"")) for s in chunk]
                    pixels = hf_images(images, return_tensors="np")["pixel_values"]
                    ids = hf_tokenizer(
                        [s.caption or "" for s in chunk],
                        padding="max_length",
                        truncation=True,
                        max_length=64,
                        return_tensors="np",
                    )["input_ids"]
                    assert pixels.shape[0] == ids.shape[0]
                    count += len(chunk)
            return count

        def ours_tokenize() -> int:
            for start in range(0, len(captions), args.batch_size):
                tokenizer(captions[start : start + args.batch_size])
            return len(captions)

        def theirs_tokenize() -> int:
            for start in range(0, len(captions), args.batch_size):
                hf_tokenizer(
                    captions[start : start + args.batch_size],
                    padding="max_length",
                    truncation=True,
                    max_length=64,
                    return_tensors="np",
                )
            return len(captions)

        def decode_only() -> int:
            for sample in raw:
                Image.open(io.BytesIO(sample.image or b"")).load()
            return len(raw)

        def ours_images() -> int:
            for sample in raw:
                siglip_data.preprocess_image(sample.image or b"", size=size)
            return len(raw)

        def theirs_images() -> int:
            for start in range(0, len(raw), args.batch_size):
                chunk = raw[start : start + args.batch_size]
                hf_images(
                    [Image.open(io.BytesIO(s.image or b"")) for s in chunk], return_tensors="np"
                )
            return len(raw)

        # Check the two pipelines agree before timing them.
        first = next(
            iter(
                siglip_data.ImageTextDataset(
                    shards, tokenizer=tokenizer, image_size=size, batch_size=8, shuffle=False
                )
            )
        )
        reference = hf_images(
            [Image.open(io.BytesIO(s.image or b"")) for s in raw[:8]], return_tensors="np"
        )
        pixel_error = float(
            np.abs(first["pixels"] - reference["pixel_values"].transpose(0, 2, 3, 1)).max()
        )
        hf_ids = hf_tokenizer(
            captions[:8], padding="max_length", truncation=True, max_length=64, return_tensors="np"
        )
        assert np.array_equal(first["token_ids"], hf_ids["input_ids"]), "token ids differ"

        rates = {
            "pipeline_ours_1_core": best_rate(ours(0), args.repeats),
            "pipeline_theirs_1_core": best_rate(theirs, args.repeats),
            "pipeline_ours_jpeg_draft_1_core": best_rate(ours(0, jpeg_draft=True), args.repeats),
            "pipeline_ours_2_threads": best_rate(ours(2), args.repeats),
            "jpeg_decode_only": best_rate(decode_only, args.repeats),
            "images_ours": best_rate(ours_images, args.repeats),
            "images_theirs": best_rate(theirs_images, args.repeats),
            "tokenize_ours": best_rate(ours_tokenize, args.repeats),
            "tokenize_theirs": best_rate(theirs_tokenize, args.repeats),
        }
    step_rate = training_step_rate(size)
    results = {
        "num_samples": args.num_samples,
        "image_size": size,
        "cpu_count": os.cpu_count(),
        "max_pixel_difference_vs_hf": pixel_error,
        "rates_samples_per_s": rates,
        "vit_b16_train_step_samples_per_s_2_threads": step_rate,
    }
    print(render(results))
    if args.output is not None:
        args.output.write_text(json.dumps(results, indent=2), encoding="utf-8")


def training_step_rate(size: int) -> float | None:
    """Samples/s of a ViT-B/16-shaped image tower forward + backward on 2 torch threads."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(2)
    torch.manual_seed(0)
    width, depth, patch = 768, 12, 16
    layer = torch.nn.TransformerEncoderLayer(
        width, 12, 3072, activation="gelu", batch_first=True, norm_first=True
    )
    encoder = torch.nn.Sequential(
        torch.nn.Conv2d(3, width, patch, stride=patch), torch.nn.Flatten(2)
    )
    tower = torch.nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
    optimizer = torch.optim.SGD([*encoder.parameters(), *tower.parameters()], lr=1e-3)
    batch = 8
    pixels = torch.randn(batch, 3, size, size)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        tokens = encoder(pixels).transpose(1, 2)
        loss = tower(tokens).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def render(results: dict) -> str:
    rates = results["rates_samples_per_s"]
    size = results["image_size"]
    lines = [
        f"decode + resize to {size} px + tokenize (L=64) from {results['num_samples']} samples in tar shards "
        f"(synthetic photo-like JPEGs, 320-640 px); max |pixels - HF| = {results['max_pixel_difference_vs_hf']:.1e}, token ids equal",
        "",
        "| work | siglip-data (samples/s, 1 core) | transformers (samples/s, 1 core) | ratio |",
        "|---|---|---|---|",
    ]
    for label, ours, theirs in (
        ("full pipeline: shards -> batch", "pipeline_ours_1_core", "pipeline_theirs_1_core"),
        ("images only (decode + resize + scale)", "images_ours", "images_theirs"),
        ("tokenize only", "tokenize_ours", "tokenize_theirs"),
    ):
        lines.append(
            f"| {label} | {rates[ours]:,.0f} | {rates[theirs]:,.0f} | {rates[ours] / rates[theirs]:.2f}x |"
        )
    draft = rates["pipeline_ours_jpeg_draft_1_core"]
    lines.append(
        f"| full pipeline, `jpeg_draft=True` (not bit-exact) | {draft:,.0f} | "
        f"{rates['pipeline_theirs_1_core']:,.0f} | {draft / rates['pipeline_theirs_1_core']:.2f}x |"
    )
    lines.append(
        f"| JPEG decode alone (Pillow, shared by both) | {rates['jpeg_decode_only']:,.0f} | | |"
    )
    lines.append("")
    lines.append(
        f"siglip-data with 2 decode threads: {rates['pipeline_ours_2_threads']:,.0f} samples/s"
    )
    step = results["vit_b16_train_step_samples_per_s_2_threads"]
    if step is not None:
        share = step / rates["pipeline_ours_1_core"]
        lines.append(
            f"ViT-B/16-shaped image tower train step (fwd + bwd, batch 8, 2 threads): {step:,.1f} samples/s; "
            f"feeding it costs the loader {share:.1%} of one core"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
