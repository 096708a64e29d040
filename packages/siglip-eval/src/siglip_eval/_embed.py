"""``siglip-eval embed``: a folder of images, WebDataset shards or a text file -> embeddings + keys.

Why here: embedding a dataset is the first half of every evaluation, and siglip-eval already
holds what it needs (the model adapters over siglip-models, siglip-data's one image pipeline and
shard reader, atomic files, progress bars). siglip-models stays a model library without readers,
and siglip-data a data library without models.

How a run survives a kill: the input is read in a fixed order (sorted files, shards in order,
lines in order) and cut into parts of ``--part-size`` items (per shard for shards). Each finished
part is written atomically under ``OUT/parts/`` (its ``.npy``, then a ``.json`` sidecar with its
keys and skipped items, last). A rerun with the same arguments finds the parts whose sidecar
exists, skips their items without decoding them, computes the rest, and only then writes the
outputs: ``embeddings.npy`` + ``keys.txt`` (row i is keys[i]), ``embeddings.parquet`` (columns
``key``, ``embedding``) when pyarrow is installed, ``skipped.tsv`` (key, reason) and
``manifest.json``. ``manifest.json`` records what the run embeds; a rerun with other arguments in
the same folder is refused rather than mixed.

NaFlex checkpoints embed every image at its own aspect ratio (``naflex_preprocess``, at most
``--max-num-patches`` patches, recorded in the manifest) on every backend.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import hashlib
import io
import json
import os
import shutil
import sys
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from siglip_eval._atomic import atomic_write
from siglip_eval._atomic import atomic_write_bytes
from siglip_eval._atomic import atomic_write_text
from siglip_eval._datasets import IMAGE_SUFFIXES

MANIFEST_VERSION = 1
_PARTS = "parts"
DEFAULT_MAX_NUM_PATCHES = 256  # transformers' Siglip2 processor default


class EmbedError(ValueError):
    """An embed argument or output folder that cannot work; printed without a traceback."""


@dataclasses.dataclass
class _Item:
    """One input: its key and what to decode (a path, encoded bytes, or a text), or why not."""

    key: str
    payload: Any
    problem: str | None = None


@dataclasses.dataclass(frozen=True)
class _Failure:
    """Why a decoder could not use an item."""

    reason: str


@dataclasses.dataclass
class _Source:
    """An input: what it is, its units (read in order) and how to list each unit's items."""

    kind: str  # "images" or "texts"
    spec: str
    units: list[str]
    read_unit: Callable[[int], Iterator[_Item]]
    fingerprint: dict[str, Any]
    size: int | None


def _bad_key(key: str) -> str | None:
    if "\n" in key or "\r" in key or "\t" in key:
        return "the key contains a tab or a line break"
    return None


def _folder_source(spec: str, directory: str) -> _Source:
    root = Path(directory)
    if not root.is_dir():
        raise EmbedError(f"--input folder:{directory}: not a folder")
    files = sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise EmbedError(
            f"--input folder:{directory}: no image files (suffixes {', '.join(IMAGE_SUFFIXES)})"
        )

    def read_unit(unit: int) -> Iterator[_Item]:
        for name in files:
            yield _Item(name, root / name, _bad_key(name))

    listing = hashlib.sha256("\n".join(files).encode("utf-8", "surrogateescape")).hexdigest()
    return _Source(
        kind="images",
        spec=spec,
        units=[str(root.resolve())],
        read_unit=read_unit,
        fingerprint={"folder": str(root.resolve()), "files": len(files), "listing": listing},
        size=len(files),
    )


def _shard_source(spec: str, pattern: str) -> _Source:
    from siglip_data import UnreadableShardError
    from siglip_data import read_shard
    from siglip_data import resolve_shards

    shards = [str(Path(path).resolve()) for path in resolve_shards(pattern)]

    def read_unit(unit: int) -> Iterator[_Item]:
        path = shards[unit]
        try:
            for sample in read_shard(path):
                problem = sample.problem or _bad_key(sample.key)
                if problem is None and sample.image is None:
                    problem = "no image member"
                yield _Item(sample.key, sample.image, problem)
        except UnreadableShardError as error:
            # The samples before the damage were yielded; the shard itself is listed as skipped.
            yield _Item(path, None, f"unreadable shard: {error}")

    sizes = [os.path.getsize(path) if os.path.isfile(path) else -1 for path in shards]
    return _Source(
        kind="images",
        spec=spec,
        units=shards,
        read_unit=read_unit,
        fingerprint={"shards": shards, "sizes": sizes},
        size=None,
    )


