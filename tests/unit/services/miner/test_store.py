"""The miner's fragment store: hash-checked, atomic, durable, never serving partial writes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from deoss.services.miner.store import Area, FragmentPlace, FragmentStore, StoreError

DATA = os.urandom(3000)
HASH = hashlib.sha256(DATA).digest()


def place(
    fid: str = "aa" * 32,
    segment: int = 0,
    fragment: int = 0,
    area: str = Area.TEMP,
    data: bytes = DATA,
) -> FragmentPlace:
    return FragmentPlace(hashlib.sha256(data).digest(), fid, segment, fragment, area, len(data))


def chunks(data: bytes, size: int = 700) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_put_read_and_range(tmp_path: Path) -> None:
    store = FragmentStore(tmp_path)
    store.put_fragment(place(), chunks(DATA))
    with store.open_fragment(HASH) as (handle, size):
        assert (DATA, 3000) == (handle.read(), size)
    assert DATA[100:200] == store.read_range(HASH, 100, 100)
    with pytest.raises(StoreError, match="outside"):
        store.read_range(HASH, 2990, 20)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (DATA[:-1] + b"x", "SHA-256"),
        (DATA + b"x", "larger than the declared"),
        (DATA[:-1], "2999 bytes, 3000 declared"),
    ],
)
def test_bad_bodies_are_refused_and_leave_nothing(
    tmp_path: Path, body: bytes, message: str
) -> None:
    store = FragmentStore(tmp_path)
    with pytest.raises(StoreError, match=message):
        store.put_fragment(place(), chunks(body))
    assert [] == store.places_of(HASH)
    assert [] == list((tmp_path / "incoming").iterdir())
    with pytest.raises(StoreError, match="no fragment"):
        store.read_range(HASH, 0, 1)


def test_promote_moves_to_permanent_and_survives_restart(tmp_path: Path) -> None:
    store = FragmentStore(tmp_path)
    store.put_fragment(place(), chunks(DATA))
    assert 1 == store.promote("aa" * 32)
    assert [Area.PERM] == [p.area for p in store.places_of(HASH)]
    store.close()
    again = FragmentStore(tmp_path)
    assert DATA == again.read_range(HASH, 0, 3000)


def test_failed_deal_removes_temporary_fragments(tmp_path: Path) -> None:
    store = FragmentStore(tmp_path)
    store.put_fragment(place(), chunks(DATA))
    assert 1 == store.remove_fid("aa" * 32, Area.TEMP)
    assert [] == store.places_of(HASH)
    assert [] == list((tmp_path / Area.TEMP).glob("*/*"))


def test_one_copy_of_bytes_serves_several_places(tmp_path: Path) -> None:
    store = FragmentStore(tmp_path)
    store.put_fragment(place(fid="aa" * 32), chunks(DATA))
    store.promote("aa" * 32)
    store.put_fragment(place(fid="bb" * 32, segment=3), iter(()))  # bytes already here
    assert 2 == len(store.places_of(HASH))
    store.remove_fid("aa" * 32)
    assert DATA == store.read_range(HASH, 0, 3000)
    store.remove_fid("bb" * 32)
    assert [] == list(tmp_path.glob("perm/*/*")) + list(tmp_path.glob("temp/*/*"))


KEY_A, KEY_B = b"\xaa" * 32, b"\xbb" * 32


def test_tags_are_stored_per_key_for_held_fragments_only(tmp_path: Path) -> None:
    """One fragment may serve files tagged by different schedulers: each key keeps its tags,
    and a restart keeps them; they go with the fragment's last place."""
    store = FragmentStore(tmp_path)
    with pytest.raises(StoreError, match="no fragment"):
        store.put_tags(HASH, KEY_A, b"t" * 48)
    store.put_fragment(place(), chunks(DATA))
    store.put_tags(HASH, KEY_A, b"t" * 96)
    assert not store.has_tags(HASH, KEY_B)
    store.put_tags(HASH, KEY_B, b"u" * 96)
    assert (True, b"t" * 48) == (store.has_tags(HASH, KEY_A), store.read_tags(HASH, KEY_A, 48, 48))
    assert b"u" * 96 == store.read_tags(HASH, KEY_B)
    store.close()
    store = FragmentStore(tmp_path)
    assert b"t" * 96 == store.read_tags(HASH, KEY_A) and store.has_tags(HASH, KEY_B)
    store.remove_fid("aa" * 32)
    assert not store.has_tags(HASH, KEY_A) and not store.has_tags(HASH, KEY_B)
    assert [] == list(tmp_path.glob("tags/*/*"))
    with pytest.raises(StoreError, match="no tags"):
        store.read_tags(HASH, KEY_A)


def test_crash_leftovers_are_swept_at_startup(tmp_path: Path) -> None:
    """A partial upload in incoming/ and bytes renamed into temp/ but never indexed (crash
    between rename and index) are removed; indexed fragments stay."""
    store = FragmentStore(tmp_path)
    store.put_fragment(place(), chunks(DATA))
    store.close()
    (tmp_path / "incoming" / "part-123").write_bytes(b"half")
    orphan = os.urandom(10)
    orphan_path = tmp_path / Area.TEMP / "ff" / hashlib.sha256(orphan).hexdigest()
    orphan_path.parent.mkdir(exist_ok=True)
    orphan_path.write_bytes(orphan)
    store = FragmentStore(tmp_path)
    assert [] == list((tmp_path / "incoming").iterdir())
    assert not orphan_path.exists()
    assert DATA == store.read_range(HASH, 0, 3000)


def test_indexed_but_missing_bytes_are_reported(tmp_path: Path) -> None:
    store = FragmentStore(tmp_path)
    store.put_fragment(place(), chunks(DATA))
    next((tmp_path / Area.TEMP).glob("*/*")).unlink()
    with pytest.raises(StoreError, match="indexed but missing"):
        store.read_range(HASH, 0, 1)
