"""deoss.atomic.write_atomic: the one way every process writes a small state file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from deoss.atomic import write_atomic


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("durable", [True, False])
def test_write_replaces_the_whole_file_and_leaves_no_temporary(
    tmp_path: Path, durable: bool
) -> None:
    path = tmp_path / "state"
    path.write_bytes(b"old content, longer than the new")
    write_atomic(path, b"new", durable=durable)
    assert b"new" == path.read_bytes()
    write_atomic(path, "text é")
    assert "text é" == path.read_text(encoding="utf-8")
    write_atomic(path, memoryview(b"view"), sync_directory=True)
    assert b"view" == path.read_bytes()
    assert [] == _leftovers(tmp_path)


def test_mode_is_set_from_the_start_and_no_overwrite_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    old_umask = os.umask(0o022)
    try:
        write_atomic(path, b"one", mode=0o600, overwrite=False)
    finally:
        os.umask(old_umask)
    assert 0o600 == stat.S_IMODE(path.stat().st_mode)
    with pytest.raises(FileExistsError):
        write_atomic(path, b"two", mode=0o600, overwrite=False)
    assert b"one" == path.read_bytes()
    assert [] == _leftovers(tmp_path)


def test_a_failed_write_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "state"
    with pytest.raises(FileNotFoundError):
        write_atomic(path, b"data")
    assert [] == list(tmp_path.iterdir())
