"""``write_streamed``, the body pipe from the event loop into the store's writer thread: a body
that passes is stored whole, one that fails (bad bytes, or cut off on the event loop's side)
leaves nothing, and the error raised is the body's, not the writer's reaction to it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from deoss.services.common.auth import AuthError
from deoss.services.miner.store import Area, FragmentPlace, FragmentStore
from deoss.services.miner.writer import write_streamed

pytestmark = pytest.mark.anyio

DATA = os.urandom(5000)
PLACE = FragmentPlace(hashlib.sha256(DATA).digest(), "aa" * 32, 0, 0, Area.TEMP, len(DATA))


async def chunks_of(data: bytes, size: int = 300) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def assert_nothing_kept(store: FragmentStore, root: Path) -> None:
    assert [] == store.places_of(PLACE.fragment_hash)
    assert [] == list((root / "incoming").iterdir())


async def test_a_body_in_many_chunks_is_stored_whole(tmp_path: Path) -> None:
    store = FragmentStore(tmp_path)
    await write_streamed(store, PLACE, chunks_of(DATA))
    assert [PLACE] == store.places_of(PLACE.fragment_hash)
    assert DATA == store.read_range(PLACE.fragment_hash, 0, len(DATA))


async def test_bytes_that_are_not_the_signed_hash_are_an_auth_error_and_leave_nothing(
    tmp_path: Path,
) -> None:
    store = FragmentStore(tmp_path)
    with pytest.raises(AuthError, match="signed SHA-256"):
        await write_streamed(store, PLACE, chunks_of(DATA[:-1] + b"x"))
    assert_nothing_kept(store, tmp_path)


async def test_a_body_cut_off_raises_its_own_error_and_leaves_nothing(tmp_path: Path) -> None:
    async def cut_off() -> AsyncIterator[bytes]:
        yield DATA[:1000]
        raise ConnectionResetError("client went away")

    store = FragmentStore(tmp_path)
    with pytest.raises(ConnectionResetError, match="client went away"):
        await write_streamed(store, PLACE, cut_off())
    assert_nothing_kept(store, tmp_path)
