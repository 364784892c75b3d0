"""The miner's request logic: accept fragments, store tags, serve fragments, register on chain.

Routes call one function here each; everything the miner decides is decided here, against the
chain (``ChainView``) and the fragment store. Invariants:

* A fragment is accepted only from the scheduler its deal is ASSIGNED to, for the assignment
  (attempt) the request names, only for a declared (deal, segment, fragment) whose hash is the
  one in the request, and only with exactly the declared size. The signed body SHA-256 must be
  that hash too, so the signature covers the bytes the miner signs a receipt for. The receipt
  names the deal and that assignment: the chain takes it for no other.
* Bytes reach the index only after both checks of the body passed: ``iter_checked_body``
  (the signed SHA-256, checked before the end of the stream is handed on) and the store's own
  size and hash check (before the rename). Any failure, disconnect included, leaves nothing.
* Store calls run in worker threads (``asyncio.to_thread``); the event loop never touches disk.
* Tags are accepted only from the file's current tagger, for a fragment held for that fid, with
  exactly ``block_count(size, s) × 48`` bytes, s from the tagger's registered tag key, and only
  if they verify against the stored fragment (``core.podr2.check_tags``): a tag that is not a
  valid tag of its block would fail, or stop, this miner's proofs, so it is never stored.
  Once stored, the answer carries this miner's tag confirmation (``files.tags_message``): the
  tagger needs it to report the file tagged, and the chain challenges only confirmed holdings.
* A fragment (or a range of it), and its tags, are served only for a reason the signed request
  names and the chain confirms (``ReadReason``, docs/podr2.md "Outsourcing"): a download for an
  owner of the fragment's file (the owner itself, or a gateway that owner authorized), a
  restoral order of the fragment's segment claimed by the signer, or tagging by the file's
  tagger. Being a registered party is not a reason: a miner that kept only its tags could
  otherwise answer its challenges from the other holders' copies.
* Mirror copies of other fragments' tags (``PUT /mirror-tags``) are accepted only from the
  file's tagger, only for a segment the chain says this miner holds a fragment of (and that
  is held here), never for this miner's own fragment, with exactly the length the mirrored
  fragment's size gives and every tag a point of G1. Without the mirrored fragment's bytes
  nothing more can be checked: whoever takes a mirror checks it with ``check_tags``. They
  are served only to a party with a reason: the claimer of a CLAIMED restoral order for that
  fragment, or the fragment's holder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Generic, TypeVar

from deoss.chain.errors import NotFound as ChainNotFound
from deoss.chain.genesis import ChainParams
from deoss.chain.modules.deals import Deal, DealState, receipt_message
from deoss.chain.modules.files import FileRecord, ObjectRecord, tags_message
from deoss.chain.modules.miners import (
    Miner,
    MinerState,
    RegisterMiner,
    UpdateMiner,
    required_stake,
)
from deoss.chain.modules.restoral import Order, OrderState
from deoss.chain.modules.schedulers import Scheduler
from deoss.chain.query import QueryArgs
from deoss.client.chain import ChainClient
from deoss.client.errors import ClientError, NodeUnavailable, QueryFailed
from deoss.client.miner_types import (
    READ_REASONS,
    FragmentRequest,
    MirrorRequest,
    ReadReason,
    Receipt,
    TagsStored,
)
from deoss.core.errors import BadProof
from deoss.core.keys import KeyPair, address_of
from deoss.core.podr2 import TAG_BYTES, TagPublicKey, block_count, check_tag_points, check_tags
from deoss.services.common.app import log_event
from deoss.services.common.auth import AuthError
from deoss.services.common.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    ServiceError,
    ServiceUnavailable,
    UpstreamFailed,
)
from deoss.services.common.signing import Signer
from deoss.services.miner.read_limits import ReadBudget, ReadLimiter
from deoss.services.miner.settings import MinerSettings
from deoss.services.miner.store import (
    Area,
    BodyMismatch,
    FragmentPlace,
    FragmentStore,
    MirrorPlace,
    StoreError,
)

__all__ = [
    "ROLE",
    "ChainView",
    "FragmentMismatch",
    "MinerService",
    "OpenFragment",
    "ensure_registered",
]

ROLE = "miner"
PARAMS_QUERY = "/chain/params"
REASON_TTL_S = 5.0  # a confirmed read reason stays confirmed this long (a download's many reads)
PIPE_DEPTH = 8  # chunks in flight between the event loop and the writer thread
READ_CHUNK = 1024 * 1024  # fewer thread hops per fragment served
WRITE_BATCH = 1024 * 1024  # likewise per fragment received

K = TypeVar("K")
V = TypeVar("V")
R = TypeVar("R")

BodyOpener = Callable[[int], AsyncIterator[bytes]]
"""Given the most bytes allowed, the request body's chunks, at most that many. Checked against
the signature by the opener, or, for fragments, by the store against the declared hash (which
must be the signed one)."""


class FragmentMismatch(ServiceError):
    """The request does not match what the deal declared: hash, size, indices; or tags of the
    wrong length, or that do not verify against the fragment."""

    status, code = 422, "fragment_mismatch"


@dataclass
class OpenFragment:
    """An open fragment file; the caller reads it and closes it (once)."""

    handle: BinaryIO
    size: int
    _stack: contextlib.ExitStack

    def close(self) -> None:
        self._stack.close()

    def iter_range(self, start: int, length: int) -> Iterator[bytes]:
        """Read ``length`` bytes from ``start`` in chunks, closing the file at the end."""
        try:
            # fragments are written past the page cache (O_DIRECT): ask the kernel to read the
            # whole range ahead now, rather than 128 KiB at a time as the chunks are asked for
            with contextlib.suppress(OSError, AttributeError):
                os.posix_fadvise(self.handle.fileno(), start, length, os.POSIX_FADV_WILLNEED)
            self.handle.seek(start)
            remaining = length
            while remaining > 0:
                chunk = self.handle.read(min(READ_CHUNK, remaining))
                if not chunk:
                    raise StoreError(f"fragment file ended {remaining} bytes early")
                remaining -= len(chunk)
                yield chunk
        finally:
            self.close()


class TtlCache(Generic[K, V]):
    """A small map whose entries expire; enough for short-lived chain lookups."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = 10_000):
        self._clock = clock
        self._max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < self._clock():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, key: K, value: V, ttl_s: float) -> None:
        if len(self._entries) >= self._max_entries:
            self._entries.clear()  # crude but bounded: the cache only saves queries
        self._entries[key] = (self._clock() + ttl_s, value)


