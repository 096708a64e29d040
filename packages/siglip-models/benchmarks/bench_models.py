"""Throughput of our SigLIP towers (PyTorch eager, Flax jit) against transformers, CPU fp32.

    nox -s bench-models                    # B/16-224 image and text towers + a tiny training step,
                                           # then NaFlex B/16 at 256 and 1024 patches
    nox -s bench-models -- --repeats 3     # fewer timed repeats
    nox -s bench-models -- --only-naflex   # the NaFlex rows alone

NaFlex rows: ``siglip2-base-patch16-naflex`` image tower on a batch of mixed aspect ratios padded
to 256 and to 1024 patches, ours (torch eager, torch prepacked, Flax jit) against transformers'
``Siglip2Model`` (SDPA), plus the share of our torch forward spent resizing the position grid.

Every model gets the same weights (a random transformers SiglipModel saved to a temp dir and
loaded by all three) and the same number of threads. Ratios measured in the same run are what
count: on a shared machine absolute numbers move with the load.
"""

from __future__ import annotations

import argparse
import os
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
) -> str:
    """Time one sequence length; returns its markdown row."""
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
    times: dict[str, list[float]] = {key: [] for key in runs}
    with torch.inference_mode():
        for run in runs.values():
            run()
        for _ in range(args.naflex_repeats):  # interleaved: load drifts hit all alike
            for key, run in runs.items():
                start = time.perf_counter()
                run()
                times[key].append(time.perf_counter() - start)
    flax_seconds = _median_seconds(
        lambda: flax_image(state, *jax_inputs).block_until_ready(),
        repeats=args.naflex_repeats,
    )
    rate = {key: batch / statistics.median(values) for key, values in times.items()}
    rate["ours flax (jit)"] = batch / flax_seconds
    share = statistics.median(times["position resize"]) / statistics.median(times["ours torch"])
    hf, eager, prepacked = (
        rate["transformers Siglip2 (torch)"],
        rate["ours torch"],
        rate["ours torch prepacked"],
    )
    flax_rate = rate["ours flax (jit)"]
    for key in (*runs, "ours flax (jit)"):
        if key != "position resize":
            print(f"  naflex {length:5d} {key:30s} {rate[key]:8.3f} images/s", flush=True)
    return (
        f"| NaFlex B/16, {length} patches (images/s) | {batch} | {hf:.3f} | {eager:.3f} | "
        f"{prepacked:.3f} | {flax_rate:.3f} | {eager / hf:.2f}x | {prepacked / hf:.2f}x | "
        f"{flax_rate / max(eager, prepacked):.2f}x | {share:.2%} |"
    )


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