def _text_source(spec: str, path: str) -> _Source:
    file = Path(path)
    if not file.is_file():
        raise EmbedError(f"--input texts:{path}: no such file")
    data = file.read_bytes()
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise EmbedError(f"--input texts:{path}: not UTF-8 ({error})") from None

    def read_unit(unit: int) -> Iterator[_Item]:
        for number, line in enumerate(lines, start=1):
            yield _Item(str(number), line, None if line.strip() else "empty line")

    return _Source(
        kind="texts",
        spec=spec,
        units=[str(file.resolve())],
        read_unit=read_unit,
        fingerprint={"file": str(file.resolve()), "sha256": hashlib.sha256(data).hexdigest()},
        size=len(lines),
    )


def open_source(spec: str) -> _Source:
    """The input named ``folder:DIR``, ``shards:PATTERN`` or ``texts:FILE``."""
    kind, separator, path = spec.partition(":")
    if not separator or not path:
        raise EmbedError(f"--input: expected KIND:PATH (e.g. folder:/data/photos), got {spec!r}")
    if kind == "folder":
        return _folder_source(spec, path)
    if kind == "shards":
        return _shard_source(spec, path)
    if kind == "texts":
        return _text_source(spec, path)
    raise EmbedError(f"--input: unknown kind {kind!r} (folder, shards, texts)")


# ------------------------------------------------------------------------------------ backends
@dataclasses.dataclass
class _Backend:
    """``embed(batch) -> [batch, dim]`` float32 for decoded pixels (NHWC), a NaFlex batch
    (``siglip_data.naflex.NaflexBatch``, when ``naflex`` holds its patch size and length) or
    token ids."""

    embed: Callable[[Any], np.ndarray]
    dim: int
    image_size: int
    text_length: int
    description: str
    naflex: tuple[int, int] | None = None  # (patch_size, max_num_patches) of a NaFlex tower


def _load_torch_model(args: argparse.Namespace, *, convert: bool = True) -> Any:
    try:
        import torch

        from siglip_models.torch import SiglipModel
    except ImportError as error:
        raise EmbedError(
            f"--model needs siglip-models with torch: pip install 'siglip-eval[torch]' ({error})"
        ) from None
    if args.threads:
        torch.set_num_threads(args.threads)
    model = SiglipModel.from_pretrained(args.model, device=args.device)
    if convert and args.dtype != "float32":
        model.to_inference_dtype(getattr(torch, args.dtype))
    return model


def _check_reused_export(session: Any, model: Any, path: Path) -> None:
    """Refuse an exported tower (from ``--onnx-dir``) that is not ``model``'s: another config, or
    other weights (one probe batch through both must agree to the export's precision)."""
    import torch

    if session.config != model.config:
        raise EmbedError(
            f"{path} was exported from a model with another config than --model; delete it or "
            "use another --onnx-dir"
        )
    generator = torch.Generator().manual_seed(0)
    if session.max_num_patches is not None:
        length = session.max_num_patches
        features = 3 * model.config.vision.patch_size**2
        probe = torch.rand(2, length, features, generator=generator) * 2 - 1
        shapes = torch.tensor([[1, length], [length, 1]])
        mask = torch.ones(2, length, dtype=torch.bool)
        with torch.inference_mode():
            expected = model.encode_image_naflex(probe, mask, shapes).numpy()
        got = session(probe.numpy(), mask.numpy(), shapes.numpy())
    elif session.tower == "image":
        size = model.config.vision.image_size
        probe = torch.rand(2, 3, size, size, generator=generator) * 2 - 1
        with torch.inference_mode():
            expected = model.encode_image(probe).numpy()
        got = session(probe.numpy())
    else:
        probe = torch.randint(0, model.config.text.vocab_size, (2, model.config.text.max_length))
        with torch.inference_mode():
            expected = model.encode_text(probe).numpy()
        got = session(probe.numpy())
    error = float(np.abs(got - expected).max())
    tolerance = (1e-4 if session.dtype == "float32" else 1e-2) * float(np.abs(expected).max())
    if not error <= tolerance:
        raise EmbedError(
            f"{path} was exported from other weights than --model (max |difference| {error:.2g} "
            f"on a probe batch); delete it or use another --onnx-dir"
        )


