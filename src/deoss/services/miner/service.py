"""The miner's request logic: accept fragments, store tags, serve fragments. (Registering on
chain is ``register.py``; the thread pipe a fragment body is written through, ``writer.py``.)

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
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from deoss.chain.modules.deals import Deal, DealState, receipt_message
from deoss.chain.modules.files import tags_message
from deoss.chain.modules.restoral import Order, OrderState
from deoss.client.chain import ChainClient
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
from deoss.services.common.auth import AuthError, RequestVerifier
from deoss.services.common.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    ServiceError,
)
from deoss.services.common.signing import Signer
from deoss.services.miner.chain_view import ChainView
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
from deoss.services.miner.writer import WRITE_BATCH, ChunkPipe, batched, write_from_pipe

__all__ = [
    "ROLE",
    "ChainView",
    "FragmentMismatch",
    "MinerService",
    "OpenFragment",
]

ROLE = "miner"
READ_CHUNK = 1024 * 1024  # fewer thread hops per fragment served

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


class MinerService:
    """The miner's decisions, over its chain view, fragment store and account key."""

    def __init__(
        self,
        *,
        chain: ChainClient,
        store: FragmentStore,
        key: KeyPair,
        read_limiter: ReadLimiter | None = None,
        public_url: str = "",
    ) -> None:
        self.chain = chain
        # unlimited unless given (from_settings gives the settings' budgets)
        self.read_limiter = read_limiter or ReadLimiter(ReadBudget(0, 0), ReadBudget(0, 0))
        self.verifier = RequestVerifier(public_url=public_url)  # its own: replays refused per miner
        self.view = ChainView(chain)
        self.store = store
        self.key = key
        self.followed_height = 0  # the last block the follower handled (for /healthz)
        self.status_sources: dict[str, Callable[[], dict[str, Any]]] = {}  # more for /healthz

    @classmethod
    def from_settings(
        cls, settings: MinerSettings, *, chain: ChainClient, store: FragmentStore, key: KeyPair
    ) -> MinerService:
        """The miner over ``store``, talking to ``chain``, signing with ``key``, its read
        budgets and public URL from ``settings``. The caller owns chain and store."""
        limiter = ReadLimiter(
            ReadBudget(settings.read_requests_per_s, settings.read_bytes_per_s),
            ReadBudget(settings.bulk_read_requests_per_s, settings.bulk_read_bytes_per_s),
        )
        return cls(
            chain=chain, store=store, key=key, read_limiter=limiter, public_url=settings.public_url
        )

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


async def write_streamed(
    store: FragmentStore, place: FragmentPlace, chunks: AsyncIterator[bytes]
) -> None:
    """Feed ``chunks`` to ``store.put_fragment`` in a worker thread; on any failure the store
    keeps nothing and the failure (not the writer's reaction to it) is raised.

    Raises:
        FragmentMismatch: the bytes do not match the place's hash or size.
    """
    pipe = ChunkPipe(asyncio.get_running_loop())
    writer = asyncio.ensure_future(asyncio.to_thread(write_from_pipe, store, place, pipe))
    try:
        async for batch in batched(chunks, WRITE_BATCH):
            if not await pipe.send(batch):
                break  # the writer stopped early: the bytes were here already, or it failed
        else:
            pipe.finish()
    except BaseException:
        pipe.abort()
        await asyncio.wait([writer])  # the store has cleaned up before the error is answered
        if not writer.cancelled():
            writer.exception()  # the writer's Aborted: retrieved, the body's failure is raised
        raise
    try:
        await writer
    except BodyMismatch as exc:  # the place's hash is the signed one (accept_fragment checks)
        raise AuthError(f"body does not match the signed SHA-256: {exc}") from exc
    except StoreError as exc:
        raise FragmentMismatch(str(exc)) from exc
