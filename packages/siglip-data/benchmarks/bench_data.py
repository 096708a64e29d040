"""Benchmark: decode + resize + tokenize from shards, siglip-data vs transformers processors.

    nox -s bench-data                      # 384 samples per scenario at 224 px
    nox -s bench-data -- --num-samples 2048 --image-size 384

Both pipelines read the same tar shards with the same reader, so the comparison is the
per-sample work: decode (Pillow), squash resize to ``image_size`` (bicubic), scale to [-1, 1],
tokenize to 64 ids. siglip-data resizes with its compiled Pillow-exact kernels when numba is
installed (the nox session installs ``siglip-data[fast]``) and says so; one row runs Pillow's own
resize for comparison. "theirs" is ``SiglipImageProcessorPil`` (the Pillow backend transformers uses
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
from typing import Any

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


def make_image(rng: np.random.Generator, min_side: int, max_side: int) -> bytes:
    """A photo-like JPEG: low-frequency colour structure plus fine texture."""
    width, height = (int(side) for side in rng.integers(min_side, max_side + 1, size=2))
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))
    texture = rng.normal(0, 12, (height, width, 3))
    pixels = np.clip(base + texture, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def make_caption(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(6, 25)))).capitalize() + "."


# (label, min side, max side) of the stored JPEGs.
SCENARIOS = (
    ("web-size photos, 320-640 px", 320, 640),
    ("img2dataset-style shards, 256 px", 256, 256),
)


def best_rate(run: Callable[[], int], repeats: int) -> float:
    """Samples per second of the fastest of ``repeats`` runs (least disturbed by other load)."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        count = run()
        rates.append(count / (time.perf_counter() - start))
    return max(rates)


