"""Tagging a stored file (DESIGN 2 step 9), off the path that the user waits on.

A tag job names a fid this scheduler must tag: one it reported (after ``deal.success``) or one
the chain reassigned to it (``file.tag_reassigned``). For every fragment of the file: take it
from the copy of its segment kept since placement, or fetch it from its holder (``GET
/fragments/{hash}``, read no further than the fragment's size), check its hash, compute its
PoDR² tags in the enclave's low-priority worker processes, and ``PUT /tags/{hash}?fid=`` them
to the holder, which answers its signed tag confirmation (``chain.modules.tags.tags_message``), and
``PUT /mirror-tags/{hash}?fid=&segment=&fragment=`` them to the holders of the ``mirrors``
fragments before it in the segment's ring (so each tag set is kept in 1 + ``mirrors`` places,
and a lost fragment can get its tags once this scheduler is gone: docs/podr2.md, "Tag
mirrors"); then submit ``files.tagged`` with the confirmations and delete the local copies.
The chain believes the tagging only on that evidence: a confirmation that does not verify here
is a failed delivery.

Invariants:

* A job is written to ``<data_dir>/tagging/<fid>`` (fsynced) before the follower's cursor moves
  past the event that created it, and removed only when the job is finished, so a restart
  resumes every unfinished job.
* A job retries with backoff until the file is tagged, deleted, or given to another tagger;
  fragments already confirmed by their current holder are not tagged again within the process.
  After ``partial_after_s`` of failures, a file whose every segment has ``min_delivered`` (k)
  confirmed holders is reported tagged anyway (``tagged_partially``, the chain's own rule): the
  holders still without tags fetch them and confirm (``files.confirm_tags``) before the
  chain's ``tag_confirm_blocks``, or are released and their fragments rebuilt elsewhere.
* Only the enclave sees the tag secret; this module sees tags.

``tag_bytes`` lends the same workers to tags computed on request (``retag``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from deoss.atomic import write_atomic
from deoss.chain.errors import InvalidTransition, Unauthorized
from deoss.chain.modules.files import FileRecord
from deoss.chain.modules.tagging import ReportTagged
from deoss.chain.modules.tags import TagConfirmation, tags_message
from deoss.client.chain import ChainClient
from deoss.client.errors import ClientError, TxRefused
from deoss.client.miner import MinerClient
from deoss.client.miner_types import ReadReason
from deoss.core.errors import DataPathError
from deoss.core.keys import KeyPair, address_of, parse_address, verify
from deoss.core.layout import LayoutParams, SegmentPlan
from deoss.services.common.app import log_event
from deoss.services.scheduler.enclave import Enclave

__all__ = ["Tagger", "TaggingError"]

ROLE = "scheduler"
MAX_RETRY_DELAY_S = 30.0
NO_DEAL = "-"
TAGS_ANSWER_MAX_BYTES = 4096  # a miner's PUT /tags answer: a small JSON object (~400 bytes)

ReadLocal = Callable[[int, SegmentPlan, int], bytes | None]  # (deal, plan, index) -> fragment
ForgetDeal = Callable[[int], Awaitable[None]]


TAGGING_NICE = 15  # added to the enclave's worker processes' nice value


class TaggingError(Exception):
    """A step of a tag job that failed and may pass on a later try; the message says which."""


@dataclass
class _Job:
    fid: str
    deal_id: int | None  # the deal this scheduler reported (local copies), or None
    # (segment, fragment) -> the holder's confirmation of the tags it stored
    confirmed: dict[tuple[int, int], TagConfirmation] = field(default_factory=dict)
    # (mirror holder, segment, fragment): per place, as the miner keeps mirrors (two segments
    # alike share fragment hashes, and a miner may mirror both)
    mirrored: set[tuple[bytes, int, int]] = field(default_factory=set)
    failing_since: float | None = None  # monotonic time of the first failed attempt


class Tagger:
    """Runs tag jobs as background tasks; one task per fid."""

    def __init__(
        self,
        *,
        chain: ChainClient,
        key: KeyPair,
        enclave: Enclave,
        http: httpx.AsyncClient,
        layout: LayoutParams,
        read_local: ReadLocal,
        forget_deal: ForgetDeal,
        jobs_dir: Path,
        workers: int,
        timeout_s: float,
        retry_delay_s: float,
        partial_after_s: float = float("inf"),
        min_delivered: int = 0,
        mirrors: int = 0,
    ) -> None:
        self.chain = chain
        self.key = key
        self.enclave = enclave
        self.http = http
        self.miners = MinerClient(http, timeout_s=timeout_s)
        self.layout = layout
        self.read_local = read_local
        self.forget_deal = forget_deal
        self.jobs_dir = Path(jobs_dir)
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.workers = workers
        self.timeout_s = timeout_s
        self.retry_delay_s = retry_delay_s
        self.partial_after_s = partial_after_s
        self.min_delivered = min_delivered
        self.mirrors = mirrors
        enclave.start_workers(workers, TAGGING_NICE)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._request_slots = asyncio.Semaphore(workers)  # tags on request (retag.py)

    def jobs(self) -> set[str]:
        """The fids with an unfinished job on disk."""
        return {p.name for p in self.jobs_dir.iterdir() if not p.name.startswith(".")}

    def pending(self) -> int:
        return sum(1 for task in self._tasks.values() if not task.done())

    def _job_path(self, fid: str) -> Path:
        if len(fid) != 64 or any(c not in "0123456789abcdef" for c in fid):
            raise TaggingError(f"fid {fid[:80]!r} is not 64 lowercase hex digits")
        return self.jobs_dir / fid

    async def enqueue(self, fid: str, deal_id: int | None) -> None:
        """Record the job durably, then start it (if it is not running already)."""
        text = f"{NO_DEAL if deal_id is None else deal_id}\n"
        await asyncio.to_thread(write_atomic, self._job_path(fid), text)
        self._start(_Job(fid, deal_id))

    def resume(self) -> None:
        """Start every job left on disk by an earlier run."""
        for path in sorted(self.jobs_dir.iterdir()):
            if not path.name.startswith("."):
                self._start(_Job(path.name, _read_job(path)))

    async def cancel(self, fid: str) -> None:
        """Stop and forget a job and its deal's local copies (the file was deleted)."""
        path = self._job_path(fid)
        task = self._tasks.pop(fid, None)
        if task is not None:
            task.cancel()
        if path.exists():
            deal_id = _read_job(path)
            path.unlink(missing_ok=True)
            if deal_id is not None:
                await self.forget_deal(deal_id)

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.enclave.stop_workers()

    async def tag_bytes(self, data: bytes, digest: bytes) -> bytes:
        """The tags of one fragment, computed by the enclave's low-priority workers; at most
        ``workers`` callers compute at once, the others wait their turn."""
        async with self._request_slots:
            return await self.enclave.tag(data, digest)

    def _start(self, job: _Job) -> None:
        running = self._tasks.get(job.fid)
        if running is None or running.done():
            self._tasks[job.fid] = asyncio.create_task(self._run(job))

    async def _run(self, job: _Job) -> None:
        delay_s = self.retry_delay_s
        while True:
            try:
                await self.tag_file(job)
                break
            except (TaggingError, ClientError, DataPathError, OSError) as exc:
                log_event(ROLE, "tagging_retry", fid=job.fid, why=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, MAX_RETRY_DELAY_S)
        self._job_path(job.fid).unlink(missing_ok=True)
        if job.deal_id is not None:
            await self.forget_deal(job.deal_id)
        self._tasks.pop(job.fid, None)

    # --- one attempt -----------------------------------------------------------------------

    async def tag_file(self, job: _Job) -> None:
        """Tag every fragment of the file, deliver the tags, report the file tagged.

        Raises:
            TaggingError, ClientError: a step that may pass on a later try.
        """
        record = await self._file(job.fid)
        if record is None or record.tagged or record.tagger != self.key.public_key:
            log_event(ROLE, "tagging_skipped", fid=job.fid, why="deleted, tagged or not mine")
            return
        endpoints = await self._endpoints()
        slots = asyncio.Semaphore(self.workers)
        # every fragment is tried even when one fails: a holder that is down must not cancel
        # the work for the others (the job retries only what is still undelivered)
        outcomes = await asyncio.gather(
            *(
                self._tag_one(job, slots, plan, index, holders, endpoints)
                for plan, holders in zip(record.segments, record.holders, strict=True)
                for index in range(len(holders))
                if not self._done(job, plan, index, holders)
            ),
            return_exceptions=True,
        )
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        for failure in failures:
            if not isinstance(failure, TaggingError | ClientError | DataPathError | OSError):
                raise failure  # a bug or a cancellation, not a holder's trouble
        if failures:
            reasons = "; ".join(str(e) for e in failures[:3])
            if not self._may_report_partially(job, record):
                raise TaggingError(f"{len(failures)} fragment(s) failed: {reasons}")
            log_event(ROLE, "tagged_partially", fid=job.fid, undelivered=len(failures), why=reasons)
        await self._report_tagged(job.fid, _current_confirmations(job, record))

    def _may_report_partially(self, job: _Job, record: FileRecord) -> bool:
        """After ``partial_after_s`` of failures, report the file tagged anyway if every segment
        has at least ``min_delivered`` holders that confirmed their tags.

        A holder that stays unreachable would otherwise hold the whole file untagged, hence never
        challenged. Once the file is tagged, a holder that missed its tags fetches them (``PUT
        /tags`` here) and confirms them on chain; one that never does is released after the
        chain's ``tag_confirm_blocks`` and its fragment rebuilt elsewhere.
        """
        now = time.monotonic()
        if job.failing_since is None:
            job.failing_since = now
        if now - job.failing_since < self.partial_after_s:
            return False
        return all(
            sum(_confirmed_by(job, plan.index, i, h) for i, h in enumerate(holders))
            >= self.min_delivered
            for plan, holders in zip(record.segments, record.holders, strict=True)
        )

    def mirror_holders(self, holders: list[bytes], index: int) -> list[bytes]:
        """The holders that keep a mirror copy of fragment ``index``'s tags: those of the
        ``mirrors`` fragments before it in the segment's ring (each keeps the tags of the
        fragments after its own), without its own holder."""
        count = len(holders)
        out: list[bytes] = []
        for distance in range(1, min(self.mirrors, count - 1) + 1):
            holder = holders[(index - distance) % count]
            if holder != holders[index] and holder not in out:
                out.append(holder)
        return out

    def _done(self, job: _Job, plan: SegmentPlan, index: int, holders: list[bytes]) -> bool:
        return _confirmed_by(job, plan.index, index, holders[index]) and all(
            (m, plan.index, index) in job.mirrored for m in self.mirror_holders(holders, index)
        )

    async def _tag_one(
        self,
        job: _Job,
        slots: asyncio.Semaphore,
        plan: SegmentPlan,
        index: int,
        holders: list[bytes],
        endpoints: dict[bytes, str],
    ) -> None:
        """Tag one fragment; deliver the tags to its holder and the mirror copies to the
        holders that keep them. Every delivery is tried; the first failure is raised."""
        digest, holder = plan.fragment_hashes[index], holders[index]
        endpoint = endpoints.get(holder)
        if endpoint is None:
            raise TaggingError(f"holder {address_of(holder)} is not a registered miner")
        async with slots:
            data = await self._fragment(job.fid, job.deal_id, plan, index, endpoint)
            tags = await self.enclave.tag(data, digest)
        deliveries = []
        if not _confirmed_by(job, plan.index, index, holder):
            deliveries.append(self._deliver(job, holder, endpoint, plan, index, tags))
        for keeper in self.mirror_holders(holders, index):
            if (keeper, plan.index, index) not in job.mirrored:
                deliveries.append(self._deliver_mirror(job, keeper, endpoints, plan, index, tags))
        outcomes = await asyncio.gather(*deliveries, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _deliver(
        self, job: _Job, holder: bytes, endpoint: str, plan: SegmentPlan, index: int, tags: bytes
    ) -> None:
        digest = plan.fragment_hashes[index]
        answer = await self._put_tags(endpoint, job.fid, plan.index, index, digest, tags)
        job.confirmed[(plan.index, index)] = await self.checked_confirmation(
            answer, job.fid, plan, index, holder
        )

    async def _deliver_mirror(
        self,
        job: _Job,
        keeper: bytes,
        endpoints: dict[bytes, str],
        plan: SegmentPlan,
        index: int,
        tags: bytes,
    ) -> None:
        endpoint = endpoints.get(keeper)
        if endpoint is None:
            raise TaggingError(f"mirror holder {address_of(keeper)} is not a registered miner")
        digest = plan.fragment_hashes[index]
        await self.miners.put_mirror_tags(endpoint, digest, tags, job.fid, plan.index, index)
        job.mirrored.add((keeper, plan.index, index))

    async def _fragment(
        self, fid: str, deal_id: int | None, plan: SegmentPlan, index: int, endpoint: str
    ) -> bytes:
        """The fragment from the local segment copy, else the holder's (hash-checked; the
        read names tagging of ``fid`` as its reason, which the holder checks on chain)."""
        digest = plan.fragment_hashes[index]
        if deal_id is not None:
            local = await asyncio.to_thread(self.read_local, deal_id, plan, index)
            if local is not None:
                return local
        size = self.layout.fragment_size(plan)  # the read stops past it
        return await self.miners.fragment(endpoint, digest, size, ReadReason("tagging", fid=fid))

    async def _put_tags(
        self, endpoint: str, fid: str, segment: int, index: int, digest: bytes, tags: bytes
    ) -> bytes:
        """Deliver the tags; the holder's answer (its confirmation, JSON)."""
        query = {"fid": fid, "segment": str(segment), "fragment": str(index)}
        return await self.miners.put_tags(
            endpoint, digest, tags, query, max_answer_bytes=TAGS_ANSWER_MAX_BYTES
        )

    async def checked_confirmation(
        self, answer: bytes, fid: str, plan: SegmentPlan, index: int, holder: bytes
    ) -> TagConfirmation:
        """The holder's tag confirmation, checked as ``files.tagged`` will check it.

        Raises:
            TaggingError: malformed, for another fragment, miner or key, or a signature that
                does not verify (the delivery failed: the chain would refuse it).
        """
        who = f"holder {address_of(holder)} of segment {plan.index} fragment {index}"
        try:
            body = json.loads(answer)
            miner, signature = str(body["miner"]), bytes.fromhex(body["signature"])
            position, key_id = (body["segment"], body["fragment"]), str(body["key_id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TaggingError(f"{who}: malformed tag confirmation ({exc!r})") from exc
        if miner != address_of(holder) or position != (plan.index, index):
            raise TaggingError(f"{who}: the confirmation is for {miner} at {position}")
        if key_id != self.enclave.key_id.hex():
            raise TaggingError(f"{who}: the confirmation names tag key {key_id[:64]!r}")
        message = tags_message(
            await self.chain.chain_id(),
            fid,
            plan.index,
            index,
            plan.fragment_hashes[index],
            self.enclave.key_id,
            holder,
        )
        try:
            verify(holder, message, signature)
        except DataPathError as exc:
            raise TaggingError(f"{who}: the confirmation does not verify ({exc})") from exc
        return TagConfirmation(
            segment=plan.index, fragment=index, miner=holder, signature=signature
        )

    async def _report_tagged(self, fid: str, confirmations: list[TagConfirmation]) -> None:
        try:
            await self.chain.submit(self.key, ReportTagged(fid=fid, confirmations=confirmations))
        except TxRefused as exc:
            if exc.code not in (InvalidTransition.code, Unauthorized.code):
                raise
            log_event(ROLE, "tagged_report_refused", fid=fid, why=str(exc))  # done or not mine
            return
        log_event(ROLE, "file_tagged", fid=fid, confirmed=len(confirmations))

    async def _file(self, fid: str) -> FileRecord | None:
        return await self.chain.reads.file(fid)

    async def _endpoints(self) -> dict[bytes, str]:
        entries = await self.chain.reads.miners()
        return {parse_address(e.address): e.miner.endpoint.rstrip("/") for e in entries}


def _confirmed_by(job: _Job, segment: int, index: int, holder: bytes) -> bool:
    """Has the fragment's current holder confirmed its tags (a restoral may have moved it)?"""
    found = job.confirmed.get((segment, index))
    return found is not None and found.miner == holder


def _current_confirmations(job: _Job, record: FileRecord) -> list[TagConfirmation]:
    """The confirmations of the file's current holders, in fragment order."""
    return [
        job.confirmed[(plan.index, i)]
        for plan, holders in zip(record.segments, record.holders, strict=True)
        for i, holder in enumerate(holders)
        if _confirmed_by(job, plan.index, i, holder)
    ]


def _read_job(path: Path) -> int | None:
    text = path.read_text().strip()
    return None if text == NO_DEAL else int(text)