def make_backend(args: argparse.Namespace, kind: str) -> _Backend:
    """The tower ``kind`` needs, on ``--backend`` in ``--dtype``."""
    # onnx: the export converts a float32 model itself (LayerNorms stay float32 in a float16 file).
    model = _load_torch_model(args, convert=args.backend != "onnx")
    config = model.config
    dim = config.vision.width if kind == "images" else config.text.embed_dim
    sizes = (config.vision.image_size, config.text.max_length)
    description = f"{args.backend} {args.dtype}"
    naflex: tuple[int, int] | None = None
    if config.vision.naflex and kind == "images":
        naflex = (config.vision.patch_size, _max_num_patches(args))
        description += f" naflex L={naflex[1]}"
    elif args.max_num_patches is not None and not config.vision.naflex:
        raise EmbedError(
            f"--max-num-patches: {args.model!r} is a fixed-resolution model "
            f"({config.vision.image_size}x{config.vision.image_size}); it applies to NaFlex "
            "checkpoints (model_type 'siglip2') only"
        )
    if args.backend == "onnx":
        import torch

        from siglip_models.onnx import OnnxTower
        from siglip_models.torch import export_onnx

        if args.dtype == "bfloat16":
            raise EmbedError("--backend onnx runs float32 or float16 (no bfloat16 CPU kernels)")
        tower: Literal["image", "text"] = "image" if kind == "images" else "text"
        directory = Path(args.onnx_dir) if args.onnx_dir else Path(args.out) / "onnx"
        length = naflex[1] if naflex else None
        path = directory / f"{tower}-{args.dtype}{f'-L{length}' if length else ''}.onnx"
        if path.is_file():
            session = OnnxTower(path, threads=args.threads)
            _check_reused_export(session, model, path)
        else:
            print(f"exporting the {tower} tower to {path}", file=sys.stderr)
            export_onnx(
                model, path, tower=tower, dtype=getattr(torch, args.dtype), max_num_patches=length
            )
            session = OnnxTower(path, threads=args.threads)
        del model
        if naflex:
            return _Backend(
                lambda batch: session(batch.patches, batch.patch_mask, batch.spatial_shapes),
                dim,
                *sizes,
                description,
                naflex,
            )
        if kind == "images":
            return _Backend(
                lambda pixels: session(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))),
                dim,
                *sizes,
                description,
            )
        return _Backend(session, dim, *sizes, description)

    import torch

    towers: Any = model
    if args.backend == "compile":
        from siglip_models.torch import compile_towers

        towers = compile_towers(model)
    elif args.backend == "prepacked":
        # oneDNN pre-packed matmuls with fused bias + GELU: the fastest CPU tower in
        # docs/performance.md; refused (not silently ignored) where it cannot run.
        if args.dtype == "float16" or torch.device(args.device).type != "cpu":
            raise EmbedError(
                "--backend prepacked runs float32 or bfloat16 on the CPU, got "
                f"--dtype {args.dtype} --device {args.device}"
            )
        try:
            model.optimize_for_cpu_inference()
        except RuntimeError as error:
            raise EmbedError(f"--backend prepacked: {error}") from None
    device = torch.device(args.device)
    pixel_dtype = model.vision_model.embeddings.patch_embedding.weight.dtype

    def embed_images(pixels: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(pixels).permute(0, 3, 1, 2).to(device, pixel_dtype)
        with torch.inference_mode():
            out: np.ndarray = towers.encode_image(batch).float().cpu().numpy()
        return out

    def embed_naflex(batch: Any) -> np.ndarray:
        patches = torch.from_numpy(batch.patches).to(device, pixel_dtype)
        mask = torch.from_numpy(batch.patch_mask).to(device)
        shapes = torch.from_numpy(batch.spatial_shapes.astype(np.int64)).to(device)
        with torch.inference_mode():
            out: np.ndarray = (
                towers.encode_image_naflex(patches, mask, shapes).float().cpu().numpy()
            )
        return out

    def embed_texts(token_ids: np.ndarray) -> np.ndarray:
        ids = torch.from_numpy(np.asarray(token_ids, dtype=np.int64)).to(device)
        with torch.inference_mode():
            out: np.ndarray = towers.encode_text(ids).float().cpu().numpy()
        return out

    if naflex:
        return _Backend(embed_naflex, dim, *sizes, description, naflex)
    embed = embed_images if kind == "images" else embed_texts
    return _Backend(embed, dim, *sizes, description)


def _max_num_patches(args: argparse.Namespace) -> int:
    value = args.max_num_patches
    if value is None:
        return DEFAULT_MAX_NUM_PATCHES
    if value < 1:
        raise EmbedError(f"--max-num-patches: expected a positive int, got {value}")
    return int(value)


# ------------------------------------------------------------------------------------- parts
def _part_name(unit: int, part: int) -> str:
    return f"u{unit:05d}-p{part:06d}"


def _finished_parts(directory: Path) -> set[str]:
    """Parts whose sidecar (written last) exists and whose array has the rows it says."""
    finished: set[str] = set()
    if not directory.is_dir():
        return finished
    for sidecar in directory.glob("u*-p*.json"):
        array = sidecar.with_suffix(".npy")
        try:
            rows = json.loads(sidecar.read_text(encoding="utf-8"))["rows"]
            if array.is_file() and np.load(array, mmap_mode="r").shape[0] == rows:
                finished.add(sidecar.stem)
        except (OSError, ValueError, KeyError):
            continue  # a damaged part is computed again
    return finished


def _write_part(
    directory: Path,
    name: str,
    embeddings: np.ndarray,
    keys: list[str],
    skipped: list[tuple[str, str]],
    backend: str,
) -> None:
    buffer = io.BytesIO()
    np.save(buffer, embeddings, allow_pickle=False)
    atomic_write_bytes(directory / f"{name}.npy", buffer.getvalue())
    sidecar = {"rows": len(keys), "keys": keys, "skipped": skipped, "backend": backend}
    atomic_write_text(directory / f"{name}.json", json.dumps(sidecar, ensure_ascii=False))


def _l2_normalize(embeddings: np.ndarray) -> np.ndarray:
    work = embeddings.astype(np.float32, copy=False)
    norm = np.linalg.norm(work, axis=1, keepdims=True)
    normalized: np.ndarray = work / np.maximum(norm, np.float32(1e-8))
    return normalized


# ------------------------------------------------------------------------------- the pipeline
@dataclasses.dataclass
class _Work:
    """One item of a part still to compute; ``last`` closes the part."""

    part: str
    item: _Item | None  # None: an empty closing marker
    last: bool


def _pending_work(source: _Source, part_size: int, finished: set[str], bar: Any) -> Iterator[_Work]:
    """Every item of every unfinished part, in order; items of finished parts are only counted."""
    for unit in range(len(source.units)):
        part, in_part, current = 0, 0, _part_name(unit, 0)
        for item in source.read_unit(unit):
            if in_part == part_size:
                part, in_part = part + 1, 0
                current = _part_name(unit, part)
            in_part += 1
            if current in finished:
                bar.update(1)
                continue
            yield _Work(current, item, last=False)
        if in_part and current not in finished:
            yield _Work(current, None, last=True)


def _ordered_map(
    pool: concurrent.futures.Executor,
    function: Callable[[_Work], Any],
    work: Iterable[_Work],
    window: int,
) -> Iterator[tuple[_Work, Any]]:
    """``function`` over ``work`` in the pool, results in input order, ``window`` in flight."""
    pending: collections.deque[tuple[_Work, concurrent.futures.Future[Any]]] = collections.deque()
    for entry in work:
        pending.append((entry, pool.submit(function, entry)))
        if len(pending) >= window:
            done, future = pending.popleft()
            yield done, future.result()
    while pending:
        done, future = pending.popleft()
        yield done, future.result()


def _decoder(backend: _Backend, resample: str) -> Callable[[_Work], Any]:
    """Decode one item to what ``backend.embed`` takes a stack of: square pixels (NHWC), or a
    NaFlex record at the image's aspect ratio (``naflex_preprocess``, as transformers'
    Siglip2 processor: Pillow bilinear on the uint8 image; ``--resample`` is for square towers)."""
    from siglip_data import preprocess_image
    from siglip_data.naflex import naflex_preprocess

    def preprocess(payload: Any) -> Any:
        if backend.naflex is not None:
            patch_size, length = backend.naflex
            return naflex_preprocess(payload, patch_size=patch_size, max_num_patches=length)
        return preprocess_image(
            payload,
            size=backend.image_size,
            resample=resample,  # type: ignore[arg-type]
        )

    def decode(entry: _Work) -> Any:
        item = entry.item
        if item is None or item.problem is not None:
            return None
        try:
            return preprocess(item.payload)
        except Exception as error:  # any undecodable file is skipped and listed
            return _Failure(f"cannot decode: {type(error).__name__}: {error}")

    return decode


def _tokenizer(args: argparse.Namespace, length: int) -> Callable[[list[str]], np.ndarray]:
    if not args.tokenizer:
        raise EmbedError("--tokenizer: a SentencePiece .model file is needed to embed texts")
    from siglip_data import SentencePieceTokenizer

    tokenizer = SentencePieceTokenizer(args.tokenizer, preset=args.tokenizer_preset, length=length)
    return lambda texts: np.asarray(tokenizer(texts))


def compute_parts(
    args: argparse.Namespace, source: _Source, backend: _Backend, parts: Path, finished: set[str]
) -> None:
    """Compute and write every part not in ``finished``."""
    normalize = not args.no_normalize
    tokenize: Callable[[list[str]], np.ndarray] | None = None
    if source.kind == "texts":
        tokenize = _tokenizer(args, args.text_length or backend.text_length)
        decode: Callable[[_Work], Any] = lambda entry: (  # noqa: E731
            None if entry.item is None or entry.item.problem else entry.item.payload
        )
    else:
        decode = _decoder(backend, args.resample)
    if backend.naflex is not None:
        from siglip_data.naflex import collate_naflex

    state: dict[str, Any] = {"part": None, "keys": [], "skipped": [], "outputs": [], "batch": []}

    def flush_batch() -> None:
        batch = state["batch"]
        if not batch:
            return
        if tokenize:
            inputs: Any = tokenize([text for _, text in batch])
        elif backend.naflex is not None:
            inputs = collate_naflex([record for _, record in batch])
        else:
            inputs = np.stack([pixels for _, pixels in batch])
        embeddings = np.asarray(backend.embed(inputs), dtype=np.float32)
        if embeddings.shape != (len(batch), backend.dim) or not np.isfinite(embeddings).all():
            raise EmbedError(
                f"the {backend.description} backend returned {embeddings.shape} (expected "
                f"{(len(batch), backend.dim)}) or non-finite values for the batch starting at "
                f"{batch[0][0]!r}"
            )
        state["outputs"].append(_l2_normalize(embeddings) if normalize else embeddings)
        state["keys"].extend(key for key, _ in batch)
        state["batch"] = []
        bar.update(len(batch))

    def close_part() -> None:
        flush_batch()
        outputs = state["outputs"]
        embeddings = np.concatenate(outputs) if outputs else np.zeros((0, backend.dim), np.float32)
        _write_part(
            parts, state["part"], embeddings, state["keys"], state["skipped"], backend.description
        )
        state.update(part=None, keys=[], skipped=[], outputs=[], batch=[])

    workers = max(1, int(args.workers))
    window = max(2 * args.batch_size, 4 * workers)
    with (
        tqdm(
            total=source.size,
            desc=f"embed {source.kind}",
            unit=source.kind[:-1],
            disable=args.no_progress,
        ) as bar,
        concurrent.futures.ThreadPoolExecutor(workers) as pool,
    ):
        work = _pending_work(source, args.part_size, finished, bar)
        for entry, result in _ordered_map(pool, decode, work, window):
            if state["part"] is not None and entry.part != state["part"]:
                close_part()
            state["part"] = entry.part
            item = entry.item
            if item is not None:
                if item.problem is not None or isinstance(result, _Failure):
                    reason = item.problem or result.reason
                    state["skipped"].append([item.key, reason])
                    bar.update(1)
                else:
                    state["batch"].append((item.key, result))
                    if len(state["batch"]) == args.batch_size:
                        flush_batch()
            if entry.last:
                close_part()


# ------------------------------------------------------------------------------------ outputs
def _part_files(parts: Path) -> list[tuple[Path, dict[str, Any]]]:
    files = []
    for sidecar in sorted(parts.glob("u*-p*.json")):
        files.append((sidecar.with_suffix(".npy"), json.loads(sidecar.read_text("utf-8"))))
    return files


def write_outputs(out: Path, parts: Path, dim: int, manifest: dict[str, Any]) -> dict[str, Any]:
    """Join the parts into the final files (each atomic), then mark the manifest complete."""
    files = _part_files(parts)
    rows = sum(int(sidecar["rows"]) for _, sidecar in files)

    def write_array(temporary: Path) -> None:
        array = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float32, shape=(rows, dim))
        start = 0
        for path, sidecar in files:
            block = np.load(path)
            array[start : start + int(sidecar["rows"])] = block
            start += int(sidecar["rows"])
        array.flush()
        del array

    atomic_write(out / "embeddings.npy", write_array)
    keys = [key for _, sidecar in files for key in sidecar["keys"]]
    atomic_write_text(out / "keys.txt", "".join(f"{key}\n" for key in keys))
    skipped = [entry for _, sidecar in files for entry in sidecar["skipped"]]
    atomic_write_text(
        out / "skipped.tsv",
        "key\treason\n"
        + "".join(f"{key}\t{' '.join(reason.split())}\n" for key, reason in skipped),
    )
    parquet = _write_parquet(out / "embeddings.parquet", files, dim)
    record = dict(
        manifest,
        complete=True,
        rows=rows,
        dim=dim,
        skipped=len(skipped),
        backends=sorted({str(sidecar.get("backend")) for _, sidecar in files}),
        outputs=["embeddings.npy", "keys.txt", "skipped.tsv"]
        + (["embeddings.parquet"] if parquet else []),
    )
    atomic_write_text(out / "manifest.json", json.dumps(record, indent=2, ensure_ascii=False))
    return record


