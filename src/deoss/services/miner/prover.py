"""Answering the chain's challenges (DESIGN 5): one aggregated PoDR² proof per tag key.

The prover wakes on each ``audit.round`` event the follower sees, and every ``poll_s`` anyway
(so a restarted miner answers the round in progress). For a round it has not answered, it reads
its challenge (``/audit/challenge``), reads only the challenged blocks and their tags from the
store, builds the proofs in a worker thread and submits ``audit.submit_proof`` before the deadline.

Invariants:

* A round is answered at most once; a refusal saying it is answered or closed ends the attempt.
* Tags missing for a challenged fragment of a file are taken from a mirror copy another holder
  of the segment keeps (``GET /mirror-tags``), else asked from the file's tagger (the chain
  names it) with the fragment's bytes; either is checked against the fragment
  (``check_tags``), stored, and the proof is built then: a holder whose tags never arrived (a
  restoral racing the tagging, say) still proves, even once the tagger is gone.
* A stored tag that is not a point (a damaged disk, or a store from before tags were checked
  on arrival) is handled like a missing tag: that tag set is dropped and fetched again. If
  no good tags can be had this round (the tagger unreachable or answering tags that do not
  verify), the attempt fails with a logged ``prover_retry`` and is tried again every
  ``poll_s`` until the round closes: the round is MISSED, the prover and the miner go on.
* A challenged fragment that is missing or unreadable cannot be proven honestly: the miner
  reports the loss (``restoral.report_loss``), which opens a restoral order, and sends no proof
  for the round (the chain counts it MISSED). It never sends a proof it knows to be wrong.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

from deoss.chain.errors import AlreadyExists, InvalidArgument, InvalidTransition
from deoss.chain.errors import NotFound as ChainNotFound
from deoss.chain.modules.audit import Challenge, KeyProof, Result, Round, SubmitProof
from deoss.chain.modules.files import FileRecord
from deoss.chain.modules.restoral import ReportLoss
from deoss.client.errors import ClientError, TxRefused
from deoss.core.errors import BadProof, BadTag
from deoss.core.podr2 import TAG_BYTES, BlockReader, block_span, check_tags, prove
from deoss.services.common.app import log_event
from deoss.services.common.supervise import wait_woken
from deoss.services.miner.mirrors import tags_from_mirrors
from deoss.services.miner.peers import PeerError, Peers
from deoss.services.miner.service import ROLE, MinerService
from deoss.services.miner.store import FragmentStore, StoreError

__all__ = ["MissingData", "Prover", "build_proofs", "fetch_tags_from_tagger"]

DEFAULT_POLL_S = 5.0


@dataclass
class MissingData(Exception):
    """Challenged fragments whose bytes or usable tags are not here."""

    fragments: list[bytes] = field(default_factory=list)
    tags: list[tuple[bytes, bytes]] = field(default_factory=list)  # (fragment hash, key id)

    def __str__(self) -> str:
        return f"{len(self.fragments)} fragment(s) and {len(self.tags)} tag file(s) missing"


def _check_present(store: FragmentStore, challenge: Challenge) -> None:
    missing = MissingData()
    for key in challenge.keys:
        for item in key.items:
            if not store.has_fragment(item.fragment_hash):
                missing.fragments.append(item.fragment_hash)
            elif not store.has_tags(item.fragment_hash, key.key_id):
                missing.tags.append((item.fragment_hash, key.key_id))
    if missing.fragments or missing.tags:
        raise missing


def build_proofs(
    store: FragmentStore, challenge: Challenge, sectors_per_block: int
) -> list[KeyProof]:
    """The proofs for a challenge, one per tag key, reading only the challenged blocks.

    Raises:
        MissingData: a challenged fragment or its tags are not in the store, or a tag read
            is not a point (``tags`` names it; a key's proof stops at its first bad tag).
    """
    _check_present(store, challenge)
    sizes: dict[bytes, int] = {}

    def reader(key_id: bytes) -> BlockReader:
        def read(fragment_hash: bytes, index: int) -> tuple[bytes, bytes]:
            size = sizes.get(fragment_hash)
            if size is None:
                size = sizes[fragment_hash] = store.places_of(fragment_hash)[0].size
            offset, length = block_span(index, size, sectors_per_block)
            try:
                block = store.read_range(fragment_hash, offset, length)
                tag = store.read_tags(fragment_hash, key_id, index * TAG_BYTES, TAG_BYTES)
            except StoreError as exc:
                raise MissingData(fragments=[fragment_hash]) from exc
            if len(tag) != TAG_BYTES:
                raise MissingData(tags=[(fragment_hash, key_id)])
            return block, tag

        return read

    proofs: list[KeyProof] = []
    unusable = MissingData()
    for key in challenge.keys:
        try:
            proof = prove(key.items, reader(key.key_id), sectors_per_block)
        except BadTag as exc:
            unusable.tags.append((exc.fragment_hash, key.key_id))
            continue
        proofs.append(KeyProof(key_id=key.key_id, proof=proof))
    if unusable.tags:
        raise unusable
    return proofs


class Prover:
    """Answers this miner's challenges (``run`` is a background task of the miner)."""

    def __init__(
        self, service: MinerService, peers: Peers, *, poll_s: float = DEFAULT_POLL_S
    ) -> None:
        self.service = service
        self.store = service.store
        self.peers = peers
        self.poll_s = poll_s
        self.answered_round = 0  # the last round handled (answered, or nothing to answer)
        self.last_proof_s = 0.0  # how long the last proof took to build (for /healthz)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A new round opened (called by the follower)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.answer_current_round()
            except (ClientError, PeerError) as exc:
                log_event(ROLE, "prover_retry", error=str(exc))
            await wait_woken(self._wake, self.poll_s)

    async def answer_current_round(self) -> None:
        round_ = await self._current_round()
        if round_ is None or round_.number <= self.answered_round or round_.settled:
            return
        challenge = await self._challenge()
        if challenge is None or challenge.round != round_.number:
            self.answered_round = round_.number  # not challenged this round
            return
        if challenge.result != Result.PENDING:
            self.answered_round = round_.number
            return
        await self._answer(round_, challenge)

    async def _answer(self, round_: Round, challenge: Challenge) -> None:
        params = await self.service.view.params()
        sectors = params.podr2.sectors_per_block
        started = time.perf_counter()
        replaced: set[tuple[bytes, bytes]] = set()
        while True:  # ends: each pass replaces at least one challenged tag set, or raises
            try:
                proofs = await asyncio.to_thread(build_proofs, self.store, challenge, sectors)
                break
            except MissingData as missing:
                if missing.fragments:
                    await self._report_lost(missing.fragments)
                    self.answered_round = round_.number
                    log_event(
                        ROLE, "proof_impossible", round=round_.number, lost=len(missing.fragments)
                    )
                    return
                unusable = [t for t in missing.tags if t not in replaced]
                if not unusable:  # fetched tags are checked: only a bug or a disk error
                    raise PeerError(f"tags unusable after fetching them: {missing}") from None
                await self._replace_tags(unusable)
                replaced.update(unusable)
        self.last_proof_s = time.perf_counter() - started
        try:
            outcome = await self.service.chain.submit(
                self.service.key, SubmitProof(round=round_.number, proofs=proofs)
            )
        except TxRefused as exc:
            if exc.code not in (AlreadyExists.code, InvalidTransition.code, InvalidArgument.code):
                raise
            log_event(ROLE, "proof_refused", round=round_.number, why=str(exc))
        else:
            log_event(
                ROLE,
                "proof_submitted",
                round=round_.number,
                height=outcome.height,
                fragments=sum(len(k.items) for k in challenge.keys),
                build_s=round(self.last_proof_s, 3),
            )
        self.answered_round = round_.number

    async def _replace_tags(self, wanted: list[tuple[bytes, bytes]]) -> None:
        """Drop these tag sets (missing, or found unusable) and fetch them again."""
        for fragment_hash, key_id in wanted:
            if await asyncio.to_thread(self.store.has_tags, fragment_hash, key_id):
                log_event(
                    ROLE, "tags_unusable", fragment=fragment_hash.hex(), key=key_id.hex()[:16]
                )
            await asyncio.to_thread(self.store.remove_tags, fragment_hash, key_id)
        await self._fetch_tags(wanted)

    async def _fetch_tags(self, wanted: list[tuple[bytes, bytes]]) -> None:
        """Take the tags this miner lacks from another holder's mirror copy, else ask the
        tagger of the file tagged with each key; keep them only if they verify against the
        fragment.

        Raises:
            PeerError: no mirror verifies and the tagger is unknown, unreachable, or its tags
                do not verify.
        """
        for fragment_hash, key_id in wanted:
            places = await asyncio.to_thread(self.store.places_of, fragment_hash)
            if not places:
                raise PeerError(f"fragment {fragment_hash.hex()} is no longer here")
            record = None
            for place in places:  # the fragment may serve files tagged with different keys
                found = await self.service.view.file(place.fid)
                if found is not None and found.tagged and found.tag_key_id == key_id:
                    record = found
                    break
            if record is None:
                raise PeerError(
                    f"no file of fragment {fragment_hash.hex()} here is tagged with key "
                    f"{key_id.hex()}"
                )
            public = await self.service.view.tag_key(key_id)
            if public is None:
                raise PeerError(f"the tag key {key_id.hex()} of {record.fid} is not on chain")
            data = await asyncio.to_thread(self.store.read_range, fragment_hash, 0, places[0].size)
            place = next(p for p in places if p.fid == record.fid)
            tags = await tags_from_mirrors(
                self.peers,
                record,
                place.segment,
                place.fragment,
                data,
                public,
                skip={self.service.key.public_key},
            )
            if tags is None:
                await fetch_tags_from_tagger(
                    self.service, self.peers, record, fragment_hash, places[0].size
                )
                continue
            await asyncio.to_thread(self.store.put_tags, fragment_hash, key_id, tags)
            log_event(
                ROLE, "tags_fetched", fid=record.fid, fragment=fragment_hash.hex(), source="mirror"
            )

    async def _report_lost(self, hashes: list[bytes]) -> None:
        """Report every place of these fragments as lost (restoral rebuilds them elsewhere)."""
        for fragment_hash in hashes:
            for place in await asyncio.to_thread(self.store.places_of, fragment_hash):
                await report_loss(self.service, place.fid, place.segment, place.fragment)

    async def _current_round(self) -> Round | None:
        return await self.service.chain.reads.round()

    async def _challenge(self) -> Challenge | None:
        return await self.service.chain.reads.challenge(self.service.key.address)


async def fetch_tags_from_tagger(
    service: MinerService, peers: Peers, record: FileRecord, fragment_hash: bytes, size: int
) -> None:
    """Ask the tagger of a tagged file for the tags of a fragment held here (its ``size`` bytes
    sent along) and store them only if they verify against it under the file's tag key.

    Raises:
        PeerError: the tagger is unknown, unreachable, not the key's holder, or its tags do
            not verify.
    """
    key_id = record.tag_key_id
    endpoint = await peers.scheduler_endpoint(record.tagger)
    data = await asyncio.to_thread(service.store.read_range, fragment_hash, 0, size)
    params = await service.view.params()
    tags = await peers.request_tags(
        endpoint, record.fid, fragment_hash, data, params.podr2.sectors_per_block
    )
    scheduler = await service.view.scheduler(record.tagger)
    if scheduler is None or scheduler.tag_key.key_id != key_id:
        raise PeerError(f"the key {key_id.hex()} is not the tagger's of {record.fid}")
    try:
        await asyncio.to_thread(
            check_tags, scheduler.tag_key, fragment_hash, data, tags, os.urandom(32)
        )
    except BadProof as exc:
        raise PeerError(
            f"the tags from {endpoint} do not verify against fragment {fragment_hash.hex()}: {exc}"
        ) from exc
    await asyncio.to_thread(service.store.put_tags, fragment_hash, key_id, tags)
    log_event(ROLE, "tags_fetched", fid=record.fid, fragment=fragment_hash.hex())


async def report_loss(service: MinerService, fid: str, segment: int, fragment: int) -> bool:
    """Submit ``restoral.report_loss``; False when the chain says this miner does not hold it
    (already moved away, or never promoted)."""
    try:
        await service.chain.submit(
            service.key, ReportLoss(fid=fid, segment=segment, fragment=fragment)
        )
    except TxRefused as exc:
        if exc.code != ChainNotFound.code:
            raise
        return False
    log_event(ROLE, "loss_reported", fid=fid, segment=segment, fragment=fragment)
    return True
