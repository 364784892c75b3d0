"""Uploads: admit, spool the body, plan it, declare the deal for the user, deliver the segments.

    request --(a slot of the gateway's and of the user's, else 429 at once)--> admitted
    body --(at most the limit; hashed while written: the signed SHA-256)--> spool file
         --(each complete segment read back, erasure-coded and hashed while the next arrives:
            the plan, the fid)
         --> stored already? declare the stored file's plan, else the one just made
         --> deals.declare (owner = the user) --> ASSIGNED --> PUT each padded segment to the
             scheduler, streamed from the spool file --> SUCCESS (or FAILED)

Invariants:

* An upload holds its slot (``UploadSlots``) from its request until its spool file is deleted;
  a refused request (429) has read no body and declared nothing.
* Nothing is declared before the whole body is spooled and matches the SHA-256 the user
  signed; a spool file never holds more than the limit and is deleted however the upload ends
  (and at startup, for files left by a crash: ``sweep_spool``).
* A fid already stored is declared at once and the chain deduplicates it (no deal, no bytes
  sent), with the fragment hashes of the file record.
* Memory is bounded per upload and per gateway, not by the body: while spooling, an upload
  holds its last batch of the body (``FLUSH_BYTES``); a planning thread reads a segment back
  from the spool file and codes it a stripe of ``PLAN_STRIPE`` bytes per fragment at a time,
  and at most ``planning_slots`` threads do at once in the gateway (an upload has at most
  PLANNING_DEPTH segments waiting for or in planning; beyond, its body waits). While sending,
  at most two segments per deal travel, each streamed from the spool file ``SEND_CHUNK`` bytes
  at a time.
* A deal is driven until SUCCESS or FAILED: whenever its (scheduler, attempt) changes, every
  segment is sent again to the new scheduler. A scheduler that cannot be reached (connection
  error, timeout, 5xx) is replaced with ``deals.reassign``; the chain bounds the attempts.

This module admits uploads (``UploadSlots``) and declares them; the other steps have a module
each: ``uplink`` (what an upload needs), ``spooling`` (body to spool file, segments planned),
``deal_driver`` (segments delivered until the deal ends, background deliveries).
"""

from __future__ import annotations

from dataclasses import dataclass

from msgspec.structs import replace

from deoss.chain.modules.declare import DeclareDeal
from deoss.chain.modules.files import FileRecord
from deoss.client.chain import ChainClient
from deoss.client.errors import BadResponse
from deoss.core.layout import SegmentPlan, segment_span
from deoss.services.common.errors import TooManyRequests
from deoss.services.gateway.spooling import Spooled
from deoss.services.gateway.uplink import Uplink

__all__ = [
    "Declared",
    "UploadSlot",
    "UploadSlots",
    "declare_upload",
]

RETRY_AFTER_S = 5  # an upload refused for load: a new slot is likely free by then


# --- admission ----------------------------------------------------------------------------


class UploadSlot:
    """One admitted upload's place; ``release`` (idempotent) gives it back."""

    def __init__(self, slots: UploadSlots, user: str) -> None:
        self._slots: UploadSlots | None = slots
        self.user = user

    def release(self) -> None:
        if self._slots is not None:
            self._slots._release(self.user)
            self._slots = None


class UploadSlots:
    """Uploads in flight, per gateway and per user: admitted at once or refused, never queued,
    so that a refused request costs no memory, no disk and no chain transaction."""

    def __init__(self, per_gateway: int, per_user: int) -> None:
        self.per_gateway = per_gateway
        self.per_user = per_user
        self._by_user: dict[str, int] = {}
        self._total = 0

    def __len__(self) -> int:
        return self._total

    def admit(self, user: str) -> UploadSlot:
        """A slot for one more upload of ``user``.

        Raises:
            TooManyRequests: the gateway or the user has as many uploads in flight as allowed.
        """
        if self._total >= self.per_gateway:
            raise TooManyRequests(
                f"this gateway has {self._total} uploads in progress, its limit; try again in "
                f"{RETRY_AFTER_S} s",
                retry_after_s=RETRY_AFTER_S,
            )
        mine = self._by_user.get(user, 0)
        if mine >= self.per_user:
            raise TooManyRequests(
                f"{user} has {mine} uploads in progress on this gateway, the limit per user; "
                f"try again once one is done (in {RETRY_AFTER_S} s)",
                retry_after_s=RETRY_AFTER_S,
            )
        self._by_user[user] = mine + 1
        self._total += 1
        return UploadSlot(self, user)

    def _release(self, user: str) -> None:
        self._total -= 1
        left = self._by_user[user] - 1
        if left:
            self._by_user[user] = left
        else:
            del self._by_user[user]


# --- declaring ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Declared:
    deal_id: int | None  # None: deduplicated, the object exists already
    segments: list[SegmentPlan]


async def find_file(chain: ChainClient, fid: str) -> FileRecord | None:
    return await chain.reads.file(fid)


async def plan_segments(uplink: Uplink, spooled: Spooled) -> list[SegmentPlan]:
    """The segments to declare: from the stored file of the same fid (its fragments are on
    miners already), else as planned while spooling."""
    record = await find_file(uplink.chain, spooled.fid)
    if record is None:
        return spooled.segments
    layout = uplink.layout
    return [
        replace(s, size=segment_span(s.index, spooled.size, layout)[1]) for s in record.segments
    ]


async def declare_upload(
    uplink: Uplink, owner: str, bucket: str, name: str, spooled: Spooled
) -> Declared:
    """Declare the deal for ``owner``; the chain deduplicates a stored fid at once.

    Raises:
        TxRefused: the chain refused the declaration (space, bucket, name taken, ...).
    """
    segments = await plan_segments(uplink, spooled)
    call = DeclareDeal(
        bucket=bucket,
        name=name,
        size=spooled.size,
        fid=spooled.fid,
        segments=segments,
        owner=owner,
    )
    outcome = await uplink.chain.submit(uplink.key, call)
    for event in outcome.result.events:
        if event.type == "deal.deduplicated":
            uplink.metrics.deduplicated.inc()
            return Declared(deal_id=None, segments=segments)
        if event.type == "deal.declared":
            return Declared(deal_id=int(event.get("id") or 0), segments=segments)
    raise BadResponse("deals.declare was accepted without a deal.declared or deduplicated event")
