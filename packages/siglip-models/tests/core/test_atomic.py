"""The atomic-write helper (copied verbatim into data, eval and train): all or nothing, durable."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from siglip_models._atomic import atomic_directory
from siglip_models._atomic import atomic_write
from siglip_models._atomic import atomic_write_bytes
from siglip_models._atomic import atomic_write_text


def test_write_creates_parents_and_replaces_the_old_content(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "file.txt"
    atomic_write_text(target, "first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.txt"]


def test_a_failing_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "weights.bin"
    atomic_write_bytes(target, b"old")

    def half_then_disk_full(temporary: Path) -> None:
        temporary.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match=r"could not write .*weights\.bin.*No space left") as info:
        atomic_write(target, half_then_disk_full)
    assert info.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


def test_a_non_os_error_propagates_unchanged_and_cleans_up(tmp_path: Path) -> None:
    def broken(temporary: Path) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "x", broken)
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "step_1"
    with atomic_directory(target) as building:
        (building / "sub").mkdir()
        (building / "sub" / "a.txt").write_text("a")
        assert not target.exists()
    assert (target / "sub" / "a.txt").read_text() == "a"

    def interrupted() -> None:
        with atomic_directory(target) as building:
            (building / "b.txt").write_text("b")
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        interrupted()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_1"]
    assert (target / "sub" / "a.txt").is_file()


def test_files_and_directories_get_the_mode_a_plain_write_gives(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    (tmp_path / "plain-dir").mkdir()
    written = atomic_write_text(tmp_path / "atomic.txt", "x")
    with atomic_directory(tmp_path / "atomic-dir"):
        pass
    assert written.stat().st_mode == plain.stat().st_mode
    assert (tmp_path / "atomic-dir").stat().st_mode == (tmp_path / "plain-dir").stat().st_mode
