"""Throughput of our SigLIP towers against transformers, CPU fp32: eager, prepacked, compiled,
onnxruntime, Flax jit; and an end-to-end embed of JPEGs (decode + preprocess + tower).

    nox -s bench-models                    # everything (B/16-224, 1000 JPEGs end to end), then
                                           # NaFlex B/16 at 256 and 1024 patches
    nox -s bench-models -- --repeats 3     # fewer timed repeats
    nox -s bench-models -- --e2e-images 200 --skip-flax --skip-train
    nox -s bench-models -- --only-naflex   # the NaFlex rows alone
    nox -s bench-models -- --only-naflex --naflex-backends  # + compiled and onnxruntime NaFlex
    nox -s bench-models -- --only-e2e      # the end-to-end embed rows alone (1000 JPEGs)
    nox -s bench-models -- --only-bf16     # bfloat16 towers and end to end, both sides
    nox -s bench-models -- --only-profile  # where the prepacked image tower's time goes

NaFlex rows: ``siglip2-base-patch16-naflex`` image tower on a batch of mixed aspect ratios padded
to 256 and to 1024 patches, ours (torch eager, torch prepacked, Flax jit) against transformers'
``Siglip2Model`` (SDPA), plus the share of our torch forward spent resizing the position grid;
``--naflex-backends`` adds the compiled and the onnxruntime NaFlex towers at each length.

Every model gets the same weights (a random transformers SiglipModel saved to a temp dir and
loaded by all) and the same number of threads. Ratios measured in the same run are what count: on
a shared machine absolute numbers move with the load. The end-to-end rows run each side in its own
process, timed from start to exit (imports and model loading included): ``siglip-eval embed`` on a
folder against a loop of transformers' ``SiglipImageProcessorPil`` + ``get_image_features``.

bfloat16 rows (``--bf16`` adds them, ``--only-bf16`` runs them alone) cast both sides: transformers
``from_pretrained(dtype=torch.bfloat16)`` against ours ``to_inference_dtype(torch.bfloat16)``, eager
and prepacked. ``--profile`` (``--only-profile`` alone) prints a ``torch.profiler`` table of the
prepacked image tower at the end-to-end batch and the GEMM rate it reaches against oneDNN's packed
GEMM on the tower's MLP shape alone, the ceiling of a tower that is mostly GEMMs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any


def _configure_threads(threads: int) -> None:
    # Before jax / torch are imported: XLA reads its CPU flags once.
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = (
        f"{flags} --xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={threads}"
    ).strip()
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def _median_seconds(run: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _image_tower_gflop(config: Any) -> float:
    """Multiply-adds x 2 of one image through the B/16 tower (patch conv, blocks, MAP head)."""
    vision = config.vision
    tokens, width, mlp = vision.num_patches, vision.width, vision.mlp_dim
    patch = 2 * tokens * (3 * vision.patch_size**2) * width
    block = 2 * tokens * width * 3 * width  # q, k, v
    block += 2 * 2 * tokens * tokens * width  # scores and weighted sum
    block += 2 * tokens * width * width  # out projection
    block += 2 * 2 * tokens * width * mlp  # MLP
    head = 2 * tokens * width * 2 * width + 2 * 2 * tokens * width + 2 * 2 * width * mlp
    return (patch + vision.depth * block + head) / 1e9


def _interleaved_rates(
    runs: dict[str, Callable[[], Any]], items: int, repeats: int
) -> dict[str, float]:
    """Items/s of each run (median of ``repeats``), interleaved round by round so that load drifts
    hit every implementation alike. Warm up before calling."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: items / statistics.median(times[name]) for name in runs}


def _packed_gemm_gflops(torch: Any, dtype: Any, tokens: int, repeats: int) -> float:
    """oneDNN's pre-packed GEMM (what the prepacked tower calls) on the MLP's fc1 shape alone."""
    left = torch.randn(tokens, 768).to(dtype)
    weight = torch.ops.mkldnn._reorder_linear_weight(torch.randn(3072, 768).to(dtype), None)
    bias = torch.zeros(3072, dtype=dtype)

    def gemm() -> Any:
        return torch.ops.mkldnn._linear_pointwise(left, weight, bias, "none", [], "")

    with torch.inference_mode():
        seconds = _median_seconds(gemm, repeats=max(repeats, 5), warmup=2)
    return 2 * tokens * 768 * 3072 / seconds / 1e9


def decode_rows(args: argparse.Namespace, count: int = 200) -> None:
    """One thread's decode + preprocess time per JPEG of the end-to-end set: what ``embed`` does
    (siglip-data, Pillow or compiled resize) against transformers' processor."""
    import transformers
    from PIL import Image

    from siglip_data import preprocess_image

    with tempfile.TemporaryDirectory() as images:
        _write_jpegs(images, count)
        paths = sorted(os.path.join(images, name) for name in os.listdir(images))
        processor = transformers.SiglipImageProcessorPil(size={"height": 224, "width": 224})

        def transformers_batches() -> None:
            for start in range(0, len(paths), args.e2e_batch):
                opened = [
                    Image.open(path).convert("RGB")
                    for path in paths[start : start + args.e2e_batch]
                ]
                processor(opened, return_tensors="np")

        runs: dict[str, Callable[[], Any]] = {}
        backends = ["pillow"] + (["numba"] if _numba_installed() else [])
        for backend in backends:
            runs[f"siglip-data `preprocess_image`, {backend} resize"] = lambda backend=backend: [
                preprocess_image(path, size=224, resize_backend=backend) for path in paths
            ]
        runs["transformers `SiglipImageProcessorPil`"] = transformers_batches
        print()
        print(f"| decode + preprocess, {count} JPEGs of 320-640 px, one thread | ms per image |")
        print("|---|---|")
        for name, run in runs.items():
            seconds = _median_seconds(run, repeats=3, warmup=1)
            print(f"| {name} | {seconds / count * 1e3:.2f} |")
        resize = "numba" if _numba_installed() else "pillow"
        print(f"(`embed` uses the {resize} resize in this environment)")


