"""The scheduler's work on an upload: admit a segment, check it, code it, place it, report the deal.

Flow of ``PUT /deals/{id}/segments/{i}`` (docs/services.md, DESIGN 2 steps 5 and 7):

1. ``admit_segment``: the deal exists, the signer is its declarer (else 403), it is ASSIGNED to
   this scheduler (else 409), and the body's signed SHA-256 is the declared segment hash (else
   422, before a byte of the body is read).
2. ``place_segment``: size and SHA-256 of the bytes against the declaration, erasure coding off
   the event loop, every fragment hash against the declaration (a wrong declaration is 422 and
   nothing reaches a miner); the segment is kept on disk for tagging (written while its
   fragments travel); ``placement`` picks
   k + m distinct accepting miners and ``sending`` puts the fragments on them, replacing those
   that fail. The receipts are persisted before the answer.
3. Once every segment has receipts, ``deals.report`` is submitted in the background, retrying
   what may pass later (an unreachable node, a transaction not seen in time).

Invariants: a placed segment is never placed twice for one assignment (per-segment lock,
answered again from disk; a deal assigned here again is placed afresh, since receipts name the
assignment they were signed for); a restart loses no placed segment and resumes the report;
the deal state kept here is dropped when the deal fails, goes to another scheduler, or its
file is tagged.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass

import httpx

from deoss.chain.errors import InvalidTransition
from deoss.chain.genesis import ChainParams
from deoss.chain.modules.deals import Deal, DealState, Receipt, ReportDeal
from deoss.chain.modules.schedulers import RegisterScheduler, Scheduler, UpdateScheduler
from deoss.client.chain import ChainClient
from deoss.client.errors import ClientError, TxRefused
from deoss.client.scheduler_types import DealProgress, SegmentPlacement
from deoss.client.signing import SigningAuth
from deoss.core.errors import HashMismatch
from deoss.core.keys import KeyPair, address_of
from deoss.core.layout import SegmentPlan, encode_segment
from deoss.keyfile import read_key_file
from deoss.services.common.app import log_event
from deoss.services.common.auth import RequestVerifier
from deoss.services.common.errors import Conflict, Forbidden, NotFound, ServiceUnavailable
from deoss.services.common.signing import Signer
from deoss.services.scheduler.enclave import Enclave
from deoss.services.scheduler.placement import (
    Candidate,
    NotEnoughMiners,
    accepting_candidates,
    choose_miners,
)
from deoss.services.scheduler.retag import Retagger
from deoss.services.scheduler.sending import DealWork, FragmentSender
from deoss.services.scheduler.settings import SchedulerSettings
from deoss.services.scheduler.store import DealStore
from deoss.services.scheduler.tagging import Tagger

__all__ = [
    "Admission",
    "DealProgress",
    "SchedulerError",
    "SchedulerService",
    "SegmentPlacement",
]

ROLE = "scheduler"
MAX_RETRY_DELAY_S = 5.0


class SchedulerError(Exception):
    """The scheduler cannot start or go on; the message says why."""


@dataclass(frozen=True)
class Admission:
    """A segment admitted for placement: its deal and its declared plan."""

    deal: Deal
    plan: SegmentPlan


# --- the service -------------------------------------------------------------------------


class SchedulerService:
    """One scheduler: its account, tag enclave, chain client, miner client and deal state."""

    def __init__(
        self,
        settings: SchedulerSettings,
        key: KeyPair,
        chain: ChainClient,
        chain_id: str,
        params: ChainParams,
        enclave: Enclave,
        *,
        miner_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.key = key
        self.chain = chain
        self.params = params
        self.enclave = enclave
        self.verifier = RequestVerifier(public_url=settings.public_url)
        self.store = DealStore(settings.data_dir / "deals", params.layout)
        self.http = httpx.AsyncClient(
            auth=SigningAuth(key), transport=miner_transport, timeout=settings.miner_timeout_s
        )
        self.sender = FragmentSender(self.http, chain_id, settings.miner_timeout_s)
        self.tagger = Tagger(
            chain=chain,
            key=key,
            enclave=enclave,
            http=self.http,
            layout=params.layout,
            read_local=self.store.read_fragment,
            forget_deal=self.forget_deal,
            jobs_dir=settings.data_dir / "tagging",
            workers=settings.tag_workers,
            timeout_s=settings.miner_timeout_s,
            retry_delay_s=settings.retry_delay_s,
            # half the chain's tagging deadline: unreachable holders must not hold a file
            # untagged (hence unchallenged, its dead holders never repaired) past it
            partial_after_s=params.tag_timeout_blocks * params.block_interval_ms / 2000,
            min_delivered=params.layout.data_shards,
            mirrors=settings.tag_mirrors,
        )
        self.retagger = Retagger(
            chain=chain, key=key, enclave=enclave, layout=params.layout, tagger=self.tagger
        )
        self.registered = False
        self._work: dict[int, DealWork] = {}
        self._reports: dict[int, asyncio.Task[None]] = {}

    @classmethod
    async def open(
        cls,
        settings: SchedulerSettings,
        chain: ChainClient,
        *,
        miner_transport: httpx.AsyncBaseTransport | None = None,
    ) -> SchedulerService:
        """Load the account key, read the chain's parameters, unseal (or create) the tag key.

        Raises:
            SchedulerError: the chain cannot be read. InvalidKey / EnclaveError: a bad key file.
        """
        key = read_key_file(settings.key_file)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            chain_id = await chain.chain_id()
            params = await chain.reads.params()
        except ClientError as exc:
            raise SchedulerError(
                f"cannot read the chain parameters from {chain.url}: {exc}"
            ) from exc
        enclave = await asyncio.to_thread(
            Enclave.open, settings.tag_key_file, params.podr2.sectors_per_block
        )
        return cls(settings, key, chain, chain_id, params, enclave, miner_transport=miner_transport)

    @property
    def address(self) -> str:
        return self.key.address

    async def aclose(self) -> None:
        for task in self._reports.values():
            task.cancel()
        await asyncio.gather(*self._reports.values(), return_exceptions=True)
        await self.tagger.aclose()
        await self.http.aclose()

    async def health(self) -> dict[str, object]:
        return {
            "address": self.address,
            "registered": self.registered,
            "tag_key_id": self.enclave.key_id.hex(),
            "deals": len(self._work),
            "tag_jobs": self.tagger.pending(),
        }

    # --- registration and restart ----------------------------------------------------------

    async def register(self, endpoint: str) -> None:
        """Register on chain with the enclave's public key, or update a changed endpoint.

        Raises:
            SchedulerError: the chain holds another tag key for this account, or refused.
        """
        endpoint = self.settings.public_url or endpoint
        current = await self._registered_record()
        try:
            if current is None:
                stake = self.settings.stake or self.params.scheduler_min_stake
                call = RegisterScheduler(
                    endpoint=endpoint, stake=stake, tag_key=self.enclave.public_key
                )
                await self.chain.submit(self.key, call)
                log_event(ROLE, "registered", address=self.address, endpoint=endpoint, stake=stake)
            elif current.endpoint != endpoint:
                await self.chain.submit(self.key, UpdateScheduler(endpoint=endpoint))
                log_event(ROLE, "endpoint_updated", address=self.address, endpoint=endpoint)
        except ClientError as exc:
            raise SchedulerError(f"cannot register scheduler {self.address}: {exc}") from exc
        self.registered = True

    async def _registered_record(self) -> Scheduler | None:
        try:
            current = await self.chain.reads.scheduler(self.address)
        except ClientError as exc:
            raise SchedulerError(f"cannot read scheduler {self.address}: {exc}") from exc
        if current is None:
            return None
        if current.tag_key.key_id != self.enclave.key_id:
            raise SchedulerError(
                f"scheduler {self.address} is registered with tag key "
                f"{current.tag_key.key_id.hex()}, but {self.settings.tag_key_file} holds "
                f"{self.enclave.key_id.hex()}; restore the original tag key file"
            )
        return current

    async def resume(self) -> None:
        """After a restart: report deals whose segments were all placed; resume tag jobs.

        Raises:
            SchedulerError: the chain cannot be read.
        """
        for deal_id in await asyncio.to_thread(self.store.deal_ids):
            if await asyncio.to_thread(self.store.is_reported, deal_id):
                continue
            try:
                deal = await self._deal_or_none(deal_id)
            except ServiceUnavailable as exc:
                raise SchedulerError(f"cannot resume deal {deal_id}: {exc}") from exc
            if deal is not None and self._is_mine(deal):
                await self._report_if_complete(deal)
        self.tagger.resume()

    # --- intake ----------------------------------------------------------------------------

    async def admit_segment(self, deal_id: int, index: int, signer: Signer) -> Admission:
        """Check who sends which segment of which deal, before the body is read.

        Raises:
            NotFound, Forbidden (not the declarer), Conflict (not ASSIGNED to this scheduler),
            HashMismatch (the signed body hash is not the declared segment hash).
        """
        deal = await self._deal(deal_id)
        if signer.public_key != deal.declarer:
            raise Forbidden(
                f"deal {deal_id} was declared by {address_of(deal.declarer)}; "
                f"{signer.address} may not send its segments"
            )
        if deal.state != DealState.ASSIGNED:
            raise Conflict(f"deal {deal_id} is {deal.state.name}, not ASSIGNED")
        if deal.scheduler != self.key.public_key:
            raise Conflict(
                f"deal {deal_id} is assigned to scheduler {address_of(deal.scheduler)}, "
                f"not to {self.address}"
            )
        if not 0 <= index < len(deal.segments):
            raise NotFound(f"deal {deal_id} has {len(deal.segments)} segments, no segment {index}")
        plan = deal.segments[index]
        if signer.body_sha256 != plan.hash.hex():
            raise HashMismatch(
                f"deal {deal_id} segment {index}: the body's SHA-256 {signer.body_sha256} is not "
                f"the declared segment hash {plan.hash.hex()}"
            )
        return Admission(deal, plan)

    async def place_segment(self, admission: Admission, data: bytes) -> SegmentPlacement:
        """Check, code and place one segment; answer a placed segment again from disk.

        Raises:
            HashMismatch: the bytes or a declared fragment hash do not match.
            ServiceUnavailable: not enough miners could store the fragments, or no chain.
        """
        deal, plan = admission.deal, admission.plan
        work = self._work_on(deal)
        lock = work.locks.setdefault(plan.index, asyncio.Lock())
        async with lock:
            placements = await asyncio.to_thread(self.store.placements, deal.id, deal.attempts)
            placed = placements.get(plan.index)
            if placed is None:
                started = time.perf_counter()
                fragments = await asyncio.to_thread(self._check_and_code, deal.id, plan, data)
                coded = time.perf_counter()
                # the copy kept for tagging is written while the fragments travel
                keep = asyncio.ensure_future(self._keep_segment(deal.id, plan, data))
                try:
                    placed = await self._place_on_miners(work, deal, plan, fragments)
                finally:
                    await keep
                await asyncio.to_thread(
                    self.store.save_placement, deal.id, deal.attempts, plan.index, placed
                )
                log_event(
                    ROLE,
                    "segment_placed",
                    deal=deal.id,
                    segment=plan.index,
                    miners=[address_of(r.miner) for r in placed],
                    code_ms=round((coded - started) * 1000, 1),  # check and code
                    place_ms=round((time.perf_counter() - coded) * 1000, 1),
                )
        await self._report_if_complete(deal)
        return SegmentPlacement(segment=plan.index, miners=[address_of(r.miner) for r in placed])

    async def _keep_segment(self, deal_id: int, plan: SegmentPlan, data: bytes) -> None:
        """Keep the segment for tagging; without the copy, tagging fetches the fragments back
        from their holders, so a failure here is logged, not the upload's."""
        try:
            await asyncio.to_thread(self.store.save_segment, deal_id, plan, data)
        except OSError as exc:
            log_event(ROLE, "segment_copy_failed", deal=deal_id, segment=plan.index, why=str(exc))

    def _check_and_code(self, deal_id: int, plan: SegmentPlan, data: bytes) -> list[bytes]:
        """Blocking: check the segment, erasure-code it, check every fragment."""
        what = f"deal {deal_id} segment {plan.index}"
        if len(data) != plan.padded_size:
            raise HashMismatch(f"{what}: {len(data)} bytes, {plan.padded_size} declared")
        actual = hashlib.sha256(data).digest()
        if actual != plan.hash:
            raise HashMismatch(f"{what}: SHA-256 {actual.hex()} != declared {plan.hash.hex()}")
        fragments = [bytes(f) for f in encode_segment(data, self.params.layout)]
        for index, (fragment, declared) in enumerate(
            zip(fragments, plan.fragment_hashes, strict=True)
        ):
            digest = hashlib.sha256(fragment).digest()
            if digest != declared:
                raise HashMismatch(
                    f"{what} fragment {index}: the declaration says {declared.hex()}, but the "
                    f"segment codes to {digest.hex()}; the deal was declared wrong"
                )
        return fragments

    # --- placing on miners -----------------------------------------------------------------

    async def _place_on_miners(
        self, work: DealWork, deal: Deal, plan: SegmentPlan, fragments: list[bytes]
    ) -> list[Receipt]:
        try:
            chosen, spares = choose_miners(
                await self._accepting_miners(),
                deal_id=deal.id,
                segment=plan.index,
                count=self.params.layout.total_shards,
                fragment_size=self.params.layout.fragment_size(plan),
                exclude=work.failed,
                reserved=work.reserved,
            )
            return await self.sender.place(work, deal, plan, fragments, chosen, spares)
        except NotEnoughMiners as exc:
            await self._still_mine(deal, plan)
            raise ServiceUnavailable(str(exc)) from exc

    async def _still_mine(self, deal: Deal, plan: SegmentPlan) -> None:
        """Raises Conflict if the chain moved the deal away while its segment was placed (its
        miners then refuse this scheduler: they did not fail)."""
        try:
            now = await self._deal_or_none(deal.id)
        except ClientError:
            return  # the chain cannot tell: the placement failure stands as it is
        if now is not None and (not self._is_mine(now) or now.attempts != deal.attempts):
            where = f"scheduler {address_of(now.scheduler)}" if now.scheduler else "no scheduler"
            raise Conflict(
                f"deal {deal.id} left this scheduler while segment {plan.index} was placed: it "
                f"is {now.state.name}, assigned to {where} (attempt {now.attempts})"
            )

    # --- reporting -------------------------------------------------------------------------

    async def _report_if_complete(self, deal: Deal) -> None:
        if deal.id in self._reports and not self._reports[deal.id].done():
            return
        placements = await asyncio.to_thread(self.store.placements, deal.id, deal.attempts)
        if len(placements) < len(deal.segments):
            return
        if await asyncio.to_thread(self.store.is_reported, deal.id):
            return
        running = self._reports.get(deal.id)
        if running is None or running.done():  # checked again: another segment may have won
            ordered = [placements[i] for i in range(len(deal.segments))]
            self._reports[deal.id] = asyncio.create_task(self._submit_report(deal.id, ordered))

    async def _submit_report(self, deal_id: int, placements: list[list[Receipt]]) -> None:
        """Submit deals.report; retry what may pass later, stop on a final refusal."""
        call = ReportDeal(deal_id=deal_id, placements=placements)
        delay_s = self.settings.retry_delay_s
        for attempt in range(1, self.settings.report_attempts + 1):
            try:
                outcome = await self.chain.submit(self.key, call)
            except ClientError as exc:
                if await self._report_settled(deal_id, exc):
                    return
                log_event(ROLE, "report_retry", deal=deal_id, attempt=attempt, why=str(exc))
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, MAX_RETRY_DELAY_S)
                continue
            await asyncio.to_thread(self.store.mark_reported, deal_id, outcome.height or 0)
            log_event(ROLE, "deal_reported", deal=deal_id, height=outcome.height)
            return
        self._work_error(deal_id, f"deals.report not accepted after {attempt} attempts")

    async def _report_settled(self, deal_id: int, exc: ClientError) -> bool:
        """After a failed report: is there nothing left to retry?"""
        try:
            deal = await self._deal_or_none(deal_id)
        except ServiceUnavailable:
            return False  # the chain cannot be read now: try again later
        if (
            deal is not None
            and deal.state == DealState.SUCCESS
            and deal.scheduler == self.key.public_key
        ):
            await asyncio.to_thread(self.store.mark_reported, deal_id, 0)  # an earlier try landed
            return True
        if deal is None or not self._is_mine(deal):
            self._work_error(deal_id, f"deal is no longer assigned here: {exc}")
            return True
        if isinstance(exc, TxRefused) and exc.code != InvalidTransition.code:
            self._work_error(deal_id, f"deals.report refused: {exc}")
            return True  # the chain refused these receipts: retrying the same call cannot help
        return False

    def _work_error(self, deal_id: int, message: str) -> None:
        self._work.setdefault(deal_id, DealWork()).report_error = message
        log_event(ROLE, "report_failed", deal=deal_id, why=message)

    # --- reading deals ---------------------------------------------------------------------

    async def deal_progress(self, deal_id: int) -> DealProgress:
        """What this scheduler did for a deal so far."""
        deal = await self._deal(deal_id)
        placements = await asyncio.to_thread(self.store.placements, deal_id, deal.attempts)
        reported = await asyncio.to_thread(self.store.is_reported, deal_id)
        work = self._work.get(deal_id)
        return DealProgress(
            deal=deal_id,
            state=deal.state.name,
            segments=len(deal.segments),
            placed=sorted(placements),
            reported=reported or deal.state == DealState.SUCCESS,
            error=work.report_error if work else "",
        )

    async def forget_deal(self, deal_id: int) -> None:
        """Drop a deal's local state: it failed, went to another scheduler, or is tagged."""
        self._work.pop(deal_id, None)
        task = self._reports.pop(deal_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        await asyncio.to_thread(self.store.drop, deal_id)

    def has_deal(self, deal_id: int) -> bool:
        return deal_id in self._work or self.store.has(deal_id)

    def _is_mine(self, deal: Deal) -> bool:
        return deal.state == DealState.ASSIGNED and deal.scheduler == self.key.public_key

    def _work_on(self, deal: Deal) -> DealWork:
        """The deal's in-memory work for its current assignment, rebuilt from its receipts on
        disk after a restart; a deal assigned here again starts afresh (miners that failed it
        before, as when they refused this scheduler after the chain moved the deal away, may
        take it now)."""
        work = self._work.get(deal.id)
        if work is None or work.attempt != deal.attempts:
            work = self._work[deal.id] = DealWork(attempt=deal.attempts)
            for index, receipts in self.store.placements(deal.id, deal.attempts).items():
                size = self.params.layout.fragment_size(deal.segments[index])
                for receipt in receipts:
                    work.reserve(receipt.miner, size)
        return work

    async def _deal(self, deal_id: int) -> Deal:
        deal = await self._deal_or_none(deal_id)
        if deal is None:
            raise NotFound(f"no deal {deal_id} on chain")
        return deal

    async def _deal_or_none(self, deal_id: int) -> Deal | None:
        try:
            return await self.chain.reads.deal(deal_id)
        except ClientError as exc:
            raise ServiceUnavailable(f"cannot read deal {deal_id}: {exc}") from exc

    async def _accepting_miners(self) -> list[Candidate]:
        try:
            entries = await self.chain.reads.miners()
        except ClientError as exc:
            raise ServiceUnavailable(f"cannot read the miners from the chain: {exc}") from exc
        return accepting_candidates(entries, self.params)