@contextlib.contextmanager
def chain_errors(what: str) -> Iterator[None]:
    """Client errors of a chain lookup as service errors: 503 unreachable, 502 otherwise."""
    try:
        yield
    except NodeUnavailable as exc:
        raise ServiceUnavailable(f"cannot {what}: the chain node is unreachable") from exc
    except QueryFailed as exc:
        raise BadRequest(f"cannot {what}: {exc}") from exc
    except ClientError as exc:
        raise UpstreamFailed(f"cannot {what}: {exc}") from exc


class ChainView:
    """What the miner reads from the chain. Only a confirmed read reason is cached (briefly, so
    a download's many fragment reads cost one check): deal and file state decide what is
    accepted, so they are always read afresh."""

    def __init__(self, chain: ChainClient) -> None:
        self.chain = chain
        self._params: ChainParams | None = None
        self._reasons: TtlCache[tuple[object, ...], bool] = TtlCache()

    async def chain_id(self) -> str:
        with chain_errors("read the chain id"):
            return await self.chain.chain_id()

    async def params(self) -> ChainParams:
        """The chain's parameters (genesis: they never change), read once."""
        if self._params is None:
            with chain_errors("read the chain parameters"):
                self._params = await self.chain.query(PARAMS_QUERY, QueryArgs(), ChainParams)
        return self._params

    async def deal(self, deal_id: int) -> Deal:
        """The deal as the chain has it now (never cached: its state decides). Raises NotFound."""
        deal = await self.deal_or_none(deal_id)
        if deal is None:
            raise NotFound(f"no deal {deal_id} on chain")
        return deal

    async def deal_or_none(self, deal_id: int) -> Deal | None:
        return await self._optional("/deals/deal", QueryArgs(id=deal_id), Deal, "read the deal")

    async def file(self, fid: str) -> FileRecord | None:
        return await self._optional("/files/file", QueryArgs(fid=fid), FileRecord, "read the file")

    async def scheduler(self, public_key: bytes) -> Scheduler | None:
        args = QueryArgs(address=address_of(public_key))
        return await self._optional("/schedulers/scheduler", args, Scheduler, "read a scheduler")

    async def tag_key(self, key_id: bytes) -> TagPublicKey | None:
        """The registered tag public key with this id (its scheduler may be gone for good)."""
        args = QueryArgs(key_id=key_id.hex())
        return await self._optional("/schedulers/tag_key", args, TagPublicKey, "read a tag key")

    async def order(self, order_id: int) -> Order | None:
        args = QueryArgs(id=order_id)
        return await self._optional("/restoral/order", args, Order, "read a restoral order")

    async def miner(self, public_key: bytes) -> Miner | None:
        args = QueryArgs(address=address_of(public_key))
        return await self._optional("/miners/miner", args, Miner, "read a miner")

    async def object_fid(self, owner: bytes, bucket: str, name: str) -> str | None:
        args = QueryArgs(owner=address_of(owner), bucket=bucket, name=name)
        found = await self._optional("/files/object", args, ObjectRecord, "read an object")
        return found.fid if found else None

    async def owns_fid(self, owner: str, fid: str) -> bool:
        """Whether ``owner`` has an object stored as file ``fid`` (one indexed chain read)."""
        args = QueryArgs(owner=owner, fid=fid)
        with chain_errors("read what an owner owns"):
            return await self.chain.query("/files/owns", args, int) > 0

    async def gateway_acts_for(self, gateway: bytes, owner: str) -> bool:
        """Whether ``gateway`` is a registered gateway that ``owner`` authorized."""
        args = QueryArgs(address=owner)
        with chain_errors("read a user's authorized gateways"):
            authorized = await self.chain.query("/gateways/authorized", args, list[str])
        return address_of(gateway) in authorized

    async def confirmed(self, key: tuple[object, ...], check: Callable[[], Any]) -> bool:
        """``await check()`` (a bool), remembered for REASON_TTL_S when it is True."""
        if self._reasons.get(key):
            return True
        ok = bool(await check())
        if ok:
            self._reasons.put(key, True, REASON_TTL_S)
        return ok

    async def _optional(self, path: str, args: QueryArgs, type_: type[R], what: str) -> R | None:
        """The query's value, or None when the chain says NotFound (an unknown path too)."""
        with chain_errors(what):
            try:
                return await self.chain.query(path, args, type_)
            except QueryFailed as exc:
                if exc.code == ChainNotFound.code:
                    return None
                raise