def _numba_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("numba") is not None


def profile_rows(args: argparse.Namespace, directory: str, dtype_name: str) -> None:
    """``torch.profiler`` of the prepacked image tower at ``--e2e-batch``: time per op, and the
    GEMMs' rate against the same GEMM timed alone (the ceiling a GEMM-bound tower can reach)."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile

    from siglip_models.torch import SiglipModel as TorchSiglipModel

    dtype = getattr(torch, dtype_name)
    model = TorchSiglipModel.from_pretrained(directory)
    if dtype != torch.float32:
        model.to_inference_dtype(dtype)
    model.optimize_for_cpu_inference()
    vision = model.config.vision
    pixels = torch.rand(args.e2e_batch, 3, vision.image_size, vision.image_size) * 2 - 1
    with torch.inference_mode():
        model.encode_image(pixels)
        start = time.perf_counter()
        model.encode_image(pixels)
        plain_seconds = time.perf_counter() - start
        with profile(activities=[ProfilerActivity.CPU]) as trace:
            model.encode_image(pixels)
    events = sorted(trace.key_averages(), key=lambda event: -event.self_cpu_time_total)
    total = sum(event.self_cpu_time_total for event in events)
    tokens, width, mlp = vision.num_patches, vision.width, vision.mlp_dim
    gemm_flop = args.e2e_batch * vision.depth * 2 * tokens * width * (4 * width + 2 * mlp)
    print()
    print(
        f"prepacked image tower, {dtype_name}, batch {args.e2e_batch}, {args.threads} threads: "
        f"{args.e2e_batch / plain_seconds:.2f} images/s unprofiled"
    )
    print()
    print("| op (torch.profiler, self time) | share | ms per image |")
    print("|---|---|---|")
    shown = 0.0
    for event in events[:6]:
        share = event.self_cpu_time_total / total
        shown += share
        milliseconds = event.self_cpu_time_total / 1e3 / args.e2e_batch
        print(f"| `{event.key}` | {share:.1%} | {milliseconds:.1f} |")
    print(f"| everything else | {1 - shown:.1%} | |")
    linear = [event for event in events if event.key == "mkldnn::_linear_pointwise"]
    if linear:
        # Self time is the calling thread's wall time (oneDNN's worker threads run inside it).
        gemm_wall = linear[0].self_cpu_time_total / 1e6
        ceiling = _packed_gemm_gflops(torch, dtype, args.e2e_batch * tokens, args.repeats)
        rate = gemm_flop / gemm_wall / 1e9
        print()
        print(
            f"encoder GEMMs: {gemm_flop / 1e9:.0f} GFLOP in {gemm_wall:.2f} s = {rate:.0f} GFLOP/s; "
            f"the fc1 GEMM alone: {ceiling:.0f} GFLOP/s ({rate / ceiling:.0%} of it)"
        )


def _matmul_gflops(torch: Any, repeats: int) -> float:
    """What one fp32 matmul of the tower's MLP shape reaches here: the practical ceiling."""
    left = torch.randn(8 * 196, 768)
    right = torch.randn(768, 3072)
    seconds = _median_seconds(lambda: torch.mm(left, right), repeats=max(repeats, 5), warmup=2)
    return 2 * left.shape[0] * left.shape[1] * right.shape[1] / seconds / 1e9


def _random_transformers_model(name: str) -> Any:
    import torch
    import transformers

    from siglip_models import config_to_hf_dict
    from siglip_models import get_config

    hf_config = transformers.SiglipConfig.from_dict(config_to_hf_dict(get_config(name)))
    hf_config._attn_implementation = "sdpa"  # transformers' fastest CPU path
    with torch.device("meta"):
        model = transformers.SiglipModel(hf_config)
    model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            fan_in = parameter[0].numel() if parameter.ndim > 1 else 1
            parameter.normal_(0.0, min(fan_in**-0.5, 0.1), generator=generator)
        for buffer_name, buffer in model.named_buffers():
            if buffer_name.endswith("position_ids"):
                buffer.copy_(torch.arange(buffer.shape[-1]).expand_as(buffer))
    return model.eval()


def _random_siglip2_model(name: str) -> Any:
    """A transformers ``Siglip2Model`` (NaFlex) with random weights, built on the meta device."""
    import torch
    import transformers

    from siglip_models import config_to_hf_dict
    from siglip_models import get_config

    hf_config = transformers.Siglip2Config.from_dict(config_to_hf_dict(get_config(name)))
    hf_config._attn_implementation = "sdpa"
    with torch.device("meta"):
        model = transformers.Siglip2Model(hf_config)
    model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            fan_in = parameter[0].numel() if parameter.ndim > 1 else 1
            parameter.normal_(0.0, min(fan_in**-0.5, 0.1), generator=generator)
        for buffer_name, buffer in model.named_buffers():
            if buffer_name.endswith("position_ids"):
                buffer.copy_(torch.arange(buffer.shape[-1]).expand_as(buffer))
    return model.eval()