def _write_parquet(path: Path, files: list[tuple[Path, dict[str, Any]]], dim: int) -> bool:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return False
    schema = pa.schema([("key", pa.string()), ("embedding", pa.list_(pa.float32(), dim))])

    def write(temporary: Path) -> None:
        with pq.ParquetWriter(temporary, schema) as writer:
            for array_path, sidecar in files:
                block = np.load(array_path)
                if not len(block):
                    continue
                embeddings = pa.FixedSizeListArray.from_arrays(
                    pa.array(block.reshape(-1), pa.float32()), dim
                )
                writer.write_table(
                    pa.Table.from_arrays([pa.array(sidecar["keys"]), embeddings], schema=schema)
                )

    atomic_write(path, write)
    return True


# ---------------------------------------------------------------------------------- the command
def _fingerprint(args: argparse.Namespace, source: _Source) -> dict[str, Any]:
    model = Path(args.model)
    return {
        "model": str(model.resolve()),
        "input": source.fingerprint,
        "kind": source.kind,
        "dtype": args.dtype,
        "normalized": not args.no_normalize,
        "resample": args.resample if source.kind == "images" else None,
        "tokenizer": str(Path(args.tokenizer).resolve()) if source.kind == "texts" else None,
        "tokenizer_preset": args.tokenizer_preset if source.kind == "texts" else None,
        "part_size": args.part_size,
    }


