"""The scheduler's per-deal state on disk: segment copies, receipts per segment, reported mark.

Layout under ``<data_dir>/deals/<id>/``::

    segments/<i>            the padded segment, kept until the file is tagged
    receipts/<a>/<i>        canonical list of Receipt for segment i, one per fragment, in
                            fragment order, signed for the deal's assignment (attempt) a
    reported                the height at which deals.report landed

Receipts name the assignment they were signed for and the chain takes them for no other, so
those of an earlier assignment here are never reported (nor answered) for a later one.

The segment, not its k + m fragments, is kept for tagging: a third of the bytes to write while
the user waits (4 + 8 code), and any fragment is one erasure coding away (data fragments are
slices of it).

Invariants: every file is written through a temporary file and a rename, so a reader never
sees half of one; receipts and the reported mark are fsynced before the caller answers (a
restart never loses a placed segment); segment copies are not (a fragment whose copy was lost
in a crash is fetched back from its holder for tagging), and a fragment is only returned if it
hashes right. Blocking: callers on the event loop use ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from deoss.atomic import temporary_path, write_atomic
from deoss.chain.modules.deals import Receipt
from deoss.core import codec
from deoss.core.layout import LayoutParams, SegmentPlan, encode_segment
from deoss.services.common.direct_write import DirectFile

__all__ = ["DealStore"]


def _write_direct(path: Path, data: bytes) -> None:
    """Atomically, past the page cache where the filesystem allows it (not fsynced): a 32 MiB
    copy left dirty in the cache was written back in the middle of later uploads."""
    temporary = temporary_path(path)
    with DirectFile(str(temporary)) as out:
        out.write(data)
        out.finish()
    os.replace(temporary, path)


class DealStore:
    """Per-deal state on disk: segment copies, receipts per segment, the reported mark.

    Blocking; called through ``asyncio.to_thread`` from the event loop.
    """

    def __init__(self, root: Path, layout: LayoutParams) -> None:
        self.root = Path(root)
        self.layout = layout
        self.root.mkdir(parents=True, exist_ok=True)

    def _dir(self, deal_id: int) -> Path:
        return self.root / str(deal_id)

    def deal_ids(self) -> list[int]:
        return sorted(int(p.name) for p in self.root.iterdir() if p.name.isdigit())

    def save_segment(self, deal_id: int, plan: SegmentPlan, segment: bytes) -> None:
        """Keep the padded segment for tagging (not fsynced: see the module docstring)."""
        directory = self._dir(deal_id) / "segments"
        directory.mkdir(parents=True, exist_ok=True)
        _write_direct(directory / str(plan.index), segment)

    def read_fragment(self, deal_id: int, plan: SegmentPlan, index: int) -> bytes | None:
        """Fragment ``index`` of the kept segment, if it is kept and the fragment hashes right."""
        path = self._dir(deal_id) / "segments" / str(plan.index)
        try:
            segment = path.read_bytes()
        except FileNotFoundError:
            return None
        if len(segment) != plan.padded_size:
            return None
        if index < self.layout.data_shards:  # systematic code: a slice of the segment
            size = plan.padded_size // self.layout.data_shards
            fragment = segment[index * size : (index + 1) * size]
        else:
            fragment = bytes(encode_segment(segment, self.layout)[index])
        if hashlib.sha256(fragment).digest() != plan.fragment_hashes[index]:
            return None
        return fragment

    def _receipts_dir(self, deal_id: int, attempt: int) -> Path:
        return self._dir(deal_id) / "receipts" / str(attempt)

    def save_placement(
        self, deal_id: int, attempt: int, segment: int, receipts: list[Receipt]
    ) -> None:
        """Keep a segment's receipts, signed for assignment ``attempt`` (fsynced)."""
        directory = self._receipts_dir(deal_id, attempt)
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(directory / str(segment), codec.encode(receipts), durable=True)

    def placements(self, deal_id: int, attempt: int) -> dict[int, list[Receipt]]:
        """The receipts of every segment placed for assignment ``attempt``, by segment."""
        directory = self._receipts_dir(deal_id, attempt)
        if not directory.is_dir():
            return {}
        return {
            int(path.name): codec.decode(path.read_bytes(), list[Receipt])
            for path in directory.iterdir()
            if path.name.isdigit()
        }

    def mark_reported(self, deal_id: int, height: int) -> None:
        write_atomic(self._dir(deal_id) / "reported", f"{height}\n".encode(), durable=True)

    def is_reported(self, deal_id: int) -> bool:
        return (self._dir(deal_id) / "reported").exists()

    def has(self, deal_id: int) -> bool:
        return self._dir(deal_id).is_dir()

    def drop(self, deal_id: int) -> None:
        shutil.rmtree(self._dir(deal_id), ignore_errors=True)
