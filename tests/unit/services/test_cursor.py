"""The followers' block cursor (services/common/cursor.py), shared by miner and scheduler."""

from __future__ import annotations

from pathlib import Path

import pytest

from deoss.services.common.cursor import BlockCursor, CursorError

pytestmark = pytest.mark.anyio


def test_cursor_file(tmp_path: Path) -> None:
    cursor = BlockCursor(tmp_path / "cursor")
    assert cursor.read() is None
    (tmp_path / "cursor").write_text("41\n")
    assert 41 == cursor.read()
    (tmp_path / "cursor").write_text("forty\n")
    with pytest.raises(CursorError, match="not a block height"):
        cursor.read()


async def test_first_start_writes_the_chain_height_then_keeps_the_cursor(tmp_path: Path) -> None:
    cursor = BlockCursor(tmp_path / "cursor")
    asked: list[int] = []

    async def current_height() -> int:
        asked.append(1)
        return 17

    assert 17 == await cursor.ensure(current_height)
    assert "17\n" == (tmp_path / "cursor").read_text()
    await cursor.advance(18)
    assert 18 == await cursor.ensure(current_height)  # not asked again: the file says 18
    assert [1] == asked
    assert [] == [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


async def test_a_bad_cursor_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "cursor").write_text("-3\n")

    async def current_height() -> int:
        raise AssertionError("a bad cursor must not be replaced by the chain's height")

    with pytest.raises(CursorError, match="cursor file .* holds '-3'"):
        await BlockCursor(tmp_path / "cursor").ensure(current_height)
    assert "-3\n" == (tmp_path / "cursor").read_text()