class MinerService:
    """The miner's decisions, over its chain view, fragment store and account key."""

    def __init__(
        self,
        *,
        chain: ChainClient,
        store: FragmentStore,
        key: KeyPair,
        read_limiter: ReadLimiter | None = None,
    ) -> None:
        self.chain = chain
        # unlimited unless given (the app gives its settings' budgets)
        self.read_limiter = read_limiter or ReadLimiter(ReadBudget(0, 0), ReadBudget(0, 0))
        self.view = ChainView(chain)
        self.store = store
        self.key = key
        self.followed_height = 0  # the last block the follower handled (for /healthz)
        self.status_sources: dict[str, Callable[[], dict[str, Any]]] = {}  # more for /healthz

    # --- fragments in ----------------------------------------------------------------------

    async def accept_fragment(
        self, request: FragmentRequest, signer: Signer, open_body: BodyOpener
    ) -> Receipt:
        """Check the request against its deal, store the body in the temporary area, sign.

        ``open_body`` need not check the body against the signature: the signed SHA-256 must be
        the declared fragment hash, and the store checks the bytes against that hash (one
        SHA-256 pass over each fragment instead of two).

        Raises:
            NotFound (no deal), Conflict (not ASSIGNED, or at another assignment), Forbidden
            (not its scheduler), FragmentMismatch (indices, hash, size), PayloadTooLarge,
            AuthError (body hash).
        """
        deal = await self._assigned_deal(request.deal_id, request.attempt, signer.public_key)
        size = await self._check_declared(deal, request, signer)
        place = FragmentPlace(
            request.fragment_hash, deal.fid, request.segment, request.fragment, Area.TEMP, size
        )
        # noted first: a sweep or a late event of an older deal of this fid then leaves it be
        await asyncio.to_thread(self.store.note_deal, deal.fid, deal.id)
        held = await asyncio.to_thread(self.store.places_of, request.fragment_hash)
        if not any(_same_place(p, place) for p in held):
            await write_streamed(self.store, place, open_body(size))
        return await self.sign_receipt(deal, request.segment, request.fragment, place)

    async def _assigned_deal(self, deal_id: int, attempt: int, scheduler: bytes) -> Deal:
        deal = await self.view.deal(deal_id)
        if deal.state != DealState.ASSIGNED:
            raise Conflict(f"deal {deal_id} is {deal.state.name}, not ASSIGNED")
        if deal.scheduler != scheduler:
            raise Forbidden(
                f"deal {deal_id} is assigned to scheduler {address_of(deal.scheduler)}, "
                f"not to {address_of(scheduler)}"
            )
        if deal.attempts != attempt:  # the receipt would name an assignment that is over
            raise Conflict(
                f"deal {deal_id} is at assignment {deal.attempts}, not {attempt}: "
                "the chain moved it"
            )
        return deal

    async def _check_declared(self, deal: Deal, request: FragmentRequest, signer: Signer) -> int:
        """The fragment's declared size, once the request matches the declaration."""
        where = f"deal {deal.id} segment {request.segment} fragment {request.fragment}"
        if request.segment >= len(deal.segments):
            raise FragmentMismatch(f"deal {deal.id} has {len(deal.segments)} segment(s)")
        segment = deal.segments[request.segment]
        if request.fragment >= len(segment.fragment_hashes):
            raise FragmentMismatch(
                f"segment {request.segment} of deal {deal.id} has "
                f"{len(segment.fragment_hashes)} fragments"
            )
        declared = segment.fragment_hashes[request.fragment]
        if declared != request.fragment_hash:
            raise FragmentMismatch(
                f"{where} is declared as {declared.hex()}, not {request.fragment_hash.hex()}"
            )
        if signer.body_sha256 != declared.hex():
            raise FragmentMismatch(
                f"the signed body SHA-256 {signer.body_sha256} is not the fragment hash"
            )
        size = (await self.view.params()).layout.fragment_size(segment)
        length = request.declared_length
        if length is not None and length != size:
            raise FragmentMismatch(f"{where} is {size} bytes, the body is {length}")
        return size

    async def sign_receipt(
        self, deal: Deal, segment: int, fragment: int, place: FragmentPlace
    ) -> Receipt:
        """The receipt for one fragment of the deal's current assignment (checked by the
        caller against the chain and the request)."""
        message = receipt_message(
            await self.view.chain_id(),
            deal.id,
            deal.attempts,
            deal.fid,
            segment,
            fragment,
            place.fragment_hash,
            self.key.public_key,
        )
        return Receipt(miner=self.key.address, signature=self.key.sign(message))

    # --- tags ------------------------------------------------------------------------------

    async def store_tags(
        self,
        fragment_hash: bytes,
        fid: str,
        signer: Signer,
        open_body: BodyOpener,
        declared_length: int | None,
        position: tuple[int, int] | None = None,
    ) -> TagsStored:
        """Store the PoDR² tags of a fragment held for ``fid`` (at ``position``, (segment,
        fragment), when given: the same bytes may fill two places of a file); answer the
        confirmation the tagger reports to the chain.

        Raises:
            NotFound (file, fragment), Forbidden (not the tagger), FragmentMismatch (length,
            or tags that do not verify against the fragment: nothing is stored).
        """
        record = await self.view.file(fid)
        if record is None:
            raise NotFound(f"no file {fid} on chain")
        if record.tagger != signer.public_key:
            raise Forbidden(f"file {fid} is to be tagged by {address_of(record.tagger)}")
        held = await asyncio.to_thread(self.store.places_of, fragment_hash)
        place = next(
            (
                p
                for p in held
                if p.fid == fid and (position is None or (p.segment, p.fragment) == position)
            ),
            None,
        )
        if place is None:
            where = "" if position is None else f" at segment {position[0]} index {position[1]}"
            raise NotFound(f"no fragment {fragment_hash.hex()} of file {fid}{where} here")
        scheduler = await self.view.scheduler(record.tagger)
        if scheduler is None:
            raise Forbidden(f"the tagger of file {fid} is not a registered scheduler")
        blocks = block_count(place.size, scheduler.tag_key.sectors_per_block)
        expected = blocks * TAG_BYTES
        if declared_length is not None and declared_length != expected:
            raise FragmentMismatch(
                f"tags of a {place.size}-byte fragment are {expected} bytes, not {declared_length}"
            )
        tags = b"".join([chunk async for chunk in open_body(expected)])
        if len(tags) != expected:
            raise FragmentMismatch(
                f"tags of a {place.size}-byte fragment are {expected} bytes, not {len(tags)}"
            )
        key_id = scheduler.tag_key.key_id
        await asyncio.to_thread(_check_tags, self.store, place, scheduler.tag_key, tags)
        await asyncio.to_thread(self.store.put_tags, fragment_hash, key_id, tags)
        signature = await self.sign_tags(fid, place.segment, place.fragment, fragment_hash, key_id)
        return TagsStored(
            blocks=blocks,
            segment=place.segment,
            fragment=place.fragment,
            key_id=key_id,
            miner=self.key.address,
            signature=signature,
        )

    async def sign_tags(
        self, fid: str, segment: int, fragment: int, fragment_hash: bytes, key_id: bytes
    ) -> bytes:
        """This miner's confirmation that it stores verified tags of that fragment (only
        called once they are stored: the chain takes it as the proof)."""
        message = tags_message(
            await self.view.chain_id(),
            fid,
            segment,
            fragment,
            fragment_hash,
            key_id,
            self.key.public_key,
        )
        return self.key.sign(message)

    # --- mirror copies of other fragments' tags -------------------------------------------

    async def store_mirror(
        self, request: MirrorRequest, signer: Signer, open_body: BodyOpener
    ) -> int:
        """Keep a mirror copy of the tags of another fragment of a segment held here; returns
        the block count.

        Raises:
            NotFound (file, or the segment not received here), Forbidden (not the tagger, or
            a segment this miner holds nothing of), BadRequest (this miner's own fragment),
            FragmentMismatch (indices, hash, length, or a tag that is not a point of G1).
        """
        fid, segment, fragment = request.fid, request.segment, request.fragment
        record = await self.view.file(fid)
        if record is None:
            raise NotFound(f"no file {fid} on chain")
        if record.tagger != signer.public_key:
            raise Forbidden(f"file {fid} is to be tagged by {address_of(record.tagger)}")
        if segment >= len(record.segments):
            raise FragmentMismatch(f"file {fid} has {len(record.segments)} segment(s)")
        plan, holders = record.segments[segment], record.holders[segment]
        if fragment >= len(plan.fragment_hashes):
            raise FragmentMismatch(
                f"segment {segment} of {fid} has {len(plan.fragment_hashes)} fragments"
            )
        if plan.fragment_hashes[fragment] != request.fragment_hash:
            raise FragmentMismatch(
                f"fragment {fragment} of segment {segment} is "
                f"{plan.fragment_hashes[fragment].hex()}, not {request.fragment_hash.hex()}"
            )
        me = self.key.public_key
        if me not in holders:  # bounds what a tagger can make this miner keep
            raise Forbidden(f"this miner holds no fragment of segment {segment} of {fid}")
        if holders[fragment] == me:
            raise BadRequest("that is this miner's own fragment: its tags go to PUT /tags")
        if not await asyncio.to_thread(self.store.holds_segment, fid, segment):
            raise NotFound(f"no fragment of segment {segment} of {fid} received here yet")
        scheduler = await self.view.scheduler(record.tagger)
        if scheduler is None:
            raise Forbidden(f"the tagger of file {fid} is not a registered scheduler")
        size = (await self.view.params()).layout.fragment_size(plan)
        blocks = block_count(size, scheduler.tag_key.sectors_per_block)
        expected = blocks * TAG_BYTES
        length = request.declared_length
        if length is not None and length != expected:
            raise FragmentMismatch(
                f"tags of a {size}-byte fragment are {expected} bytes, not {length}"
            )
        tags = b"".join([chunk async for chunk in open_body(expected)])
        try:
            await asyncio.to_thread(check_tag_points, tags, blocks)
        except BadProof as exc:
            raise FragmentMismatch(f"mirror tags of a {size}-byte fragment: {exc}") from exc
        key_id = scheduler.tag_key.key_id
        mirror = MirrorPlace(fid, segment, fragment, request.fragment_hash, key_id)
        try:
            await asyncio.to_thread(self.store.put_mirror, mirror, tags)
        except StoreError as exc:  # the segment's last place went away meanwhile
            raise NotFound(str(exc)) from exc
        return blocks

    async def read_mirror(
        self, signer: Signer, fragment_hash: bytes, key_id: bytes, order_id: int | None
    ) -> bytes:
        """A mirror copy kept here of a fragment's tags under one key, for a party with a
        reason: the claimer of CLAIMED restoral order ``order_id`` for that fragment, or a
        holder of the fragment (whose own tags are missing).

        Raises:
            NotFound (no such mirror), Forbidden (no reason).
        """
        mirrors = await asyncio.to_thread(self.store.mirrors_of, fragment_hash, key_id)
        if not mirrors:
            raise NotFound(f"no mirror of the tags of {fragment_hash.hex()} under {key_id.hex()}")
        chosen = await self._mirror_reason(signer.public_key, mirrors, order_id)
        if chosen is None:
            raise Forbidden(
                f"{signer.address} neither claimed a restoral order for fragment "
                f"{fragment_hash.hex()} (?order=) nor holds it"
            )
        try:
            return await asyncio.to_thread(self.store.read_mirror, chosen)
        except StoreError as exc:
            raise NotFound(str(exc)) from exc

    async def _mirror_reason(
        self, asker: bytes, mirrors: list[MirrorPlace], order_id: int | None
    ) -> MirrorPlace | None:
        """The mirror the asker has a reason to read, or None."""
        if order_id is not None:
            order = await self.view.order(order_id)
            if order is None or order.state != OrderState.CLAIMED or order.claimer != asker:
                return None
            return next(
                (m for m in mirrors if (m.fid, m.segment, m.fragment) == _order_place(order)),
                None,
            )
        for mirror in mirrors:
            record = await self.view.file(mirror.fid)
            if record is not None and record.holders[mirror.segment][mirror.fragment] == asker:
                return mirror
        return None

    # --- fragments out ---------------------------------------------------------------------

    async def authorize_reader(
        self, signer: Signer, fragment_hash: bytes, reason: ReadReason
    ) -> None:
        """Let the read through only for the reason it names, confirmed on chain, and only for
        a fragment held here for that reason's file (and segment, for restoral). Nothing is
        read before this returns.

        Raises:
            Forbidden: the message says which reason was missing or which check failed.
        """
        self.read_limiter.charge(signer.public_key, reason.kind, requests=1)
        if reason.kind not in READ_REASONS:
            raise Forbidden(
                f"a fragment read must name its reason: ?reason= one of {', '.join(READ_REASONS)}"
                + (f" (got {reason.kind!r})" if reason.kind else "")
            )
        held = await asyncio.to_thread(self.store.places_of, fragment_hash)
        if reason.kind == "download":
            await self._check_download(signer, held, reason)
        elif reason.kind == "restoral":
            await self._check_restoral(signer, held, reason)
        else:
            await self._check_tagging(signer, held, reason)

    async def _check_download(
        self, signer: Signer, held: list[FragmentPlace], reason: ReadReason
    ) -> None:
        owner = reason.owner or signer.address
        if not reason.fid:
            raise Forbidden("reason=download names the file it reads: &fid=")
        if not any(p.fid == reason.fid for p in held):
            raise Forbidden(f"this fragment is not held here for file {reason.fid}")
        if owner != signer.address:
            acts = await self.view.confirmed(
                ("gw", signer.public_key, owner),
                lambda: self.view.gateway_acts_for(signer.public_key, owner),
            )
            if not acts:
                raise Forbidden(f"{signer.address} is not a gateway authorized by {owner}")
        owns = await self.view.confirmed(
            ("owns", owner, reason.fid), lambda: self.view.owns_fid(owner, reason.fid)
        )
        if not owns:
            raise Forbidden(f"{owner} owns no object stored as file {reason.fid}")

    async def _check_restoral(
        self, signer: Signer, held: list[FragmentPlace], reason: ReadReason
    ) -> None:
        if reason.order is None:
            raise Forbidden("reason=restoral names the claimed order: &order=")
        order = await self.view.order(reason.order)
        if order is None:
            raise Forbidden(f"no restoral order {reason.order} on chain")
        if order.state != OrderState.CLAIMED or order.claimer != signer.public_key:
            raise Forbidden(f"restoral order {order.id} is not claimed by {signer.address}")
        if not any((p.fid, p.segment) == (order.fid, order.segment) for p in held):
            raise Forbidden(
                f"this fragment is not of segment {order.segment} of file {order.fid}, "
                f"the segment of restoral order {order.id}"
            )

    async def _check_tagging(
        self, signer: Signer, held: list[FragmentPlace], reason: ReadReason
    ) -> None:
        if not reason.fid:
            raise Forbidden("reason=tagging names the file it tags: &fid=")
        if not any(p.fid == reason.fid for p in held):
            raise Forbidden(f"this fragment is not held here for file {reason.fid}")
        record = await self.view.file(reason.fid)
        if record is None or record.tagger != signer.public_key:
            raise Forbidden(f"{signer.address} is not the tagger of file {reason.fid}")
        if record.tagged:  # tagging is over: the tagger has no more reason to read
            raise Forbidden(f"file {reason.fid} is tagged already")

    async def read_tags(
        self, signer: Signer, fragment_hash: bytes, key_id: bytes, reason: ReadReason
    ) -> bytes:
        """The stored tags of a held fragment, for a confirmed reason (a restorer copying a
        fragment from this exiting miner checks them before it keeps them).

        Raises:
            Forbidden, NotFound.
        """
        await self.authorize_reader(signer, fragment_hash, reason)
        try:
            tags = await asyncio.to_thread(self.store.read_tags, fragment_hash, key_id)
        except StoreError as exc:
            raise NotFound(str(exc)) from exc
        self.read_limiter.charge(signer.public_key, reason.kind, nbytes=len(tags))
        return tags

    async def open_fragment(self, fragment_hash: bytes) -> OpenFragment:
        """The fragment's file, open. Raises NotFound."""
        return await asyncio.to_thread(_open_fragment, self.store, fragment_hash)

    # --- status ----------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        usage = await asyncio.to_thread(self.store.usage)
        extra = {name: source() for name, source in self.status_sources.items()}
        return {
            "address": self.key.address,
            "followed_height": self.followed_height,
            **usage,
            **extra,
        }


