"""Atomic, durable file writes: a reader sees the old file or the new one, never a part of one.

Protocol: write a temp file in the destination's directory, flush and ``fsync`` it, ``os.replace``
it over the destination, then ``fsync`` the directory so the rename itself survives a power loss.
On any error the temp file is removed and the destination is left as it was; an ``OSError`` (disk
full, permission, ...) is re-raised with the destination path in its message.

Each siglip package that writes files carries a byte-identical copy of this module (packages stand
alone and never import a sibling's private module); ``tests/integration/test_house.py`` checks
that the copies are identical.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """``fsync`` a directory so that renames and deletions inside it are durable (POSIX only)."""
    if os.name != "posix":
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _umask() -> int:
    # Read without changing it where the OS says (os.umask can only be read by setting it).
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _describe(error: OSError, path: Path) -> OSError:
    reason = error.strerror or str(error)
    return type(error)(error.errno, f"could not write {str(path)!r}: {reason}")


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Create or replace ``path`` atomically; ``write(temp_path)`` writes the whole file.

    Args:
        path: the destination file; its parent directories are created.
        write: called once with a temp path in the same directory; it must write the file there
            (any library's ``save(path)`` will do).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        OSError: the write, sync or rename failed (message names ``path``); nothing is left behind.
    """
    destination = Path(path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent
    )
    os.close(descriptor)
    temporary = Path(temp_name)
    try:
        write(temporary)
        # mkstemp creates 0600; the file gets the mode a plain open() would give it.
        os.chmod(temporary, 0o666 & ~_umask())
        _fsync_file(temporary)
        os.replace(temporary, destination)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise _describe(error, destination) from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(destination.parent)
    return destination


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Create or replace ``path`` with ``data`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda temporary: temporary.write_bytes(data))


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Create or replace ``path`` with ``text`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda temporary: temporary.write_text(text, encoding=encoding))


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a directory under a temp name and rename it to ``path`` only if the block succeeds.

    Every file written inside should be complete when the block ends; they are fsynced before the
    rename. An existing ``path`` is replaced. On error the temp directory is removed.

    Yields:
        The temp directory to fill.
    """
    import shutil

    destination = Path(path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(
        tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
    )
    try:
        yield temporary
        os.chmod(temporary, 0o777 & ~_umask())  # mkdtemp creates 0700; as os.mkdir would
        for file in sorted(temporary.rglob("*")):
            if file.is_file():
                _fsync_file(file)
        for directory in sorted(d for d in temporary.rglob("*") if d.is_dir()):
            fsync_directory(directory)
        fsync_directory(temporary)
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(temporary, destination)
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise _describe(error, destination) from error
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    fsync_directory(destination.parent)
