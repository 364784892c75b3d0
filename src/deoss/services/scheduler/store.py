"""The scheduler's per-deal state on disk: fragment copies, receipts per segment, reported mark.

Layout under ``<data_dir>/deals/<id>/``::

    fragments/<hash>        the segment's fragments, kept until the file is tagged
    segment-<i>.receipts    canonical list of Receipt, one per fragment, in fragment order
    reported                the height at which deals.report landed

Invariants: every file is written through a temporary file and a rename, so a reader never
sees half of one; receipts and the reported mark are fsynced before the caller answers (a
restart never loses a placed segment); fragment copies are not (a copy lost in a crash is
fetched back from its holder for tagging), and a copy is only returned if it still hashes right.
Blocking: callers on the event loop use ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path

from deoss.chain.modules.deals import Receipt
from deoss.core import codec
from deoss.core.layout import SegmentPlan

__all__ = ["DealStore"]


def _write_atomic(path: Path, data: bytes | memoryview, *, durable: bool) -> None:
    # unique per writer: identical fragments (all-zero ones, say) share a name
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(temporary, path)


class DealStore:
    """Per-deal state on disk: fragment copies, receipts per segment, the reported mark.

    Blocking; called through ``asyncio.to_thread`` from the event loop.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _dir(self, deal_id: int) -> Path:
        return self.root / str(deal_id)

    def deal_ids(self) -> list[int]:
        return sorted(int(p.name) for p in self.root.iterdir() if p.name.isdigit())

    def save_fragments(
        self, deal_id: int, plan: SegmentPlan, fragments: Sequence[bytes | memoryview]
    ) -> None:
        directory = self._dir(deal_id) / "fragments"
        directory.mkdir(parents=True, exist_ok=True)
        for digest, data in zip(plan.fragment_hashes, fragments, strict=True):
            # not fsynced: a copy lost in a crash is fetched back from its holder for tagging
            _write_atomic(directory / digest.hex(), data, durable=False)

    def read_fragment(self, deal_id: int, fragment_hash: bytes) -> bytes | None:
        """The local copy, if there is one and it still hashes right."""
        path = self._dir(deal_id) / "fragments" / fragment_hash.hex()
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return data if hashlib.sha256(data).digest() == fragment_hash else None

    def save_placement(self, deal_id: int, segment: int, receipts: list[Receipt]) -> None:
        directory = self._dir(deal_id)
        directory.mkdir(parents=True, exist_ok=True)
        _write_atomic(
            directory / f"segment-{segment}.receipts", codec.encode(receipts), durable=True
        )

    def placements(self, deal_id: int) -> dict[int, list[Receipt]]:
        directory = self._dir(deal_id)
        if not directory.is_dir():
            return {}
        out = {}
        for path in directory.glob("segment-*.receipts"):
            index = int(path.name.split("-", 1)[1].split(".", 1)[0])
            out[index] = codec.decode(path.read_bytes(), list[Receipt])
        return out

    def mark_reported(self, deal_id: int, height: int) -> None:
        _write_atomic(self._dir(deal_id) / "reported", f"{height}\n".encode(), durable=True)

    def is_reported(self, deal_id: int) -> bool:
        return (self._dir(deal_id) / "reported").exists()

    def has(self, deal_id: int) -> bool:
        return self._dir(deal_id).is_dir()

    def drop(self, deal_id: int) -> None:
        shutil.rmtree(self._dir(deal_id), ignore_errors=True)