def _check_same_run(out: Path, stored: dict[str, Any], fingerprint: dict[str, Any]) -> None:
    if stored != fingerprint:
        keys = set(stored) | set(fingerprint)
        differ = sorted(key for key in keys if stored.get(key) != fingerprint.get(key))
        raise EmbedError(
            f"--out {str(out)!r} holds embeddings of another run (it differs in: "
            f"{', '.join(differ) or 'version'}); use another --out folder or delete it"
        )


def run_embed(args: argparse.Namespace) -> int:
    """Run ``siglip-eval embed`` (see the module docstring); returns the exit status."""
    if args.batch_size < 1 or args.part_size < 1:
        raise EmbedError("--batch-size and --part-size must be positive")
    source = open_source(args.input)
    if source.kind == "texts" and not args.tokenizer:
        raise EmbedError("--tokenizer: a SentencePiece .model file is needed to embed texts")
    out = Path(args.out)
    fingerprint = _fingerprint(args, source)
    manifest_path = out / "manifest.json"
    manifest: dict[str, Any] | None = None
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text("utf-8"))
        stored = manifest.get("fingerprint", {})
        if "max_num_patches" in stored:  # a NaFlex run: compare the length this run would use
            fingerprint["max_num_patches"] = _max_num_patches(args)
        _check_same_run(out, stored, fingerprint)
        if manifest.get("complete"):
            print(f"{out}: already complete ({manifest['rows']} rows)", file=sys.stderr)
            return 0
    # The backend first: a bad --dtype / --backend / --max-num-patches for this model stops the
    # run before its manifest exists, so the corrected command is not refused as another run.
    backend = make_backend(args, source.kind)
    if backend.naflex is not None:
        fingerprint["max_num_patches"] = backend.naflex[1]
    if manifest is None:
        manifest = {"version": MANIFEST_VERSION, "input": args.input, "fingerprint": fingerprint}
        atomic_write_text(manifest_path, json.dumps(manifest, indent=2, ensure_ascii=False))
    else:
        _check_same_run(out, manifest.get("fingerprint", {}), fingerprint)
    parts = out / _PARTS
    parts.mkdir(parents=True, exist_ok=True)
    finished = _finished_parts(parts)
    if finished:
        print(f"resuming: {len(finished)} parts already written", file=sys.stderr)
    compute_parts(args, source, backend, parts, finished)
    record = write_outputs(out, parts, backend.dim, manifest)
    if not args.keep_parts:
        shutil.rmtree(parts, ignore_errors=True)
    print(
        f"wrote {record['rows']} embeddings of dim {record['dim']} to {out} "
        f"({', '.join(record['outputs'])}); {record['skipped']} items skipped"
        + (" (listed in skipped.tsv)" if record["skipped"] else ""),
        file=sys.stderr,
    )
    return 0