def _print_naflex_table(lines: list[str]) -> None:
    print()
    print(
        "| NaFlex image tower | batch | transformers Siglip2 | ours torch | ours torch prepacked "
        "| ours flax (jit) | torch / transformers | prepacked / transformers "
        "| flax / best of our torch | position resize / our torch forward |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for line in lines:
        print(line)


def _sigmoid_loss_torch(torch: Any, logits: Any) -> Any:
    labels = 2 * torch.eye(logits.shape[0]) - 1
    return -torch.nn.functional.logsigmoid(labels * logits).sum() / logits.shape[0]


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
    args = parser.parse_args()
    _configure_threads(args.threads)
    if args.only_naflex:
        import torch

        torch.set_num_threads(args.threads)
        print(f"# bench-models NaFlex: fp32 CPU, {args.threads} threads", flush=True)
        _print_naflex_table(naflex_rows(args))
        return 0

    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from flax import nnx

    from siglip_models import get_config
    from siglip_models.flax import SiglipModel as FlaxSiglipModel
    from siglip_models.torch import SiglipModel as TorchSiglipModel

    torch.set_num_threads(args.threads)
    config = get_config(args.model)
    print(
        f"# bench-models: {args.model}, fp32 CPU, {args.threads} threads, torch {torch.__version__}, "
        f"jax {jax.__version__}, {os.cpu_count()} CPUs visible",
        flush=True,
    )
    reference = _random_transformers_model(args.model)
    with tempfile.TemporaryDirectory() as directory:
        reference.save_pretrained(directory)
        ours = TorchSiglipModel.from_pretrained(directory)
        ours_packed = TorchSiglipModel.from_pretrained(directory).optimize_for_cpu_inference()
        ours_flax = FlaxSiglipModel.from_pretrained(directory)

    rng = np.random.default_rng(0)
    size = config.vision.image_size
    pixels = rng.uniform(-1, 1, (args.image_batch, size, size, 3)).astype(np.float32)
    token_ids = rng.integers(
        0, config.text.vocab_size, (args.text_batch, config.text.max_length)
    ).astype(np.int32)
    pixels_nchw = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    ids_torch = torch.from_numpy(token_ids).long()

    graphdef, state = nnx.split(ours_flax)
    flax_image = jax.jit(lambda s, x: nnx.merge(graphdef, s).encode_image(x))
    flax_text = jax.jit(lambda s, t: nnx.merge(graphdef, s).encode_text(t))
    pixels_jax, ids_jax = jnp.asarray(pixels), jnp.asarray(token_ids)

    # Same weights, same inputs: the outputs agree before anything is timed.
    with torch.inference_mode():
        expected_image = reference.vision_model(pixel_values=pixels_nchw[:1]).pooler_output
        got_image = ours.encode_image(pixels_nchw[:1])
        got_packed = ours_packed.encode_image(pixels_nchw[:1])
    assert torch.allclose(got_image, expected_image, atol=1e-4), "torch tower disagrees"
    assert torch.allclose(got_packed, expected_image, atol=1e-4), "prepacked tower disagrees"
    got_flax = np.asarray(ours_flax.encode_image(pixels_jax[:1]))
    assert np.allclose(got_flax, expected_image.numpy(), atol=1e-3), "flax tower disagrees"

    rows: list[tuple[str, str, float]] = []

    def measure(tower: str, runs: dict[str, Callable[[], Any]], items: int) -> None:
        """Interleave the implementations round by round, so load drifts hit them alike."""
        for run in runs.values():
            run()  # warm-up (and compile, for jit)
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        for name in runs:
            per_second = items / statistics.median(times[name])
            rows.append((tower, name, per_second))
            print(f"  {tower:5s} {name:22s} {per_second:8.2f} /s", flush=True)

    # torch first, JAX after: XLA's worker threads spin for a while after each call and would
    # steal the cores from torch runs interleaved with them.
    with torch.inference_mode():
        measure(
            "image",
            {
                "transformers (torch)": lambda: reference.vision_model(pixel_values=pixels_nchw),
                "ours torch": lambda: ours.encode_image(pixels_nchw),
                "ours torch prepacked": lambda: ours_packed.encode_image(pixels_nchw),
            },
            args.image_batch,
        )
        measure(
            "text",
            {
                "transformers (torch)": lambda: reference.text_model(input_ids=ids_torch),
                "ours torch": lambda: ours.encode_text(ids_torch),
                "ours torch prepacked": lambda: ours_packed.encode_text(ids_torch),
            },
            args.text_batch,
        )
    matmul = _matmul_gflops(torch, args.repeats)
    measure(
        "image",
        {"ours flax (jit)": lambda: flax_image(state, pixels_jax).block_until_ready()},
        args.image_batch,
    )
    measure(
        "text",
        {"ours flax (jit)": lambda: flax_text(state, ids_jax).block_until_ready()},
        args.text_batch,
    )

    # One training step (forward + backward, sigmoid loss inline) of a small config.
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

    import transformers

    from siglip_models import config_to_hf_dict

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
    measure("train", {"transformers (torch)": hf_step, "ours torch": torch_step}, 1)
    measure(
        "train",
        {
            "ours flax (jit)": lambda: jax.block_until_ready(
                flax_grad(train_state, train_pixels_jax, train_ids_jax)
            )
        },
        1,
    )

    rate = {(tower, implementation): value for tower, implementation, value in rows}
    gflop = _image_tower_gflop(config)
    print()
    print(
        f"B/16 image tower: {gflop:.1f} GFLOP/image; fp32 matmul measured in this run "
        f"{matmul:.0f} GFLOP/s ({args.threads} threads); machine shared with other jobs."
    )
    print()
    print(
        "| tower | batch | transformers | ours torch | ours torch prepacked | ours flax (jit) "
        "| torch / transformers | prepacked / transformers | flax / best of our torch |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    units = {"image": "images/s", "text": "texts/s", "train": "steps/s"}
    batches = {"image": args.image_batch, "text": args.text_batch, "train": batch}
    for tower in ("image", "text", "train"):
        hf = rate[(tower, "transformers (torch)")]
        eager = rate[(tower, "ours torch")]
        packed = rate.get((tower, "ours torch prepacked"))
        flax_rate = rate[(tower, "ours flax (jit)")]
        best = max(eager, packed or 0.0)
        label = tower if tower != "train" else f"train step, {args.train_model}"
        packed_rate = f"{packed:.2f}" if packed is not None else "n/a (grad)"
        packed_ratio = f"{packed / hf:.2f}x" if packed is not None else "n/a"
        print(
            f"| {label} ({units[tower]}) | {batches[tower]} | {hf:.2f} | {eager:.2f} | "
            f"{packed_rate} | {flax_rate:.2f} | {eager / hf:.2f}x | {packed_ratio} | "
            f"{flax_rate / best:.2f}x |"
        )
    print()
    for implementation in (
        "transformers (torch)",
        "ours torch",
        "ours torch prepacked",
        "ours flax (jit)",
    ):
        images = rate[("image", implementation)]
        print(
            f"image tower {implementation}: {images * gflop:.0f} GFLOP/s = "
            f"{images * gflop / 300:.0%} of 300 GFLOP/s, {images * gflop / matmul:.0%} of the "
            "matmul measured in this run"
        )
    _print_naflex_table(naflex_rows(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
