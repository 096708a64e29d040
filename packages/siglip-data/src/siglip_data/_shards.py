"""WebDataset tar shards in the img2dataset layout: write them atomically, read them exactly.

A shard is a plain tar file. Consecutive members that share a key form one sample:
``<key>.jpg|jpeg|png|webp`` (the image), ``<key>.txt`` (the caption, UTF-8) and optionally
``<key>.json`` (metadata). The key is the member path up to the first dot of its file name,
the WebDataset convention.
"""

from __future__ import annotations

import dataclasses
import glob
import io
import json
import os
import re
import tarfile
import tempfile
import time
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from braceexpand import braceexpand
from PIL import Image

from siglip_data._atomic import atomic_write

IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp")
_KEY_FORBIDDEN = re.compile(r"[.\s/\\]")
_GLOB_CHARACTERS = re.compile(r"[*?\[]")


def resolve_shards(shards: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[str]:
    """Shard paths from a brace pattern, a glob, a directory (its ``*.tar``) or a list of these.

    Brace patterns are expanded by the ``braceexpand`` package, as webdataset does:
    ``{00000..00099}`` ranges (zero padding kept), ``{a,b}`` lists, several braces as a product,
    in order. A backslash is an ordinary path character (no escapes). Globs and directories are
    sorted.

    Args:
        shards: a brace pattern or glob (``"data/shard-{00000..00099}.tar"``), a directory of
            ``.tar`` files, or a list of paths and patterns.

    Returns:
        The shard paths (not checked for existence, except through globs and directories).

    Raises:
        ValueError: nothing matched (a glob or directory without shards, an empty list), or
            unbalanced braces.

    Examples:
        >>> resolve_shards("data/train-{0000..0002}.tar")
        ['data/train-0000.tar', 'data/train-0001.tar', 'data/train-0002.tar']
        >>> resolve_shards(["a.tar", "{b,c}-{0..1}.tar"])
        ['a.tar', 'b-0.tar', 'b-1.tar', 'c-0.tar', 'c-1.tar']
    """
    if isinstance(shards, (str, os.PathLike)):
        path = Path(shards)
        if path.is_dir():
            found = sorted(str(p) for p in path.glob("*.tar"))
            if not found:
                raise ValueError(f"shards directory {str(path)!r} contains no .tar files")
            return found
        resolved = []
        for expanded in braceexpand(str(shards), escape=False):
            if _GLOB_CHARACTERS.search(expanded) and not Path(expanded).exists():
                matches = sorted(glob.glob(expanded))
                if not matches:
                    raise ValueError(f"shard pattern {expanded!r} matches no file")
                resolved.extend(matches)
            else:
                resolved.append(expanded)
    else:
        resolved = []
        for item in shards:
            plain = not _GLOB_CHARACTERS.search(str(item)) and "{" not in str(item)
            resolved.extend([str(item)] if plain else resolve_shards(item))
    if not resolved:
        raise ValueError(f"shards {shards!r} names no shard")
    return resolved


@dataclasses.dataclass
class RawSample:
    """One undecoded sample as stored: image bytes, caption text, metadata.

    Attributes:
        key: the sample's unique key.
        image: encoded image bytes, or None when the sample has no image member.
        image_format: the image member's extension (``"jpg"``, ``"png"``...), or None.
        caption: decoded caption text, or None when the sample has no caption.
        metadata: parsed ``.json`` member (None when absent).
        source: the shard (or captions file) it came from.
        problem: why the sample is unusable before decoding (e.g. ``"bad_metadata"``), or None.
    """

    key: str
    image: bytes | None
    image_format: str | None
    caption: str | None
    metadata: dict[str, Any] | None
    source: str
    problem: str | None = None


class UnreadableShardError(OSError):
    """A shard that cannot be opened or read to its end (missing, not a tar, truncated)."""


def split_member_name(name: str) -> tuple[str, str]:
    """``"dir/abc.seg.jpg" -> ("dir/abc", "seg.jpg")``: key up to the file name's first dot."""
    directory, _, filename = name.rpartition("/")
    stem, dot, suffix = filename.partition(".")
    key = f"{directory}/{stem}" if directory else stem
    return key, suffix.lower() if dot else ""


def read_shard(path: str | os.PathLike[str]) -> Iterator[RawSample]:
    """Yield the samples of one tar shard in stored order.

    Samples are yielded as complete groups of consecutive members; a damaged shard yields every
    sample before the damage and then raises :class:`UnreadableShardError`. A shard cut at a
    member boundary (tarfile alone sees a clean end) is detected by its missing end-of-archive
    marker; its last sample is still yielded when complete (it has every member the sample
    before it had), so the cut loses only what was cut.

    Args:
        path: the ``.tar`` file (plain or gzip / bzip2 / xz compressed).

    Yields:
        One :class:`RawSample` per key: image bytes, caption, metadata, undecoded.

    Raises:
        UnreadableShardError: missing file, not a tar, or a truncated / corrupt archive.

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> directory = tempfile.TemporaryDirectory()
        >>> image = np.zeros((4, 4, 3), dtype=np.uint8)
        >>> (shard,) = write_shards([(image, "a black square", {"label": 0})], directory.name)
        >>> sample = next(read_shard(shard))
        >>> sample.key, sample.image_format, sample.caption, sample.metadata
        ('000000000', 'png', 'a black square', {'label': 0})
        >>> directory.cleanup()
    """
    path = os.fspath(path)
    try:
        archive = tarfile.open(path, mode="r|*")  # noqa: SIM115 (closed by the with below)
    except (OSError, tarfile.TarError, EOFError) as error:
        raise UnreadableShardError(f"cannot open shard {path!r}: {error}") from error
    group: dict[str, bytes] = {}
    group_key: str | None = None
    previous_members: set[str] | None = None
    try:
        with archive:
            for member in archive:
                if not member.isfile():
                    continue
                key, suffix = split_member_name(member.name)
                stream = archive.extractfile(member)
                data = stream.read() if stream is not None else b""
                if len(data) != member.size:
                    raise UnreadableShardError(
                        f"shard {path!r} is truncated inside member {member.name!r}"
                    )
                if key != group_key and group_key is not None:
                    yield _group_to_sample(group_key, group, path)
                    previous_members = set(group)
                    group = {}
                group_key = key
                group[suffix] = data
            end_of_members = archive.offset
    except (OSError, tarfile.TarError, EOFError) as error:
        if isinstance(error, UnreadableShardError):
            raise
        raise UnreadableShardError(f"shard {path!r} is damaged: {error}") from error
    if not _has_end_marker(path, end_of_members):
        # Cut at a member boundary: tarfile sees a clean end, but the last sample may be partial.
        # It is kept when it has every member the sample before it had (the cut fell between two
        # samples) or, alone in the shard, an image and a caption.
        complete = (
            group_key is not None
            and "txt" in group
            and any(extension in group for extension in IMAGE_EXTENSIONS)
            and (previous_members is None or set(group) >= previous_members)
        )
        if complete and group_key is not None:
            yield _group_to_sample(group_key, group, path)
        raise UnreadableShardError(
            f"shard {path!r} is truncated: no end-of-archive marker after its last member"
        )
    if group_key is not None:
        yield _group_to_sample(group_key, group, path)


def _has_end_marker(path: str, offset: int) -> bool:
    """A complete uncompressed tar has two zero blocks after its last member."""
    with open(path, "rb") as stream:
        magic = stream.read(6)
        if magic[:2] == b"\x1f\x8b" or magic[:3] == b"BZh" or magic == b"\xfd7zXZ\x00":
            return True  # compressed: the decompressor already detects truncation
        stream.seek(offset)
        marker = stream.read(2 * tarfile.BLOCKSIZE)
    return len(marker) == 2 * tarfile.BLOCKSIZE and not any(marker)


def _group_to_sample(key: str, members: Mapping[str, bytes], source: str) -> RawSample:
    image = None
    image_format = None
    for extension in IMAGE_EXTENSIONS:
        if extension in members:
            image, image_format = members[extension], extension
            break
    caption = None
    problem = None
    if "txt" in members:
        try:
            caption = members["txt"].decode("utf-8")
        except UnicodeDecodeError:
            problem = "bad_caption"
    metadata = None
    if "json" in members:
        try:
            parsed = json.loads(members["json"].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            problem = problem or "bad_metadata"
        else:
            if isinstance(parsed, dict):
                metadata = parsed
            else:
                problem = problem or "bad_metadata"
    return RawSample(key, image, image_format, caption, metadata, source, problem)


def _encode_image(image: Any, image_format: str) -> tuple[bytes, str]:
    """Any image source -> (encoded bytes, extension). Encoded bytes and files pass through."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        with Image.open(io.BytesIO(data)) as probe:
            detected = (probe.format or "").lower()
        extension = {"jpeg": "jpg", "mpo": "jpg"}.get(detected, detected)
        if extension not in IMAGE_EXTENSIONS:
            raise ValueError(
                f"image bytes are {detected or 'unknown'}, expected one of {IMAGE_EXTENSIONS}"
            )
        return data, extension
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        extension = path.suffix.lower().lstrip(".")
        if extension in IMAGE_EXTENSIONS:
            return path.read_bytes(), extension
        with Image.open(path) as opened:
            opened.load()
            return _encode_image(opened, image_format)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(f"image arrays must be uint8, got {image.dtype}")
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise TypeError(
            f"image must be a PIL image, bytes, a path or a uint8 array, got {type(image).__name__}"
        )
    buffer = io.BytesIO()
    if image_format in ("jpg", "jpeg"):
        if image.mode not in ("RGB", "L", "CMYK"):
            image = image.convert("RGB")
        image.save(buffer, format="JPEG", quality=95)
        return buffer.getvalue(), "jpg"
    if image_format == "webp":
        image.save(buffer, format="WEBP", lossless=True)
        return buffer.getvalue(), "webp"
    image.save(buffer, format="PNG", compress_level=1)  # 3x faster than 6, ~15% larger
    return buffer.getvalue(), "png"


class ShardWriter:
    """Write samples into tar shards of at most ``samples_per_shard`` samples, atomically.

    Each shard is written to a hidden temporary file in ``output_dir`` and renamed into place when
    complete, so readers never see half a shard. Use as a context manager (closing flushes the
    last shard).

    Args:
        output_dir: directory to create the shards in (created if needed).
        samples_per_shard: samples per shard (the last one may hold fewer).
        prefix: shard file names are ``f"{prefix}-{index:05d}.tar"``.
        image_format: how to encode images given as PIL images or arrays: ``"png"`` (lossless),
            ``"jpg"`` (quality 95) or ``"webp"`` (lossless). Encoded bytes and image files are
            stored unchanged.

    Examples:
        >>> import os
        >>> import tempfile
        >>> import numpy as np
        >>> directory = tempfile.TemporaryDirectory()
        >>> image = np.zeros((4, 4, 3), dtype=np.uint8)
        >>> with ShardWriter(directory.name, samples_per_shard=2) as writer:
        ...     for index in range(3):
        ...         key = writer.write(image, f"caption {index}", metadata={"label": index})
        >>> [os.path.basename(shard) for shard in writer.shards]
        ['shard-00000.tar', 'shard-00001.tar']
        >>> os.path.basename(writer.shard_pattern())
        'shard-{00000..00001}.tar'
        >>> directory.cleanup()
    """

    def __init__(
        self,
        output_dir: str | os.PathLike[str],
        *,
        samples_per_shard: int = 1000,
        prefix: str = "shard",
        image_format: str = "png",
    ) -> None:
        if not isinstance(samples_per_shard, int) or samples_per_shard < 1:
            raise ValueError(f"samples_per_shard must be an int >= 1, got {samples_per_shard!r}")
        if image_format not in ("png", "jpg", "jpeg", "webp"):
            raise ValueError(f"image_format must be png, jpg or webp, got {image_format!r}")
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.samples_per_shard = samples_per_shard
        self.prefix = prefix
        self.image_format = image_format
        self.shards: list[str] = []
        self.num_samples = 0
        self._archive: tarfile.TarFile | None = None
        self._temporary: str | None = None
        self._in_shard = 0
        self._keys: set[str] = set()

    def shard_pattern(self) -> str:
        """Brace pattern naming every shard written so far, e.g. ``out/shard-{00000..00003}.tar``."""
        if not self.shards:
            raise ValueError("no shard written yet")
        last = len(self.shards) - 1
        return str(self.output_dir / f"{self.prefix}-{{00000..{last:05d}}}.tar")

    def write(
        self,
        image: Any,
        caption: str,
        *,
        key: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Append one sample.

        Args:
            image: a PIL image, a uint8 ``[height, width(, channels)]`` array, encoded bytes or an
                image file path (bytes and files are stored unchanged).
            caption: the caption text.
            key: the sample's key; default ``f"{index:09d}"`` (its position in this writer).
            metadata: stored as ``<key>.json`` when given.

        Returns:
            The sample's key.

        Raises:
            ValueError: a key that is empty, repeated or contains dots, slashes or spaces.
            TypeError: a caption that is not a str, or an unsupported image.
        """
        if key is None:
            key = f"{self.num_samples:09d}"
        if not isinstance(key, str) or not key or _KEY_FORBIDDEN.search(key):
            raise ValueError(
                f"key must be a non-empty str without dots, slashes or spaces, got {key!r}"
            )
        if key in self._keys:
            raise ValueError(f"key {key!r} was already written: keys must be unique")
        if not isinstance(caption, str):
            raise TypeError(f"caption for key {key!r} must be a str, got {type(caption).__name__}")
        image_bytes, extension = _encode_image(image, self.image_format)
        members = [(f"{key}.{extension}", image_bytes), (f"{key}.txt", caption.encode("utf-8"))]
        if metadata is not None:
            members.append(
                (f"{key}.json", json.dumps(dict(metadata), sort_keys=True).encode("utf-8"))
            )
        if self._archive is None:
            self._open_next()
        assert self._archive is not None
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(time.time())
            info.mode = 0o644
            self._archive.addfile(info, io.BytesIO(data))
        self._keys.add(key)
        self.num_samples += 1
        self._in_shard += 1
        if self._in_shard >= self.samples_per_shard:
            self._close_current()
        return key

    def _open_next(self) -> None:
        handle, self._temporary = tempfile.mkstemp(
            dir=self.output_dir, prefix=f".{self.prefix}-", suffix=".tar.tmp"
        )
        os.close(handle)
        self._archive = tarfile.open(  # noqa: SIM115 (closed in _close_current / abort)
            self._temporary, mode="w", format=tarfile.USTAR_FORMAT
        )
        self._in_shard = 0

    def _close_current(self) -> None:
        if self._archive is None or self._temporary is None:
            return
        self._archive.close()
        final = self.output_dir / f"{self.prefix}-{len(self.shards):05d}.tar"
        partial = self._temporary
        # The shard streamed into a hidden partial file while samples arrived (too big to hold in
        # memory); atomic_write moves it onto its own temp file, fsyncs it, renames it into place
        # and fsyncs the directory: the one atomic-write protocol of the package.
        atomic_write(final, lambda temporary: os.replace(partial, temporary))
        self.shards.append(str(final))
        self._archive = None
        self._temporary = None

    def close(self) -> None:
        """Finish the current shard (if any)."""
        self._close_current()

    def abort(self) -> None:
        """Drop the unfinished shard (complete shards stay)."""
        if self._archive is not None:
            self._archive.close()
        if self._temporary is not None:
            Path(self._temporary).unlink(missing_ok=True)
        self._archive = None
        self._temporary = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_shards(
    samples: Iterable[Any],
    output_dir: str | os.PathLike[str],
    *,
    samples_per_shard: int = 1000,
    prefix: str = "shard",
    image_format: str = "png",
) -> list[str]:
    """Write an iterable of samples into shards (see :class:`ShardWriter`).

    Each sample is ``(image, caption)``, ``(image, caption, metadata)`` or a mapping with keys
    ``image``, ``caption`` and optional ``key`` / ``metadata``. Images may be PIL images, uint8
    arrays, encoded bytes or file paths.

    Args:
        samples: the samples, in the order to store them.
        output_dir: directory to create the shards in (created if needed).
        samples_per_shard: samples per shard (the last one may hold fewer).
        prefix: shard file names are ``f"{prefix}-{index:05d}.tar"``.
        image_format: ``"png"``, ``"jpg"`` or ``"webp"`` for images given as PIL images or arrays.

    Returns:
        The shard paths, in order.

    Raises:
        ValueError: a malformed sample (its position is named); the unfinished shard is removed,
            complete ones stay.
        TypeError: a caption that is not a str, or an unsupported image.

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> directory = tempfile.TemporaryDirectory()
        >>> images = [np.full((4, 4, 3), value, dtype=np.uint8) for value in (0, 255)]
        >>> shards = write_shards(zip(images, ["black", "white"]), directory.name)
        >>> [sample.caption for sample in read_shard(shards[0])]
        ['black', 'white']
        >>> directory.cleanup()
    """
    with ShardWriter(
        output_dir, samples_per_shard=samples_per_shard, prefix=prefix, image_format=image_format
    ) as writer:
        for position, sample in enumerate(samples):
            if isinstance(sample, Mapping):
                unknown = set(sample) - {"image", "caption", "key", "metadata"}
                if unknown or "image" not in sample or "caption" not in sample:
                    raise ValueError(
                        f"sample {position}: a mapping needs 'image' and 'caption' (optional 'key', "
                        f"'metadata'), got keys {sorted(sample)}"
                    )
                writer.write(
                    sample["image"],
                    sample["caption"],
                    key=sample.get("key"),
                    metadata=sample.get("metadata"),
                )
            elif isinstance(sample, tuple) and len(sample) in (2, 3):
                metadata = sample[2] if len(sample) == 3 else None
                writer.write(sample[0], sample[1], metadata=metadata)
            else:
                raise ValueError(
                    f"sample {position} must be (image, caption[, metadata]) or a mapping, "
                    f"got {type(sample).__name__}"
                )
    return writer.shards