def add_embed_parser(commands: Any) -> None:
    """The ``embed`` subcommand of ``siglip-eval``."""
    embed = commands.add_parser(
        "embed",
        help="embed a folder of images, WebDataset shards or a text file (resumable)",
        description=(
            "Write embeddings with their keys: embeddings.npy + keys.txt, embeddings.parquet "
            "(with pyarrow), skipped.tsv. Rerun the same command after an interruption: "
            "finished parts are kept and skipped."
        ),
    )
    embed.add_argument(
        "--model", required=True, help="Hugging Face SiglipModel folder or big_vision .npz"
    )
    embed.add_argument(
        "--input",
        required=True,
        help="folder:DIR (images, recursive) | shards:PATTERN | texts:FILE",
    )
    embed.add_argument("--out", required=True, help="output folder (reuse it to resume)")
    embed.add_argument(
        "--backend",
        choices=("eager", "prepacked", "compile", "onnx"),
        default="eager",
        help="eager PyTorch; prepacked: oneDNN pre-packed float32 or bfloat16 CPU matmuls "
        "(fastest on CPU); compile: torch.compile; onnx: onnxruntime on an exported tower",
    )
    embed.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    embed.add_argument("--device", default="cpu", help="torch device (eager, prepacked, compile)")
    embed.add_argument("--batch-size", type=int, default=64)
    embed.add_argument(
        "--part-size", type=int, default=1024, help="items per resumable part (per shard)"
    )
    embed.add_argument(
        "--workers", type=int, default=min(4, os.cpu_count() or 1), help="image decode threads"
    )
    embed.add_argument("--threads", type=int, help="compute threads of torch / onnxruntime")
    embed.add_argument(
        "--onnx-dir",
        help="folder for the exported .onnx towers (default OUT/onnx); a tower already there is "
        "reused after a probe batch shows it is --model's",
    )
    embed.add_argument(
        "--resample", default="bicubic", choices=("bicubic", "bilinear", "pil_bilinear")
    )
    embed.add_argument("--tokenizer", help="SentencePiece .model file (texts)")
    embed.add_argument(
        "--tokenizer-preset", default="siglip", choices=("siglip", "siglip-i18n", "siglip2")
    )
    embed.add_argument("--text-length", type=int, help="token length (default: the model's)")
    embed.add_argument(
        "--max-num-patches",
        type=int,
        help="NaFlex models: the patch budget and sequence length L of every image (default "
        f"{DEFAULT_MAX_NUM_PATCHES}, as transformers' Siglip2 processor)",
    )
    embed.add_argument("--no-normalize", action="store_true", help="keep raw (unnormalised) rows")
    embed.add_argument("--no-progress", action="store_true", help="no progress bar")
    embed.add_argument("--keep-parts", action="store_true", help="keep OUT/parts after joining")
    embed.set_defaults(run=run_embed)


def main_embed(args: argparse.Namespace) -> int:
    """Run the command, printing argument and input errors on one line (exit status 2)."""
    try:
        return run_embed(args)
    except (EmbedError, FileNotFoundError, ValueError, ImportError) as error:
        print(f"siglip-eval embed: error: {error}", file=sys.stderr)
        return 2