# Mixed aspect ratios (rows, cols) per sequence length: square, 4:7, 1:4 (a wide page or a
# screenshot strip) and 5:3; every one within the length, as naflex_preprocess makes them.
NAFLEX_SHAPES = {
    256: [(16, 16), (12, 21), (8, 32), (20, 12)],
    1024: [(32, 32), (24, 42), (16, 64), (40, 25)],
}


def _naflex_row(
    length: int,
    args: argparse.Namespace,
    models: tuple[Any, Any, Any],
    flax_run: tuple[Any, Any],
    rng: Any,
) -> tuple[str, str | None]:
    """Time one sequence length; returns its markdown row (and its backends row, when asked)."""
    import jax.numpy as jnp
    import numpy as np
    import torch

    from siglip_models.torch._naflex import resized_position_embedding

    reference, ours, packed = models
    flax_image, state = flax_run
    table = ours.vision_model.embeddings.position_embedding.weight
    shapes = NAFLEX_SHAPES[length][: args.naflex_batch]
    batch = len(shapes)
    spatial = torch.tensor(shapes, dtype=torch.int64)
    mask = torch.arange(length)[None, :] < spatial.prod(dim=1)[:, None]
    patches = torch.from_numpy(rng.uniform(-1, 1, (batch, length, 768)).astype(np.float32))
    inputs = (patches, mask, spatial)
    jax_inputs = (jnp.asarray(patches.numpy()), jnp.asarray(mask.numpy()), jnp.asarray(shapes))
    with torch.inference_mode():
        expected = reference.vision_model(
            pixel_values=patches, pixel_attention_mask=mask.int(), spatial_shapes=spatial
        ).pooler_output
        assert torch.allclose(ours.encode_image_naflex(*inputs), expected, atol=1e-4)
        assert torch.allclose(packed.encode_image_naflex(*inputs), expected, atol=1e-4)
    got = np.asarray(flax_image(state, *jax_inputs))
    assert np.allclose(got, expected.numpy(), atol=1e-3), "flax NaFlex tower disagrees"
    runs: dict[str, Callable[[], Any]] = {
        "transformers Siglip2 (torch)": lambda: reference.vision_model(
            pixel_values=patches, pixel_attention_mask=mask.int(), spatial_shapes=spatial
        ),
        "ours torch": lambda: ours.encode_image_naflex(*inputs),
        "ours torch prepacked": lambda: packed.encode_image_naflex(*inputs),
        "position resize": lambda: resized_position_embedding(table, spatial, length),
    }
    if args.naflex_backends:
        runs.update(_naflex_backend_runs(ours, length, inputs, expected))
    with torch.inference_mode():
        for run in runs.values():
            run()
        rate = _interleaved_rates(runs, batch, args.naflex_repeats)
    flax_seconds = _median_seconds(
        lambda: flax_image(state, *jax_inputs).block_until_ready(),
        repeats=args.naflex_repeats,
    )
    rate["ours flax (jit)"] = batch / flax_seconds
    share = rate["ours torch"] / rate["position resize"]  # the resize's time / the forward's
    hf, eager, prepacked = (
        rate["transformers Siglip2 (torch)"],
        rate["ours torch"],
        rate["ours torch prepacked"],
    )
    flax_rate = rate["ours flax (jit)"]
    for key in (*runs, "ours flax (jit)"):
        if key != "position resize":
            print(f"  naflex {length:5d} {key:30s} {rate[key]:8.3f} images/s", flush=True)
    row = (
        f"| NaFlex B/16, {length} patches (images/s) | {batch} | {hf:.3f} | {eager:.3f} | "
        f"{prepacked:.3f} | {flax_rate:.3f} | {eager / hf:.2f}x | {prepacked / hf:.2f}x | "
        f"{flax_rate / max(eager, prepacked):.2f}x | {share:.2%} |"
    )
    if not args.naflex_backends:
        return row, None
    ours_rates = {key: rate[key] for key in NAFLEX_BACKENDS}
    best = max(ours_rates, key=ours_rates.__getitem__)
    cells = " | ".join(f"{value:.3f} ({value / hf:.2f}x)" for value in ours_rates.values())
    backends_row = (
        f"| NaFlex B/16, {length} patches (images/s) | {batch} | {hf:.3f} | {cells} | "
        f"**{ours_rates[best] / hf:.2f}x** ({best.removeprefix('ours ')}) |"
    )
    return row, backends_row


# The backends row of --naflex-backends, in column order.
NAFLEX_BACKENDS = (
    "ours torch",
    "ours torch prepacked",
    "ours compiled",
    "ours onnxruntime",
    "ours flax (jit)",
)


