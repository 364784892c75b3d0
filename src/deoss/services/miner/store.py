"""The miner's fragment store: temporary and permanent areas, content-addressed, crash-safe.

Layout under the store root::

    incoming/            bytes being received (never served; cleared at startup)
    temp/<aa>/<hash>     fragments of deals not yet SUCCESS
    perm/<aa>/<hash>     fragments of stored files
    tags/<aa>/<hash>     PoDR² tags of a fragment (48 bytes per block)
    mirrors/<aa>/<fid>.<segment>.<fragment>
                         mirror copies of the tags of other fragments of a segment held here
                         (kept for a restorer when the tagger is gone; docs/podr2.md)
    index.sqlite         which (fid, segment, fragment) each hash serves, and its area; the
                         deal each fid was last received for (to settle temporary fragments)

A fragment is written to incoming/ (with O_DIRECT where the filesystem allows it: see
``direct_write``), fsynced, renamed into its area, the directory fsynced, and only then indexed
(in one SQLite transaction, synchronous=FULL): a crash at any point leaves either no index row
(the bytes are swept at startup) or a complete, hash-checked file. Reads go through the index,
so a half-written fragment is never served. One hash may serve several (fid, segment,
fragment) places; its bytes are stored once and removed with the last place.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from deoss.services.common.direct_write import DirectFile

__all__ = ["Area", "FragmentPlace", "FragmentStore", "MirrorPlace", "StoreError"]

CHUNK = 1024 * 1024
MIRRORS = "mirrors"


class StoreError(Exception):
    """A fragment that cannot be stored or found; the message says why."""


class BodyMismatch(StoreError):
    """The bytes offered for a fragment are not its declared size or do not hash to it."""


class Area:
    TEMP = "temp"
    PERM = "perm"


@dataclass(frozen=True)
class MirrorPlace:
    """Which fragment a mirror copy of tags belongs to: (fid, segment, fragment) of a file."""

    fid: str
    segment: int
    fragment: int
    fragment_hash: bytes
    key_id: bytes


@dataclass(frozen=True)
class FragmentPlace:
    fragment_hash: bytes
    fid: str
    segment: int
    fragment: int
    area: str
    size: int


_SCHEMA = """
CREATE TABLE IF NOT EXISTS places (
    hash BLOB NOT NULL, fid TEXT NOT NULL, segment INTEGER NOT NULL, fragment INTEGER NOT NULL,
    area TEXT NOT NULL, size INTEGER NOT NULL,
    PRIMARY KEY (fid, segment, fragment)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS places_by_hash ON places (hash);
CREATE TABLE IF NOT EXISTS key_tags (
    hash BLOB NOT NULL, key_id BLOB NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (hash, key_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deals (fid TEXT PRIMARY KEY, deal_id INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mirrors (
    fid TEXT NOT NULL, segment INTEGER NOT NULL, fragment INTEGER NOT NULL,
    hash BLOB NOT NULL, key_id BLOB NOT NULL, size INTEGER NOT NULL,
    PRIMARY KEY (fid, segment, fragment)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS mirrors_by_hash ON mirrors (hash, key_id);
"""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FragmentStore:
    """Thread-safe; callers on an event loop run its methods with asyncio.to_thread."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        for name in ("incoming", Area.TEMP, Area.PERM, "tags", MIRRORS):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.root / "index.sqlite", check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._sweep()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- paths ---------------------------------------------------------------------------

    def _path(self, area: str, fragment_hash: bytes) -> Path:
        name = fragment_hash.hex()
        return self.root / area / name[:2] / name

    def _locate(self, fragment_hash: bytes) -> Path | None:
        """Where the bytes of a hash are: perm/ once any of its places is permanent."""
        for area in (Area.PERM, Area.TEMP):
            path = self._path(area, fragment_hash)
            if path.exists():
                return path
        return None

    def _sweep(self) -> None:
        """Drop partial writes, and files no index row points at (a crash before indexing)."""
        for stray in (self.root / "incoming").iterdir():
            stray.unlink(missing_ok=True)
        with self._lock:
            known = {bytes(h) for (h,) in self._db.execute("SELECT DISTINCT hash FROM places")}
            tagged = {
                _tags_name(bytes(h), bytes(k))
                for h, k in self._db.execute("SELECT hash, key_id FROM key_tags")
            }
        for area in (Area.TEMP, Area.PERM):
            for path in (self.root / area).glob("*/*"):
                if bytes.fromhex(path.name) not in known:
                    path.unlink(missing_ok=True)
        for path in (self.root / "tags").glob("*/*"):
            if path.name not in tagged:  # also tags of an older layout, fetched again on demand
                path.unlink(missing_ok=True)
        with self._transaction():  # mirrors of segments no longer held (a crash in between)
            self._db.execute(
                "DELETE FROM mirrors WHERE NOT EXISTS (SELECT 1 FROM places WHERE "
                "places.fid = mirrors.fid AND places.segment = mirrors.segment)"
            )
            mirrored = {
                _mirror_name(fid, segment, fragment)
                for fid, segment, fragment in self._db.execute(
                    "SELECT fid, segment, fragment FROM mirrors"
                )
            }
        for path in (self.root / MIRRORS).glob("*/*"):
            if path.name not in mirrored:
                path.unlink(missing_ok=True)

    # --- writing -------------------------------------------------------------------------

    def _receive(self, chunks: Iterable[bytes], expected_hash: bytes, max_size: int) -> Path:
        """Write chunks to incoming/, checking size and SHA-256; return the synced file."""
        digest = hashlib.sha256()
        size = 0
        fd, name = _mkstemp(self.root / "incoming")
        path = Path(name)
        os.close(fd)  # a unique name; DirectFile opens it again with O_DIRECT
        try:
            with DirectFile(name) as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_size:
                        raise BodyMismatch(f"body is larger than the declared {max_size} bytes")
                    digest.update(chunk)
                    out.write(chunk)
                if size != max_size:
                    raise BodyMismatch(f"body has {size} bytes, {max_size} declared")
                if digest.digest() != expected_hash:
                    raise BodyMismatch(
                        f"body SHA-256 {digest.hexdigest()} is not the declared "
                        f"{expected_hash.hex()}"
                    )
                out.finish()
                os.fsync(out.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def put_fragment(self, place: FragmentPlace, chunks: Iterable[bytes]) -> None:
        """Store a fragment for ``place`` (area TEMP or PERM), or add the place if the bytes
        are already here. Raises StoreError when the bytes do not match hash and size."""
        if self.places_of(place.fragment_hash) and self._locate(place.fragment_hash):
            self._index(place)  # the same bytes serve another place already
            return
        received = self._receive(chunks, place.fragment_hash, place.size)
        target = self._path(place.area, place.fragment_hash)
        target.parent.mkdir(exist_ok=True)
        os.replace(received, target)
        _fsync_dir(target.parent)
        self._index(place)

    def _index(self, place: FragmentPlace) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO places VALUES (?, ?, ?, ?, ?, ?)",
                (
                    place.fragment_hash,
                    place.fid,
                    place.segment,
                    place.fragment,
                    place.area,
                    place.size,
                ),
            )

    def _tags_path(self, fragment_hash: bytes, key_id: bytes) -> Path:
        return self.root / "tags" / fragment_hash.hex()[:2] / _tags_name(fragment_hash, key_id)

    def put_tags(self, fragment_hash: bytes, key_id: bytes, tags: bytes) -> None:
        """Store the tags of a fragment held here under one tag key, atomically.

        Tags are kept per key: the same fragment may belong to several files tagged by
        different schedulers, and each file's challenges name its own key.
        """
        if not self.places_of(fragment_hash):
            raise StoreError(f"no fragment {fragment_hash.hex()} here to tag")
        fd, name = _mkstemp(self.root / "incoming")
        with os.fdopen(fd, "wb") as out:
            out.write(tags)
            out.flush()
            os.fsync(out.fileno())
        target = self._tags_path(fragment_hash, key_id)
        target.parent.mkdir(exist_ok=True)
        os.replace(name, target)
        _fsync_dir(target.parent)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO key_tags VALUES (?, ?, ?)",
                (fragment_hash, key_id, len(tags)),
            )

    # --- mirror copies of other fragments' tags --------------------------------------------

    def _mirror_path(self, fid: str, segment: int, fragment: int) -> Path:
        return self.root / MIRRORS / fid[:2] / _mirror_name(fid, segment, fragment)

    def put_mirror(self, mirror: MirrorPlace, tags: bytes) -> None:
        """Keep a mirror copy of the tags of another fragment of a segment held here,
        atomically. Raises StoreError when no fragment of that segment is held here."""
        if not self.holds_segment(mirror.fid, mirror.segment):
            raise StoreError(f"no fragment of segment {mirror.segment} of {mirror.fid} here")
        fd, name = _mkstemp(self.root / "incoming")
        with os.fdopen(fd, "wb") as out:
            out.write(tags)
            out.flush()
            os.fsync(out.fileno())
        target = self._mirror_path(mirror.fid, mirror.segment, mirror.fragment)
        target.parent.mkdir(exist_ok=True)
        os.replace(name, target)
        _fsync_dir(target.parent)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO mirrors VALUES (?, ?, ?, ?, ?, ?)",
                (
                    mirror.fid,
                    mirror.segment,
                    mirror.fragment,
                    mirror.fragment_hash,
                    mirror.key_id,
                    len(tags),
                ),
            )

    def mirrors_of(self, fragment_hash: bytes, key_id: bytes) -> list[MirrorPlace]:
        """The mirror copies kept here of a fragment's tags under one key."""
        with self._lock:
            rows = self._db.execute(
                "SELECT fid, segment, fragment, hash, key_id FROM mirrors "
                "WHERE hash = ? AND key_id = ? ORDER BY fid, segment, fragment",
                (fragment_hash, key_id),
            ).fetchall()
        return [MirrorPlace(f, s, i, bytes(h), bytes(k)) for f, s, i, h, k in rows]

    def read_mirror(self, mirror: MirrorPlace) -> bytes:
        try:
            return self._mirror_path(mirror.fid, mirror.segment, mirror.fragment).read_bytes()
        except FileNotFoundError as exc:
            raise StoreError(
                f"no mirror of fragment {mirror.fragment} of segment {mirror.segment} of "
                f"{mirror.fid} here"
            ) from exc

    def mirror_bytes(self) -> int:
        """The bytes of all mirror copies kept here."""
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM mirrors").fetchone()[0])

    def holds_segment(self, fid: str, segment: int) -> bool:
        with self._lock:
            return (
                self._db.execute(
                    "SELECT 1 FROM places WHERE fid = ? AND segment = ?", (fid, segment)
                ).fetchone()
                is not None
            )

    def remove_tags(self, fragment_hash: bytes, key_id: bytes) -> None:
        """Forget the tags of a fragment under one key (found unusable): the index row first,
        so a crash in between leaves a stray file the startup sweep removes."""
        with self._lock:
            self._db.execute(
                "DELETE FROM key_tags WHERE hash = ? AND key_id = ?", (fragment_hash, key_id)
            )
        self._tags_path(fragment_hash, key_id).unlink(missing_ok=True)

    def promote(self, fid: str) -> int:
        """Deal SUCCESS: move the fid's fragments from TEMP to PERM; returns how many."""
        moved = 0
        for place in self.places_for_fid(fid):
            if place.area == Area.TEMP:
                self.promote_place(place)
                moved += 1
        return moved

    def promote_place(self, place: FragmentPlace) -> None:
        """Move one place (and its bytes, if still temporary) to the permanent area."""
        source = self._path(Area.TEMP, place.fragment_hash)
        target = self._path(Area.PERM, place.fragment_hash)
        target.parent.mkdir(exist_ok=True)
        if source.exists():
            os.replace(source, target)
            _fsync_dir(target.parent)
        with self._lock:
            self._db.execute(
                "UPDATE places SET area = ? WHERE fid = ? AND segment = ? AND fragment = ?",
                (Area.PERM, place.fid, place.segment, place.fragment),
            )

    def remove_fid(self, fid: str, area: str | None = None) -> int:
        """Forget the fid's places (of one area, or all); bytes go with their last place."""
        removed = 0
        for place in self.places_for_fid(fid):
            if area is not None and place.area != area:
                continue
            self.remove_place(place)
            removed += 1
        return removed

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def remove_place(self, place: FragmentPlace) -> None:
        """Forget a place; its bytes and tags go with the hash's last place, the mirrors kept
        for its segment with the segment's last place here."""
        with self._transaction():
            self._db.execute(
                "DELETE FROM places WHERE fid = ? AND segment = ? AND fragment = ?",
                (place.fid, place.segment, place.fragment),
            )
            mirrors: list[tuple[str, int, int]] = []
            if not self._db.execute(
                "SELECT 1 FROM places WHERE fid = ? AND segment = ?", (place.fid, place.segment)
            ).fetchone():
                mirrors = self._db.execute(
                    "SELECT fid, segment, fragment FROM mirrors WHERE fid = ? AND segment = ?",
                    (place.fid, place.segment),
                ).fetchall()
                self._db.execute(
                    "DELETE FROM mirrors WHERE fid = ? AND segment = ?", (place.fid, place.segment)
                )
            remaining = self._db.execute(
                "SELECT COUNT(*) FROM places WHERE hash = ?", (place.fragment_hash,)
            ).fetchone()[0]
            keys = []
            if remaining == 0:
                keys = [
                    bytes(k)
                    for (k,) in self._db.execute(
                        "SELECT key_id FROM key_tags WHERE hash = ?", (place.fragment_hash,)
                    )
                ]
                self._db.execute("DELETE FROM key_tags WHERE hash = ?", (place.fragment_hash,))
        if remaining == 0:
            for area in (Area.TEMP, Area.PERM):
                self._path(area, place.fragment_hash).unlink(missing_ok=True)
            for key_id in keys:
                self._tags_path(place.fragment_hash, key_id).unlink(missing_ok=True)
        for fid, segment, fragment in mirrors:
            self._mirror_path(fid, segment, fragment).unlink(missing_ok=True)

    # --- deals of temporary fragments ----------------------------------------------------

    def note_deal(self, fid: str, deal_id: int) -> None:
        """Remember the deal a fid's fragments were received for (the latest one wins)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO deals VALUES (?, ?)", (fid, deal_id))

    def deal_of(self, fid: str) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT deal_id FROM deals WHERE fid = ?", (fid,)).fetchone()
        return None if row is None else int(row[0])

    def forget_deal(self, fid: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM deals WHERE fid = ?", (fid,))

    def pending_deals(self) -> list[tuple[str, int]]:
        """(fid, deal id) of every fid that still has temporary fragments, in fid order.

        A fid with temporary fragments but no remembered deal is listed with deal id -1."""
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT places.fid, COALESCE(deals.deal_id, -1) FROM places "
                "LEFT JOIN deals ON deals.fid = places.fid WHERE places.area = ? "
                "ORDER BY places.fid",
                (Area.TEMP,),
            ).fetchall()
        return [(fid, deal_id) for fid, deal_id in rows]

    # --- reading -------------------------------------------------------------------------

    def places_of(self, fragment_hash: bytes) -> list[FragmentPlace]:
        with self._lock:
            rows = self._db.execute(
                "SELECT hash, fid, segment, fragment, area, size FROM places WHERE hash = ?",
                (fragment_hash,),
            ).fetchall()
        return [_place(row) for row in rows]

    def places_for_fid(self, fid: str) -> list[FragmentPlace]:
        with self._lock:
            rows = self._db.execute(
                "SELECT hash, fid, segment, fragment, area, size FROM places WHERE fid = ? "
                "ORDER BY segment, fragment",
                (fid,),
            ).fetchall()
        return [_place(row) for row in rows]

    def usage(self) -> dict[str, int]:
        """Places and bytes per area (bytes counted per place: shared bytes count each time)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT area, COUNT(*), COALESCE(SUM(size), 0) FROM places GROUP BY area"
            ).fetchall()
        out = {
            f"{area}_{what}": 0 for area in (Area.TEMP, Area.PERM) for what in ("places", "bytes")
        }
        for area, count, size in rows:
            out[f"{area}_places"], out[f"{area}_bytes"] = count, size
        return out

    def all_places(self) -> Iterator[FragmentPlace]:
        with self._lock:
            rows = self._db.execute(
                "SELECT hash, fid, segment, fragment, area, size FROM places "
                "ORDER BY fid, segment, fragment"
            ).fetchall()
        yield from (_place(row) for row in rows)

    @contextlib.contextmanager
    def open_fragment(self, fragment_hash: bytes) -> Iterator[tuple[BinaryIO, int]]:
        """An open file of an indexed fragment and its size. Raises StoreError if absent."""
        places = self.places_of(fragment_hash)
        if not places:
            raise StoreError(f"no fragment {fragment_hash.hex()} here")
        path = self._locate(fragment_hash)
        if path is None:
            raise StoreError(f"fragment {fragment_hash.hex()} is indexed but missing")
        handle = open(path, "rb")  # noqa: SIM115 - closed by the context manager
        with handle:
            yield handle, places[0].size

    def read_range(self, fragment_hash: bytes, offset: int, length: int) -> bytes:
        with self.open_fragment(fragment_hash) as (handle, size):
            if offset < 0 or length < 0 or offset + length > size:
                raise StoreError(f"range {offset}+{length} outside a {size}-byte fragment")
            handle.seek(offset)
            return handle.read(length)

    def read_tags(
        self, fragment_hash: bytes, key_id: bytes, offset: int = 0, length: int | None = None
    ) -> bytes:
        path = self._tags_path(fragment_hash, key_id)
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                return handle.read() if length is None else handle.read(length)
        except FileNotFoundError as exc:
            raise StoreError(
                f"no tags for fragment {fragment_hash.hex()} under key {key_id.hex()}"
            ) from exc

    def has_fragment(self, fragment_hash: bytes) -> bool:
        """The bytes of an indexed fragment are on disk (not whether they are intact)."""
        return bool(self.places_of(fragment_hash)) and self._locate(fragment_hash) is not None

    def has_tags(self, fragment_hash: bytes, key_id: bytes) -> bool:
        with self._lock:
            return (
                self._db.execute(
                    "SELECT 1 FROM key_tags WHERE hash = ? AND key_id = ?", (fragment_hash, key_id)
                ).fetchone()
                is not None
            )


def _tags_name(fragment_hash: bytes, key_id: bytes) -> str:
    """tags/<hh>/<fragment hash>.<tag key id>, both hex."""
    return f"{fragment_hash.hex()}.{key_id.hex()}"


def _mirror_name(fid: str, segment: int, fragment: int) -> str:
    """mirrors/<ff>/<fid>.<segment>.<fragment>."""
    return f"{fid}.{segment}.{fragment}"


def _place(row: tuple[bytes, str, int, int, str, int]) -> FragmentPlace:
    return FragmentPlace(bytes(row[0]), row[1], row[2], row[3], row[4], row[5])


def _mkstemp(directory: Path) -> tuple[int, str]:
    import tempfile

    return tempfile.mkstemp(dir=directory, prefix="part-")
