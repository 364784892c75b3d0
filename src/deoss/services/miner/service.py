"""The miner's request logic: accept fragments, store tags, serve fragments. (Registering on
chain is ``register.py``; the thread pipe a fragment body is written through, ``writer.py``.)

Routes call one function of ``MinerService`` each; everything the miner decides is decided by
it, against the chain (``ChainView``) and the fragment store. Invariants:

* A fragment is accepted only from the scheduler its deal is ASSIGNED to, for the assignment
  (attempt) the request names, only for a declared (deal, segment, fragment) whose hash is the
  one in the request, and only with exactly the declared size. The signed body SHA-256 must be
  that hash too, so the signature covers the bytes the miner signs a receipt for. The receipt
  names the deal and that assignment: the chain takes it for no other.
* Bytes reach the index only after both checks of the body passed: ``iter_checked_body``
  (the signed SHA-256, checked before the end of the stream is handed on) and the store's own
  size and hash check (before the rename). Any failure, disconnect included, leaves nothing.
* Store calls run in worker threads (``asyncio.to_thread``); the event loop never touches disk.
* Tags and mirror copies of tags are ``tags.py``'s (``TagDuties``); whether a read of a
  fragment or of its tags goes through, ``read_auth.py``'s (``ReadAuthorization``). Both are
  mixins of ``MinerService``, so the routes still call every decision on the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from deoss.chain.modules.deals import Deal, DealState, receipt_message
from deoss.client.chain import ChainClient
from deoss.client.miner_types import FragmentRequest, ReadReason, Receipt
from deoss.core.keys import KeyPair, address_of
from deoss.services.common.auth import RequestVerifier
from deoss.services.common.errors import Conflict, Forbidden, NotFound
from deoss.services.common.signing import Signer
from deoss.services.miner.chain_view import ChainView
from deoss.services.miner.errors import FragmentMismatch
from deoss.services.miner.read_auth import ReadAuthorization
from deoss.services.miner.read_limits import ReadBudget, ReadLimiter
from deoss.services.miner.settings import MinerSettings
from deoss.services.miner.store import Area, FragmentPlace, FragmentStore, StoreError
from deoss.services.miner.tags import TagDuties
from deoss.services.miner.writer import BodyOpener, write_streamed

__all__ = [
    "ROLE",
    "BodyOpener",
    "ChainView",
    "FragmentMismatch",
    "MinerService",
    "OpenFragment",
]

ROLE = "miner"
READ_CHUNK = 1024 * 1024  # fewer thread hops per fragment served


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


class MinerService(TagDuties, ReadAuthorization):
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

    # --- fragments out ---------------------------------------------------------------------

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


def _same_place(a: FragmentPlace, b: FragmentPlace) -> bool:
    return (a.fid, a.segment, a.fragment, a.fragment_hash) == (
        b.fid,
        b.segment,
        b.fragment,
        b.fragment_hash,
    )


def _open_fragment(store: FragmentStore, fragment_hash: bytes) -> OpenFragment:
    stack = contextlib.ExitStack()
    try:
        handle, size = stack.enter_context(store.open_fragment(fragment_hash))
    except StoreError as exc:
        stack.close()
        raise NotFound(f"no fragment {fragment_hash.hex()} here") from exc
    return OpenFragment(handle, size, stack)
