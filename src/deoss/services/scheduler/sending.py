"""Sending the fragments of one segment to miners and collecting receipts that will pass the chain.

Each fragment goes to its chosen miner with ``PUT {endpoint}/fragments/{hash}?deal=&attempt=
&segment=&fragment=`` (signed; the body hash in X-Deoss-Content-Sha256), all fragments in
parallel; ``attempt`` is the deal's assignment being placed for, which the receipt names.
A miner fails when the request errors or times out (a deadline for the whole exchange, whatever
the transport), when it answers anything but 200, or when its receipt is malformed, names
another miner, or does not verify against ``deals.receipt_message``. A failed miner is
recorded for the deal and replaced by the next unused spare with room; when none is left the
segment fails with ``NotEnoughMiners`` naming every failure.

Invariants: the fragments of one segment end on distinct miners; the bytes planned on a miner
for the deal (``DealWork.reserved``) never exceed the idle space the chain listed for it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx

from deoss.chain.modules.deals import Deal, Receipt, receipt_message
from deoss.client.errors import PeerError
from deoss.client.miner import MinerClient
from deoss.client.miner_types import Receipt as MinerReceipt
from deoss.core.errors import DataPathError
from deoss.core.keys import verify
from deoss.core.layout import SegmentPlan
from deoss.services.common.app import log_event
from deoss.services.scheduler.placement import Candidate, NotEnoughMiners, has_room

__all__ = ["DealWork", "FragmentSender", "MinerFailed"]

ROLE = "scheduler"


class MinerFailed(Exception):
    """One miner did not store a fragment, or its receipt would not pass the chain."""


@dataclass
class DealWork:
    """A deal in progress: bytes planned per miner, miners that failed, per-segment locks, for
    one assignment (``attempt``, the deal's ``attempts`` when it was assigned here)."""

    attempt: int = -1
    reserved: dict[bytes, int] = field(default_factory=dict)
    failed: set[bytes] = field(default_factory=set)
    locks: dict[int, asyncio.Lock] = field(default_factory=dict)
    report_error: str = ""

    def reserve(self, miner: bytes, size: int) -> None:
        self.reserved[miner] = self.reserved.get(miner, 0) + size

    def release(self, miner: bytes, size: int) -> None:
        self.reserved[miner] = max(0, self.reserved.get(miner, 0) - size)


class _Spares:
    """Replacement miners for one segment, in ranked order; never one already used in it."""

    def __init__(self, spares: list[Candidate], used: set[bytes]) -> None:
        self._spares = list(spares)
        self._used = used

    def take(self, work: DealWork, size: int) -> Candidate | None:
        while self._spares:
            candidate = self._spares.pop(0)
            key = candidate.public_key
            if key in self._used or key in work.failed:
                continue
            if not has_room(candidate, size, work.reserved):
                continue
            self._used.add(key)
            return candidate
        return None


class FragmentSender:
    """Puts fragments on miners through one signed HTTP client."""

    def __init__(self, http: httpx.AsyncClient, chain_id: str, timeout_s: float) -> None:
        self.http = http
        self.miners = MinerClient(http, timeout_s=timeout_s)
        self.chain_id = chain_id
        self.timeout_s = timeout_s

    async def place(
        self,
        work: DealWork,
        deal: Deal,
        plan: SegmentPlan,
        fragments: list[bytes],
        chosen: list[Candidate],
        spares: list[Candidate],
    ) -> list[Receipt]:
        """Receipts for every fragment, in fragment order (``chosen[j]`` gets fragment j first).

        Raises:
            NotEnoughMiners: a fragment could not be placed on any miner.
        """
        size = len(fragments[0])
        for miner in chosen:
            work.reserve(miner.public_key, size)
        pool = _Spares(spares, {m.public_key for m in chosen})
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._place_one(work, pool, deal, plan, j, data, miner))
                    for j, (data, miner) in enumerate(zip(fragments, chosen, strict=True))
                ]
        except ExceptionGroup as failures:
            raise failures.exceptions[0] from None
        return [task.result() for task in tasks]

    async def _place_one(
        self,
        work: DealWork,
        pool: _Spares,
        deal: Deal,
        plan: SegmentPlan,
        index: int,
        data: bytes,
        miner: Candidate,
    ) -> Receipt:
        """Send one fragment, moving to the next spare each time a miner fails."""
        reasons: list[str] = []
        while True:
            try:
                return await self._put_fragment(miner, deal, plan, index, data)
            except MinerFailed as exc:
                reasons.append(str(exc))
                work.release(miner.public_key, len(data))
                work.failed.add(miner.public_key)
                log_event(ROLE, "miner_failed", deal=deal.id, segment=plan.index, why=str(exc))
            replacement = pool.take(work, len(data))
            if replacement is None:
                raise NotEnoughMiners(
                    f"deal {deal.id} segment {plan.index} fragment {index}: no accepting miner "
                    f"left to replace the ones that failed: {'; '.join(reasons)}"
                )
            work.reserve(replacement.public_key, len(data))
            miner = replacement

    async def _put_fragment(
        self, miner: Candidate, deal: Deal, plan: SegmentPlan, index: int, data: bytes
    ) -> Receipt:
        digest = plan.fragment_hashes[index]
        query = {
            "deal": str(deal.id),
            "attempt": str(deal.attempts),
            "segment": str(plan.index),
            "fragment": str(index),
        }
        who = f"miner {miner.address} at {miner.endpoint}"
        try:
            answer = await self.miners.put_fragment(miner.endpoint, digest, data, query, what=who)
        except PeerError as exc:
            raise MinerFailed(str(exc)) from exc
        return self.checked_receipt(answer, miner, deal, plan, index)

    def checked_receipt(
        self, answer: MinerReceipt, miner: Candidate, deal: Deal, plan: SegmentPlan, index: int
    ) -> Receipt:
        """The miner's receipt, checked as ``deals.report`` will check it.

        Raises:
            MinerFailed: another miner's, or a signature that fails.
        """
        who = f"miner {miner.address} at {miner.endpoint}"
        if answer.miner != miner.address:
            raise MinerFailed(f"{who}: the receipt names miner {answer.miner}")
        message = receipt_message(
            self.chain_id,
            deal.id,
            deal.attempts,
            deal.fid,
            plan.index,
            index,
            plan.fragment_hashes[index],
            miner.public_key,
        )
        try:
            verify(miner.public_key, message, answer.signature)
        except DataPathError as exc:
            raise MinerFailed(f"{who}: the receipt signature does not verify ({exc})") from exc
        return Receipt(miner=miner.public_key, signature=answer.signature)
