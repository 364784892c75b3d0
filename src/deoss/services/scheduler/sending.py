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
import json
from dataclasses import dataclass, field

import httpx

from deoss.chain.modules.deals import Deal, Receipt, receipt_message
from deoss.client.signing import HEADER_BODY, sent_once
from deoss.core.errors import DataPathError
from deoss.core.keys import verify
from deoss.core.layout import SegmentPlan
from deoss.services.common.app import log_event
from deoss.services.scheduler.placement import Candidate, NotEnoughMiners, has_room

__all__ = ["DealWork", "FragmentSender", "MinerFailed"]

ROLE = "scheduler"
# a receipt answer is a small JSON object (address and signature: ~250 bytes); a miner answering
# more is cut off here instead of filling the scheduler's memory
RECEIPT_MAX_BYTES = 4096


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
        url = f"{miner.endpoint}/fragments/{digest.hex()}"
        query = {
            "deal": str(deal.id),
            "attempt": str(deal.attempts),
            "segment": str(plan.index),
            "fragment": str(index),
        }
        who = f"miner {miner.address} at {miner.endpoint}"
        try:
            async with asyncio.timeout(self.timeout_s):
                body, length = sent_once(data)
                headers = {HEADER_BODY: digest.hex(), "accept-encoding": "identity", **length}
                async with self.http.stream(
                    "PUT", url, params=query, content=body, headers=headers
                ) as response:
                    status, answer = response.status_code, await _read_capped(response)
        except TimeoutError as exc:
            raise MinerFailed(f"{who}: no answer within {self.timeout_s:g} s") from exc
        except httpx.HTTPError as exc:
            raise MinerFailed(f"{who}: {exc!r}") from exc
        return self.checked_receipt(status, answer, miner, deal, plan, index)

    def checked_receipt(
        self,
        status: int,
        answer: bytes,
        miner: Candidate,
        deal: Deal,
        plan: SegmentPlan,
        index: int,
    ) -> Receipt:
        """The miner's receipt (its answer: ``status`` and at most ``RECEIPT_MAX_BYTES + 1``
        bytes of body), checked as ``deals.report`` will check it.

        Raises:
            MinerFailed: not 200, too long, malformed, another miner's, or a signature that fails.
        """
        who = f"miner {miner.address} at {miner.endpoint}"
        text = answer[:200].decode("utf-8", "replace")
        if status != 200:
            raise MinerFailed(f"{who}: HTTP {status} {text!r}")
        if len(answer) > RECEIPT_MAX_BYTES:
            raise MinerFailed(f"{who}: a receipt answer longer than {RECEIPT_MAX_BYTES} bytes")
        try:
            body = json.loads(answer)
            signer, signature = str(body["miner"]), bytes.fromhex(body["signature"])
        except (ValueError, KeyError, TypeError) as exc:
            raise MinerFailed(f"{who}: malformed receipt ({exc!r})") from exc
        if signer != miner.address:
            raise MinerFailed(f"{who}: the receipt names miner {signer}")
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
            verify(miner.public_key, message, signature)
        except DataPathError as exc:
            raise MinerFailed(f"{who}: the receipt signature does not verify ({exc})") from exc
        return Receipt(miner=miner.public_key, signature=signature)


async def _read_capped(response: httpx.Response) -> bytes:
    """At most ``RECEIPT_MAX_BYTES + 1`` bytes of the answer: a miner streaming more is cut off
    there (the rest is never taken off the wire), never read into memory."""
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > RECEIPT_MAX_BYTES:
            break
    return bytes(data[: RECEIPT_MAX_BYTES + 1])