def _order_place(order: Order) -> tuple[str, int, int]:
    return order.fid, order.segment, order.fragment


def _same_place(a: FragmentPlace, b: FragmentPlace) -> bool:
    return (a.fid, a.segment, a.fragment, a.fragment_hash) == (
        b.fid,
        b.segment,
        b.fragment,
        b.fragment_hash,
    )


def _check_tags(
    store: FragmentStore, place: FragmentPlace, public: TagPublicKey, tags: bytes
) -> None:
    """Check tags against the stored fragment, all blocks at once (about 0.3 s of one core
    for an 8 MiB fragment). Raises FragmentMismatch when they do not verify."""
    try:
        data = store.read_range(place.fragment_hash, 0, place.size)
    except StoreError as exc:
        raise NotFound(f"fragment {place.fragment_hash.hex()} is not readable here") from exc
    try:
        # coefficients drawn after the tags arrived: the sender cannot aim at them
        check_tags(public, place.fragment_hash, data, tags, os.urandom(32))
    except BadProof as exc:
        raise FragmentMismatch(
            f"the tags do not verify against fragment {place.fragment_hash.hex()}: {exc}"
        ) from exc


def _open_fragment(store: FragmentStore, fragment_hash: bytes) -> OpenFragment:
    stack = contextlib.ExitStack()
    try:
        handle, size = stack.enter_context(store.open_fragment(fragment_hash))
    except StoreError as exc:
        stack.close()
        raise NotFound(f"no fragment {fragment_hash.hex()} here") from exc
    return OpenFragment(handle, size, stack)