def measure(
    directory: Path, min_side: int, max_side: int, args: argparse.Namespace, model: Path
) -> dict[str, Any]:
    """Rates of every pipeline on one set of shards (same files for ours and theirs)."""
    import transformers

    rng = np.random.default_rng(min_side)
    samples = [
        (make_image(rng, min_side, max_side), make_caption(rng)) for _ in range(args.num_samples)
    ]
    shards = siglip_data.write_shards(samples, directory, samples_per_shard=128)
    size = args.image_size
    tokenizer = siglip_data.SentencePieceTokenizer(
        model, preset="siglip", length=64, canonicalize=True, num_threads=1
    )
    hf_tokenizer = transformers.SiglipTokenizer(str(model), model_max_length=64)
    hf_images = transformers.SiglipImageProcessorPil(size={"height": size, "width": size})
    raw = [sample for shard in shards for sample in siglip_data.read_shard(shard)]
    captions = [sample.caption or "" for sample in raw]

    def hf_tokenize(texts: list[str]) -> np.ndarray:
        return hf_tokenizer(
            texts, padding="max_length", truncation=True, max_length=64, return_tensors="np"
        )["input_ids"]

    def hf_pixels(chunk: list[Any]) -> np.ndarray:
        images = [Image.open(io.BytesIO(sample.image or b"")) for sample in chunk]
        return hf_images(images, return_tensors="np")["pixel_values"]

    def ours(
        num_threads: int, jpeg_draft: bool = False, backend: str = "auto"
    ) -> Callable[[], int]:
        def run() -> int:
            data = siglip_data.ImageTextDataset(
                shards,
                tokenizer=tokenizer,
                image_size=size,
                batch_size=args.batch_size,
                shuffle=False,
                decode=siglip_data.DecodeOptions(
                    num_threads=num_threads,
                    jpeg_draft=jpeg_draft,
                    resize_backend=backend,  # type: ignore[arg-type]
                ),
            )
            return sum(len(batch["keys"]) for batch in data)

        return run

    def theirs() -> int:
        count = 0
        for shard in shards:
            chunk_samples = list(siglip_data.read_shard(shard))
            for start in range(0, len(chunk_samples), args.batch_size):
                chunk = chunk_samples[start : start + args.batch_size]
                pixels = hf_pixels(chunk)
                ids = hf_tokenize([sample.caption or "" for sample in chunk])
                assert pixels.shape[0] == ids.shape[0]
                count += len(chunk)
        return count

    def batched(work: Callable[[list[Any]], Any], items: list[Any]) -> Callable[[], int]:
        def run() -> int:
            for start in range(0, len(items), args.batch_size):
                work(items[start : start + args.batch_size])
            return len(items)

        return run

    def ours_images(chunk: list[Any]) -> None:
        for sample in chunk:
            siglip_data.preprocess_image(sample.image or b"", size=size)

    def decode_only(chunk: list[Any]) -> None:
        for sample in chunk:
            Image.open(io.BytesIO(sample.image or b"")).load()

    # The two pipelines must agree before their speed means anything.
    first = next(
        iter(
            siglip_data.ImageTextDataset(
                shards, tokenizer=tokenizer, image_size=size, batch_size=8, shuffle=False
            )
        )
    )
    reference = hf_pixels(raw[:8]).transpose(0, 2, 3, 1)
    pixel_error = float(np.abs(first["pixels"] - reference).max())
    assert np.array_equal(first["token_ids"], hf_tokenize(captions[:8])), "token ids differ"
    exact = first["pixels"]
    draft = next(
        iter(
            siglip_data.ImageTextDataset(
                shards,
                tokenizer=tokenizer,
                image_size=size,
                batch_size=8,
                shuffle=False,
                decode=siglip_data.DecodeOptions(jpeg_draft=True),
            )
        )
    )["pixels"]
    repeats = args.repeats
    return {
        "max_pixel_difference_vs_hf": pixel_error,
        "jpeg_draft_mean_abs_difference_levels": float(np.abs(draft - exact).mean() * 127.5),
        "pipeline_ours": best_rate(ours(0), repeats),
        "pipeline_theirs": best_rate(theirs, repeats),
        "pipeline_ours_pillow_resize": best_rate(ours(0, backend="pillow"), repeats),
        "pipeline_ours_jpeg_draft": best_rate(ours(0, jpeg_draft=True), repeats),
        "pipeline_ours_2_threads": best_rate(ours(2), repeats),
        "images_ours": best_rate(batched(ours_images, raw), repeats),
        "images_theirs": best_rate(batched(hf_pixels, raw), repeats),
        "jpeg_decode_only": best_rate(batched(decode_only, raw), repeats),
        "tokenize_ours": best_rate(batched(tokenizer, captions), repeats),
        "tokenize_theirs": best_rate(batched(hf_tokenize, captions), repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-samples", type=int, default=384)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()

    import transformers

    transformers.logging.set_verbosity_error()
    from siglip_data._resample import resolve_backend

    results: dict[str, Any] = {
        "resize_backend": resolve_backend("auto"),
        "num_samples": args.num_samples,
        "image_size": args.image_size,
        "cpu_count": os.cpu_count(),
        "scenarios": {},
    }
    with tempfile.TemporaryDirectory() as temporary:
        rng = np.random.default_rng(1)
        corpus = [make_caption(rng) for _ in range(5000)]
        model = siglip_data.train_sentencepiece(
            corpus, Path(temporary) / "bench.model", vocab_size=64
        )
        for index, (label, min_side, max_side) in enumerate(SCENARIOS):
            directory = Path(temporary) / f"scenario{index}"
            results["scenarios"][label] = measure(directory, min_side, max_side, args, model)
    results["vit_b16_train_step_samples_per_s_2_threads"] = training_step_rate(args.image_size)
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


def render(results: dict[str, Any]) -> str:
    size = results["image_size"]
    lines = [
        f"Decode + squash resize to {size} px (bicubic) + [-1, 1] + tokenize (L = 64) from tar "
        f"shards, {results['num_samples']} samples per scenario, one core, best of the repeats; "
        f"siglip-data resizes with {results['resize_backend']} unless a row says otherwise.",
        "",
        "| scenario | work | siglip-data (samples/s) | transformers (samples/s) | ratio |",
        "|---|---|---|---|---|",
    ]
    for label, rates in results["scenarios"].items():
        rows = (
            ("full pipeline, exact", rates["pipeline_ours"], rates["pipeline_theirs"]),
            (
                'full pipeline, exact, `resize_backend="pillow"`',
                rates["pipeline_ours_pillow_resize"],
                rates["pipeline_theirs"],
            ),
            (
                "full pipeline, `jpeg_draft=True`",
                rates["pipeline_ours_jpeg_draft"],
                rates["pipeline_theirs"],
            ),
            ("images only", rates["images_ours"], rates["images_theirs"]),
            ("tokenize only", rates["tokenize_ours"], rates["tokenize_theirs"]),
        )
        for work, ours, theirs in rows:
            lines.append(
                f"| {label} | {work} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.2f}x |"
            )
        lines.append(
            f"| {label} | JPEG decode alone (shared floor) | {rates['jpeg_decode_only']:,.0f} | | |"
        )
    lines.append("")
    for label, rates in results["scenarios"].items():
        lines.append(
            f"- {label}: max |ours - HF| pixels {rates['max_pixel_difference_vs_hf']:.1e}, token ids "
            f"equal; `jpeg_draft` moves pixels by {rates['jpeg_draft_mean_abs_difference_levels']:.2f} "
            f"levels on average; 2 decode threads: {rates['pipeline_ours_2_threads']:,.0f} samples/s"
        )
    step = results["vit_b16_train_step_samples_per_s_2_threads"]
    if step is not None:
        slowest = min(rates["pipeline_ours"] for rates in results["scenarios"].values())
        lines.append(
            f"- ViT-B/16-shaped image tower train step (forward + backward, batch 8, 2 threads): "
            f"{step:,.1f} samples/s; feeding it takes {step / slowest:.1%} of one core"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
