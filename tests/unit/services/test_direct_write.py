"""DirectFile writes exactly the bytes given, with O_DIRECT or, where refused, through the cache."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from deoss.services.common import direct_write
from deoss.services.common.direct_write import BLOCK, DirectFile

SIZES = [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 7, 64 * 1024 + 1, 300_001]


def write_in_chunks(path: Path, data: bytes, chunk: int, buffer_bytes: int = 16 * BLOCK) -> bool:
    with DirectFile(str(path), buffer_bytes) as out:
        for at in range(0, len(data), chunk):
            out.write(data[at : at + chunk])
        out.finish()
        os.fsync(out.fileno())
        return out.direct


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("chunk", [1000, BLOCK, 65536])
def test_the_file_holds_exactly_the_bytes_written(tmp_path: Path, size: int, chunk: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "fragment"
    write_in_chunks(path, data, chunk)
    assert data == path.read_bytes()


def direct_supported(directory: Path) -> bool:
    try:
        fd = os.open(directory / "probe", os.O_WRONLY | os.O_CREAT | direct_write._O_DIRECT)
    except OSError:
        return False
    os.close(fd)
    return bool(direct_write._O_DIRECT)


def test_whole_blocks_go_direct_and_the_tail_through_the_cache(tmp_path: Path) -> None:
    if not direct_supported(tmp_path):
        pytest.skip("no O_DIRECT on this filesystem")
    data = os.urandom(5 * BLOCK + 123)
    path = tmp_path / "fragment"
    with DirectFile(str(path), 2 * BLOCK) as out:
        out.write(data[:-200])
        assert out.direct  # whole buffers went out with O_DIRECT
        out.write(data[-200:])
        out.finish()
        assert not out.direct  # the tail needed O_DIRECT cleared
    assert data == path.read_bytes()


def test_a_filesystem_refusing_o_direct_at_open_gets_a_cached_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def refuse_direct(path: str, flags: int, mode: int = 0o777) -> int:
        if flags & direct_write._O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, mode)

    if not direct_write._O_DIRECT:
        pytest.skip("no O_DIRECT on this platform")
    monkeypatch.setattr(os, "open", refuse_direct)
    data = os.urandom(3 * BLOCK + 5)
    path = tmp_path / "fragment"
    assert not write_in_chunks(path, data, 5000)
    assert data == path.read_bytes()


def test_a_direct_write_refused_midway_goes_on_through_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not direct_supported(tmp_path):
        pytest.skip("no O_DIRECT on this filesystem")
    real_write = os.write
    calls = {"n": 0}

    def refuse_second(fd: int, data: memoryview) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", refuse_second)
    data = os.urandom(40 * BLOCK + 9)
    path = tmp_path / "fragment"
    assert not write_in_chunks(path, data, 7000, buffer_bytes=4 * BLOCK)
    assert data == path.read_bytes()


def test_the_buffer_must_be_whole_blocks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiple of 4096"):
        DirectFile(str(tmp_path / "x"), BLOCK + 1)