# --- streaming a body into the store -------------------------------------------------------


class _Aborted(Exception):
    """Raised inside the writer thread when the body failed on the event loop's side."""


class _ChunkPipe:
    """Batches of chunks from the event loop to a writer thread, at most ``depth`` in flight.

    The end of the stream is handed on only after the producer's checks passed (``finish``);
    ``abort`` makes the writer fail, so the store drops what it wrote.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, depth: int = PIPE_DEPTH) -> None:
        self._loop = loop
        self._slots = asyncio.Semaphore(depth)
        self._items: queue.SimpleQueue[list[bytes] | None | _Aborted] = queue.SimpleQueue()
        self._closed = False

    async def send(self, batch: list[bytes]) -> bool:
        """Hand on one batch of chunks; False once the writer stopped reading."""
        await self._slots.acquire()
        if self._closed:
            return False
        self._items.put(batch)
        return True

    def finish(self) -> None:
        self._items.put(None)

    def abort(self) -> None:
        self._items.put(_Aborted("the request body failed its checks or was cut off"))

    def __iter__(self) -> Iterator[bytes]:  # the writer thread's side
        while True:
            item = self._items.get()
            if item is None:
                return
            if isinstance(item, _Aborted):
                raise item
            self._loop.call_soon_threadsafe(self._slots.release)
            yield from item

    def close(self) -> None:  # the writer thread's side, when it stops reading
        self._closed = True
        self._loop.call_soon_threadsafe(self._slots.release)


def _write(store: FragmentStore, place: FragmentPlace, pipe: _ChunkPipe) -> None:
    try:
        store.put_fragment(place, pipe)
    finally:
        pipe.close()


async def _batched(chunks: AsyncIterator[bytes], size: int) -> AsyncIterator[list[bytes]]:
    """Group small body chunks (the server hands 64 KiB) into batches of about ``size`` bytes:
    each batch costs one hand-over to the writer thread instead of sixteen. The chunks are
    handed on as they are (joining them cost two copies of every fragment)."""
    batch: list[bytes] = []
    held = 0
    async for chunk in chunks:
        batch.append(chunk)
        held += len(chunk)
        if held >= size:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


async def write_streamed(
    store: FragmentStore, place: FragmentPlace, chunks: AsyncIterator[bytes]
) -> None:
    """Feed ``chunks`` to ``store.put_fragment`` in a worker thread; on any failure the store
    keeps nothing and the failure (not the writer's reaction to it) is raised.

    Raises:
        FragmentMismatch: the bytes do not match the place's hash or size.
    """
    pipe = _ChunkPipe(asyncio.get_running_loop())
    writer = asyncio.ensure_future(asyncio.to_thread(_write, store, place, pipe))
    try:
        async for batch in _batched(chunks, WRITE_BATCH):
            if not await pipe.send(batch):
                break  # the writer stopped early: the bytes were here already, or it failed
        else:
            pipe.finish()
    except BaseException:
        pipe.abort()
        await asyncio.wait([writer])  # the store has cleaned up before the error is answered
        if not writer.cancelled():
            writer.exception()  # the writer's _Aborted: retrieved, the body's failure is raised
        raise
    try:
        await writer
    except BodyMismatch as exc:  # the place's hash is the signed one (accept_fragment checks)
        raise AuthError(f"body does not match the signed SHA-256: {exc}") from exc
    except StoreError as exc:
        raise FragmentMismatch(str(exc)) from exc


# --- registration --------------------------------------------------------------------------

# Registering with only the required stake would stop the miner from taking fragments after its
# first slash (every slash takes a share of the stake); twice the requirement absorbs a run of
# missed rounds, e.g. a restart, and leaves the operator time to top it up.
STAKE_HEADROOM = 2


async def ensure_registered(
    chain: ChainClient, key: KeyPair, settings: MinerSettings, bound_url: str
) -> None:
    """Register this miner on chain, or update its endpoint if it changed.

    Raises:
        ClientError: the chain refused or could not be reached (the process stops).
    """
    endpoint = settings.public_url or bound_url
    view = ChainView(chain)
    current = await view.miner(key.public_key)
    if current is None:
        required = required_stake(await view.params(), settings.capacity_bytes)
        stake = settings.stake or STAKE_HEADROOM * required
        call = RegisterMiner(endpoint=endpoint, capacity_bytes=settings.capacity_bytes, stake=stake)
        outcome = await chain.submit(key, call)
        log_event(ROLE, "registered", endpoint=endpoint, stake=stake, height=outcome.height)
        return
    if current.endpoint != endpoint:
        outcome = await chain.submit(key, UpdateMiner(endpoint=endpoint))
        log_event(ROLE, "endpoint_updated", endpoint=endpoint, height=outcome.height)
    required = required_stake(await view.params(), current.capacity_bytes)
    if current.state == MinerState.ACTIVE and current.stake < required:
        log_event(
            ROLE,
            "stake_below_required",
            stake=current.stake,
            required=required,
            note="slashes took the stake under what the capacity requires: no new fragments "
            "or restoral claims until `deoss miner stake AMOUNT` tops it up",
        )
    if current.capacity_bytes != settings.capacity_bytes:
        log_event(
            ROLE,
            "capacity_unchanged",
            registered=current.capacity_bytes,
            configured=settings.capacity_bytes,
            note="the chain has no call to change a miner's capacity",
        )