def _naflex_backend_runs(
    ours: Any, length: int, inputs: tuple[Any, ...], expected: Any
) -> dict[str, Callable[[], Any]]:
    """The compiled and the onnxruntime NaFlex tower at this ``length``, checked, to be timed."""
    import numpy as np
    import torch

    from siglip_models.onnx import OnnxTower
    from siglip_models.torch import compile_towers
    from siglip_models.torch import export_onnx

    compiled = compile_towers(ours)
    start = time.perf_counter()
    assert torch.allclose(compiled.encode_image_naflex(*inputs), expected, atol=1e-4)
    print(f"  naflex {length:5d} compiled in {time.perf_counter() - start:.0f} s", flush=True)
    with tempfile.TemporaryDirectory() as directory:
        start = time.perf_counter()
        path = export_onnx(ours, f"{directory}/naflex.onnx", tower="image", max_num_patches=length)
        print(f"  naflex {length:5d} exported in {time.perf_counter() - start:.0f} s", flush=True)
        tower = OnnxTower(path, threads=torch.get_num_threads())  # reads the weights in now
    arrays = [tensor.numpy() for tensor in inputs]
    assert np.allclose(tower(*arrays), expected.numpy(), atol=1e-4), "onnx NaFlex disagrees"
    return {
        "ours compiled": lambda: compiled.encode_image_naflex(*inputs),
        "ours onnxruntime": lambda: tower(*arrays),
    }


def naflex_rows(args: argparse.Namespace) -> list[str]:
    """Time the NaFlex B/16 image tower; returns the markdown table rows."""
    import jax
    import numpy as np
    from flax import nnx

    from siglip_models.flax import SiglipModel as FlaxSiglipModel
    from siglip_models.torch import SiglipModel as TorchSiglipModel

    name = "siglip2-base-patch16-naflex"
    reference = _random_siglip2_model(name)
    with tempfile.TemporaryDirectory() as directory:
        reference.save_pretrained(directory)
        ours = TorchSiglipModel.from_pretrained(directory)
        packed = TorchSiglipModel.from_pretrained(directory).optimize_for_cpu_inference()
        ours_flax = FlaxSiglipModel.from_pretrained(directory)
    graphdef, state = nnx.split(ours_flax)
    flax_image = jax.jit(lambda s, p, m, h: nnx.merge(graphdef, s).encode_image_naflex(p, m, h))
    rng = np.random.default_rng(0)
    models = (reference, ours, packed)
    return [
        _naflex_row(length, args, models, (flax_image, state), rng)
        for length in args.naflex_lengths
    ]


def _print_naflex_table(rows: list[tuple[str, str | None]]) -> None:
    print()
    print(
        "| NaFlex image tower | batch | transformers Siglip2 | ours torch | ours torch prepacked "
        "| ours flax (jit) | torch / transformers | prepacked / transformers "
        "| flax / best of our torch | position resize / our torch forward |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for line, _ in rows:
        print(line)
    backends = [line for _, line in rows if line is not None]
    if backends:
        print()
        print(
            "| NaFlex image tower, backends | batch | transformers Siglip2 | ours eager "
            "| ours prepacked | ours compiled | ours onnxruntime | ours Flax (jit) "
            "| best / transformers |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for line in backends:
            print(line)


def _sigmoid_loss_torch(torch: Any, logits: Any) -> Any:
    labels = 2 * torch.eye(logits.shape[0]) - 1
    return -torch.nn.functional.logsigmoid(labels * logits).sum() / logits.shape[0]


def _write_jpegs(directory: Any, count: int, seed: int = 0) -> None:
    """``count`` photo-like JPEGs of 320-640 px (smooth noise, quality 90)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for index in range(count):
        width, height = (int(side) for side in rng.integers(320, 641, 2))
        coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
        image.save(os.path.join(directory, f"photo{index:05d}.jpg"), quality=90)


def _transformers_embed_loop(
    images: str, model: str, batch: int, threads: int, dtype_name: str = "float32"
) -> int:
    """The reference end to end: transformers' processor and model over a folder of JPEGs."""
    import torch
    import transformers
    from PIL import Image

    torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    reference = transformers.SiglipModel.from_pretrained(
        model, attn_implementation="sdpa", dtype=dtype
    ).eval()
    size = reference.config.vision_config.image_size
    processor = transformers.SiglipImageProcessorPil(size={"height": size, "width": size})
    paths = sorted(os.path.join(images, name) for name in os.listdir(images))
    rows = []
    with torch.inference_mode():
        for start in range(0, len(paths), batch):
            opened = [Image.open(path).convert("RGB") for path in paths[start : start + batch]]
            pixels = processor(opened, return_tensors="pt")["pixel_values"].to(dtype)
            output = reference.get_image_features(pixel_values=pixels)
            rows.append(getattr(output, "pooler_output", output).float())
    embeddings = torch.cat(rows)
    assert embeddings.shape[0] == len(paths)
    torch.save(embeddings, os.path.join(f"{images}-transformers-{dtype_name}.pt"))
    return 0


def _timed_process(command: list[str]) -> float:
    import subprocess

    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--image-batch", type=int, default=8)
    parser.add_argument("--text-batch", type=int, default=32)
    parser.add_argument("--model", default="siglip-base-patch16-224")
    parser.add_argument("--train-model", default="tiny-test")
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument(
        "--naflex-lengths",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[256, 1024],
        help="NaFlex sequence lengths to time (256 and/or 1024)",
    )
    parser.add_argument("--naflex-batch", type=int, default=4, help="images per NaFlex batch")
    parser.add_argument("--naflex-repeats", type=int, default=5)
    parser.add_argument("--only-naflex", action="store_true", help="time the NaFlex rows only")
    parser.add_argument(
        "--naflex-backends",
        action="store_true",
        help="NaFlex rows also time the compiled (Inductor) and onnxruntime towers at each length",
    )
    parser.add_argument("--e2e-images", type=int, default=1000, help="0 skips the end to end")
    parser.add_argument("--e2e-batch", type=int, default=32)
    parser.add_argument("--e2e-repeats", type=int, default=3)
    parser.add_argument(
        "--only-e2e", action="store_true", help="time the end-to-end embed rows only"
    )
    parser.add_argument(
        "--e2e-backends",
        type=lambda text: text.split(","),
        default=["eager", "prepacked", "onnx"],
        help="the `siglip-eval embed --backend` values timed end to end (comma-separated)",
    )
    parser.add_argument(
        "--bf16", action="store_true", help="also time bfloat16 towers and end to end, both sides"
    )
    parser.add_argument("--only-bf16", action="store_true", help="time the bfloat16 rows only")
    parser.add_argument(
        "--profile", action="store_true", help="also profile the prepacked image tower"
    )
    parser.add_argument("--only-profile", action="store_true", help="profile it, nothing else")
    parser.add_argument("--skip-flax", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument(
        "--e2e-transformers-worker",
        nargs=3,
        metavar=("IMAGES", "MODEL", "DTYPE"),
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args()
    unknown = set(args.e2e_backends) - {"eager", "prepacked", "compile", "onnx"}
    if unknown:
        parser.error(f"--e2e-backends: eager, prepacked, compile or onnx, got {sorted(unknown)}")
    _configure_threads(args.threads)
    if args.e2e_transformers_worker:
        images, model, dtype_name = args.e2e_transformers_worker
        return _transformers_embed_loop(images, model, args.e2e_batch, args.threads, dtype_name)
    if args.only_naflex:
        import torch

        torch.set_num_threads(args.threads)
        print(f"# bench-models NaFlex: fp32 CPU, {args.threads} threads", flush=True)
        _print_naflex_table(naflex_rows(args))
        return 0

    import numpy as np
    import torch

    from siglip_models import get_config
    from siglip_models.onnx import OnnxTower
    from siglip_models.torch import SiglipModel as TorchSiglipModel
    from siglip_models.torch import compile_towers
    from siglip_models.torch import export_onnx

    torch.set_num_threads(args.threads)
    config = get_config(args.model)
    load = os.getloadavg()
    print(
        f"# bench-models: {args.model}, fp32 CPU, {args.threads} threads, torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs visible, load average at start {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f}",
        flush=True,
    )
    workdir = tempfile.mkdtemp(prefix="bench-models-")
    directory = os.path.join(workdir, "model")
    reference = _random_transformers_model(args.model)
    reference.save_pretrained(directory)
    dtypes = ["bfloat16"] if args.only_bf16 else ["float32"] + (["bfloat16"] if args.bf16 else [])
    if args.only_profile or args.only_bf16:
        if args.only_profile:
            for dtype_name in dtypes:
                profile_rows(args, directory, dtype_name)
            decode_rows(args)
        else:
            bf16_tower_rows(args, reference, directory)
            _print_e2e_table(args, _e2e_rows(args, workdir, directory, "", dtypes))
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    ours = TorchSiglipModel.from_pretrained(directory)
    ours_packed = TorchSiglipModel.from_pretrained(directory).optimize_for_cpu_inference()
    ours_compiled = compile_towers(TorchSiglipModel.from_pretrained(directory))
    setup: dict[str, float] = {}
    onnx_dir = os.path.join(workdir, "onnx")
    onnx_towers = {}
    for tower in ("image", "text"):
        start = time.perf_counter()
        path = export_onnx(ours, os.path.join(onnx_dir, f"{tower}-float32.onnx"), tower=tower)
        setup[f"export {tower}"] = time.perf_counter() - start
        onnx_towers[tower] = OnnxTower(path, threads=args.threads)
    if args.only_e2e:
        _print_e2e_table(args, _e2e_rows(args, workdir, directory, onnx_dir, dtypes))
        shutil.rmtree(workdir, ignore_errors=True)
        return 0

    rng = np.random.default_rng(0)
    size = config.vision.image_size
    pixels = rng.uniform(-1, 1, (args.image_batch, size, size, 3)).astype(np.float32)
    token_ids = rng.integers(
        0, config.text.vocab_size, (args.text_batch, config.text.max_length)
    ).astype(np.int32)
    pixels_nchw = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    pixels_numpy = pixels_nchw.numpy()
    ids_torch = torch.from_numpy(token_ids).long()
    ids_numpy = ids_torch.numpy()

    # Same weights, same inputs: the outputs agree before anything is timed (compiling here).
    with torch.inference_mode():
        expected_image = reference.vision_model(pixel_values=pixels_nchw).pooler_output
        expected_text = reference.text_model(input_ids=ids_torch).pooler_output
        checks = {
            "ours eager": (ours.encode_image(pixels_nchw), ours.encode_text(ids_torch)),
            "ours prepacked": (
                ours_packed.encode_image(pixels_nchw),
                ours_packed.encode_text(ids_torch),
            ),
        }
    for tower, run in (("image", ours_compiled.encode_image), ("text", ours_compiled.encode_text)):
        start = time.perf_counter()
        run(pixels_nchw if tower == "image" else ids_torch)
        setup[f"compile {tower}"] = time.perf_counter() - start
    checks["ours compiled"] = (
        ours_compiled.encode_image(pixels_nchw),
        ours_compiled.encode_text(ids_torch),
    )
    checks["ours onnxruntime"] = (
        torch.from_numpy(onnx_towers["image"](pixels_numpy)),
        torch.from_numpy(onnx_towers["text"](ids_numpy)),
    )
    for name, (image, text) in checks.items():
        image_error = float((image - expected_image).abs().max())
        text_error = float((text - expected_text).abs().max())
        print(
            f"  {name:18s} max |diff| vs transformers: image {image_error:.1e}, text "
            f"{text_error:.1e}",
            flush=True,
        )
        assert image_error < 1e-4, name
        assert text_error < 1e-4, name
    # Another batch size must not recompile (one graph for every batch >= 2).
    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    start = time.perf_counter()
    ours_compiled.encode_image(pixels_nchw[: max(2, args.image_batch // 2 + 1)])
    ours_compiled.encode_text(ids_torch[: max(2, args.text_batch // 2 + 1)])
    other_batch = time.perf_counter() - start
    print(
        f"  compiled, another batch size: {counters['stats']['unique_graphs'] - graphs} new "
        f"graphs, {other_batch:.1f} s",
        flush=True,
    )
    for name, seconds in setup.items():
        print(f"  {name}: {seconds:.0f} s", flush=True)

    rows: list[tuple[str, str, float]] = []

    def measure(tower: str, runs: dict[str, Callable[[], Any]], items: int) -> None:
        for run in runs.values():
            run()  # warm-up (and compile, for jit)
        for name, per_second in _interleaved_rates(runs, items, args.repeats).items():
            rows.append((tower, name, per_second))
            print(f"  {tower:5s} {name:22s} {per_second:8.2f} /s", flush=True)

    with torch.inference_mode():
        measure(
            "image",
            {
                "transformers": lambda: reference.vision_model(pixel_values=pixels_nchw),
                "ours eager": lambda: ours.encode_image(pixels_nchw),
                "ours prepacked": lambda: ours_packed.encode_image(pixels_nchw),
                "ours compiled": lambda: ours_compiled.encode_image(pixels_nchw),
                "ours onnxruntime": lambda: onnx_towers["image"](pixels_numpy),
            },
            args.image_batch,
        )
        measure(
            "text",
            {
                "transformers": lambda: reference.text_model(input_ids=ids_torch),
                "ours eager": lambda: ours.encode_text(ids_torch),
                "ours prepacked": lambda: ours_packed.encode_text(ids_torch),
                "ours compiled": lambda: ours_compiled.encode_text(ids_torch),
                "ours onnxruntime": lambda: onnx_towers["text"](ids_numpy),
            },
            args.text_batch,
        )
    matmul = _matmul_gflops(torch, args.repeats)

    e2e = _e2e_rows(args, workdir, directory, onnx_dir, dtypes)
    if args.bf16:
        bf16_tower_rows(args, reference, directory)

    flax_rates: dict[str, float] = {}
    if not args.skip_flax:
        flax_rates = _flax_rows(args, directory, pixels, token_ids, measure, rows)
    if not args.skip_train:
        _train_rows(args, measure, rng)

    rate = {(tower, implementation): value for tower, implementation, value in rows}
    gflop = _image_tower_gflop(config)
    print()
    print(
        f"B/16 image tower: {gflop:.1f} GFLOP/image; fp32 matmul measured in this run "
        f"{matmul:.0f} GFLOP/s ({args.threads} threads); load average now "
        f"{os.getloadavg()[0]:.1f}."
    )
    print()
    names = ["ours eager", "ours prepacked", "ours compiled", "ours onnxruntime"]
    print(
        "| tower | batch | transformers | "
        + " | ".join(names)
        + " | best / transformers |"
        + (" ours flax (jit) |" if flax_rates else "")
    )
    print("|---|---|---|" + "---|" * len(names) + "---|" + ("---|" if flax_rates else ""))
    units = {"image": "images/s", "text": "texts/s"}
    batches = {"image": args.image_batch, "text": args.text_batch}
    for tower in ("image", "text"):
        hf = rate[(tower, "transformers")]
        cells = [f"{rate[(tower, name)]:.2f} ({rate[(tower, name)] / hf:.2f}x)" for name in names]
        best = max(names, key=lambda name: rate[(tower, name)])
        flax_cell = f" {rate[(tower, 'ours flax (jit)')]:.2f} |" if flax_rates else ""
        print(
            f"| {tower} ({units[tower]}) | {batches[tower]} | {hf:.2f} | "
            + " | ".join(cells)
            + f" | **{rate[(tower, best)] / hf:.2f}x** ({best[5:]}) |"
            + flax_cell
        )
    _print_e2e_table(args, e2e)
    if args.profile:
        for dtype_name in dtypes:
            profile_rows(args, directory, dtype_name)
        decode_rows(args)
    print()
    for implementation in ("transformers", *names):
        images_per_second = rate[("image", implementation)]
        print(
            f"image tower {implementation}: {images_per_second * gflop:.0f} GFLOP/s = "
            f"{images_per_second * gflop / matmul:.0%} of the matmul measured in this run"
        )
    shutil.rmtree(workdir, ignore_errors=True)
    if not args.skip_flax:  # the NaFlex rows have a Flax column
        _print_naflex_table(naflex_rows(args))
    return 0


_TRANSFORMERS_LOOP = "transformers processor + model"


def _e2e_name(side: str, dtype_name: str) -> str:
    return side if dtype_name == "float32" else f"{side} ({dtype_name})"


def _e2e_dtype(name: str) -> str:
    return name[name.rindex("(") + 1 : -1] if name.endswith(")") else "float32"


def _e2e_rows(
    args: Any, workdir: str, directory: str, onnx_dir: str, dtypes: list[str]
) -> dict[str, float]:
    """Images/s of each end-to-end embed command on the same JPEGs, each in its own process,
    interleaved round by round (``--e2e-repeats``), median per command; one transformers loop and
    one command per ``--e2e-backends`` entry for each dtype (onnx: float32 only)."""
    import numpy as np
    import torch

    e2e: dict[str, float] = {}
    if not args.e2e_images:
        return e2e
    images = os.path.join(workdir, "jpegs")
    os.makedirs(images)
    _write_jpegs(images, args.e2e_images)
    python = sys.executable
    commands: dict[str, list[str]] = {}
    outputs: dict[str, str] = {}
    for dtype_name in dtypes:
        commands[_e2e_name(_TRANSFORMERS_LOOP, dtype_name)] = [
            python, os.path.abspath(__file__), "--threads", str(args.threads),
            "--e2e-batch", str(args.e2e_batch),
            "--e2e-transformers-worker", images, directory, dtype_name,
        ]  # fmt: skip
        for backend in args.e2e_backends:
            if backend == "onnx" and dtype_name != "float32":
                continue  # onnxruntime has no bfloat16 CPU kernels
            name = _e2e_name(f"siglip-eval embed --backend {backend}", dtype_name)
            onnx = ["--onnx-dir", onnx_dir] if backend == "onnx" else []
            commands[name] = [
                python, "-m", "siglip_eval", "embed", "--model", directory,
                "--input", f"folder:{images}", "--backend", backend, *onnx,
                "--dtype", dtype_name, "--threads", str(args.threads), "--workers", "2",
                "--batch-size", str(args.e2e_batch), "--no-progress",
            ]  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in commands}
    for repeat in range(args.e2e_repeats):
        for index, (name, command) in enumerate(commands.items()):
            extra: list[str] = []
            if "siglip-eval" in name:
                out = os.path.join(workdir, f"embed-{repeat}-{index}")
                outputs.setdefault(name, out)  # the first round's output is checked below
                extra = ["--out", out]
            times[name].append(_timed_process(command + extra))
            print(
                f"  e2e {name:48s} {args.e2e_images / times[name][-1]:8.2f} images/s",
                flush=True,
            )
    for name in commands:
        e2e[name] = args.e2e_images / statistics.median(times[name])
    for dtype_name in dtypes:
        theirs = torch.load(f"{images}-transformers-{dtype_name}.pt").numpy()
        theirs = theirs / np.linalg.norm(theirs, axis=1, keepdims=True)
        for name, out in outputs.items():
            if _e2e_dtype(name) == dtype_name:
                ours = np.load(os.path.join(out, "embeddings.npy"))
                print(
                    f"  e2e: {name} vs transformers ({dtype_name}) embeddings, max |diff| "
                    f"{np.abs(ours - theirs).max():.1e} (same pixels: Pillow bicubic, "
                    "x / 127.5 - 1)",
                    flush=True,
                )
    return e2e


def _print_e2e_table(args: Any, e2e: dict[str, float]) -> None:
    if not e2e:
        return
    print()
    print(
        f"| end to end, {args.e2e_images} JPEGs 320-640 px, batch {args.e2e_batch} | images/s "
        "| vs transformers (same dtype) |"
    )
    print("|---|---|---|")
    for name, value in e2e.items():
        reference = e2e[_e2e_name(_TRANSFORMERS_LOOP, _e2e_dtype(name))]
        print(f"| {name} | {value:.2f} | {value / reference:.2f}x |")


def bf16_tower_rows(args: Any, reference: Any, directory: str) -> None:
    """bfloat16 image and text towers, both sides cast: transformers vs ours eager / prepacked."""
    import copy

    import torch

    from siglip_models.torch import SiglipModel as TorchSiglipModel

    theirs = copy.deepcopy(reference).to(torch.bfloat16)
    eager = TorchSiglipModel.from_pretrained(directory).to_inference_dtype(torch.bfloat16)
    packed = TorchSiglipModel.from_pretrained(directory).to_inference_dtype(torch.bfloat16)
    packed.optimize_for_cpu_inference()
    vision, text = eager.config.vision, eager.config.text
    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand(
        args.e2e_batch, 3, vision.image_size, vision.image_size, generator=generator
    )
    pixels = pixels * 2 - 1
    ids = torch.randint(0, text.vocab_size, (args.text_batch, text.max_length), generator=generator)

    def unit(embeddings: Any) -> Any:
        return torch.nn.functional.normalize(embeddings.float(), dim=-1)

    runs = {
        "image": {
            "transformers": lambda: (
                theirs.vision_model(pixel_values=pixels.bfloat16()).pooler_output
            ),
            "ours eager": lambda: eager.encode_image(pixels),
            "ours prepacked": lambda: packed.encode_image(pixels),
        },
        "text": {
            "transformers": lambda: theirs.text_model(input_ids=ids).pooler_output,
            "ours eager": lambda: eager.encode_text(ids),
            "ours prepacked": lambda: packed.encode_text(ids),
        },
    }
    items = {"image": args.e2e_batch, "text": args.text_batch}
    rates: dict[tuple[str, str], float] = {}
    with torch.inference_mode():
        exact = {
            "image": unit(reference.vision_model(pixel_values=pixels).pooler_output),
            "text": unit(reference.text_model(input_ids=ids).pooler_output),
        }
        for tower, implementations in runs.items():
            errors = {
                name: float((unit(run()) - exact[tower]).abs().max())
                for name, run in implementations.items()
            }
            print(
                f"  bfloat16 {tower}: max |diff| of unit embeddings vs float32 transformers: "
                + ", ".join(f"{name} {error:.1e}" for name, error in errors.items()),
                flush=True,
            )
            # The error check above was the warm-up.
            for name, per_second in _interleaved_rates(
                implementations, items[tower], args.repeats
            ).items():
                rates[(tower, name)] = per_second
    print()
    print(
        "| tower, bfloat16 | batch | transformers | ours eager | ours prepacked | best / transformers |"
    )
    print("|---|---|---|---|---|---|")
    for tower, unit_name in (("image", "images/s"), ("text", "texts/s")):
        hf = rates[(tower, "transformers")]
        cells = [
            f"{rates[(tower, name)]:.2f} ({rates[(tower, name)] / hf:.2f}x)"
            for name in ("ours eager", "ours prepacked")
        ]
        best = max(rates[(tower, "ours eager")], rates[(tower, "ours prepacked")])
        print(
            f"| {tower} ({unit_name}) | {items[tower]} | {hf:.2f} | "
            + " | ".join(cells)
            + f" | **{best / hf:.2f}x** |"
        )


def _flax_rows(
    args: Any, directory: str, pixels: Any, token_ids: Any, measure: Any, rows: Any
) -> dict[str, float]:
    """Flax under jit, after torch: XLA's worker threads spin after each call and would steal the
    cores from torch runs interleaved with them."""
    import jax
    import jax.numpy as jnp

    from siglip_models.flax import SiglipModel as FlaxSiglipModel
    from siglip_models.flax import jit_towers

    towers = jit_towers(FlaxSiglipModel.from_pretrained(directory))
    pixels_jax, ids_jax = jnp.asarray(pixels), jnp.asarray(token_ids)
    measure(
        "image",
        {"ours flax (jit)": lambda: towers.encode_image(pixels_jax).block_until_ready()},
        args.image_batch,
    )
    measure(
        "text",
        {"ours flax (jit)": lambda: jax.block_until_ready(towers.encode_text(ids_jax))},
        args.text_batch,
    )
    return {tower: value for tower, name, value in rows if name == "ours flax (jit)"}


def _train_rows(args: Any, measure: Any, rng: Any) -> None:
    """One training step (forward + backward, sigmoid loss inline) of a small config."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    import transformers
    from flax import nnx

    from siglip_models import config_to_hf_dict
    from siglip_models import get_config
    from siglip_models.flax import SiglipModel as FlaxSiglipModel
    from siglip_models.torch import SiglipModel as TorchSiglipModel

    train_config = get_config(args.train_model)
    batch = args.train_batch
    train_size = train_config.vision.image_size
    train_pixels = rng.uniform(-1, 1, (batch, train_size, train_size, 3)).astype(np.float32)
    train_ids = rng.integers(
        0, train_config.text.vocab_size, (batch, train_config.text.max_length)
    ).astype(np.int32)
    train_nchw = torch.from_numpy(train_pixels).permute(0, 3, 1, 2).contiguous()
    train_ids_torch = torch.from_numpy(train_ids).long()
    torch_train = TorchSiglipModel(train_config).train()

    def torch_step() -> None:
        torch_train.zero_grad(set_to_none=True)
        out = torch_train(train_nchw, train_ids_torch)
        _sigmoid_loss_torch(torch, out.logits_per_image).backward()

    hf_train = transformers.SiglipModel(
        transformers.SiglipConfig.from_dict(config_to_hf_dict(train_config))
    ).train()

    def hf_step() -> None:
        hf_train.zero_grad(set_to_none=True)
        out = hf_train(pixel_values=train_nchw, input_ids=train_ids_torch)
        _sigmoid_loss_torch(torch, out.logits_per_image).backward()

    flax_train = FlaxSiglipModel(train_config)
    train_graphdef, train_state = nnx.split(flax_train)

    def flax_loss(train_params: Any, pixels: Any, ids: Any) -> Any:
        logits = nnx.merge(train_graphdef, train_params)(pixels, ids).logits_per_image
        labels = 2 * jnp.eye(logits.shape[0]) - 1
        return -jnp.sum(jax.nn.log_sigmoid(labels * logits)) / logits.shape[0]

    flax_grad = jax.jit(jax.grad(flax_loss))
    train_pixels_jax, train_ids_jax = jnp.asarray(train_pixels), jnp.asarray(train_ids)
    measure("train", {"transformers": hf_step, "ours torch": torch_step}, 1)
    measure(
        "train",
        {
            "ours flax (jit)": lambda: jax.block_until_ready(
                flax_grad(train_state, train_pixels_jax, train_ids_jax)
            )
        },
        1,
    )


if __name__ == "__main__":
    sys.exit(main())
