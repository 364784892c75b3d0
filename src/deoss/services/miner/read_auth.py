"""Read authorization: whether a signed read of a fragment (or of its tags) goes through,
for the reason it names, confirmed on chain (``MinerService.authorize_reader``).

A mixin rather than a separate object: ``authorize_reader`` is ``MinerService``'s public API
(the routes and ``read_tags`` call it on the service) and reads the service's own attributes
(``view``, ``store``, ``read_limiter``), so nothing is delegated by hand and a limiter swapped
on the service is the one charged. Invariant:

* A fragment (or a range of it), and its tags, are served only for a reason the signed request
  names and the chain confirms (``ReadReason``, docs/podr2.md "Outsourcing"): a download for an
  owner of the fragment's file (the owner itself, or a gateway that owner authorized), a
  restoral order of the fragment's segment claimed by the signer, or tagging by the file's
  tagger. Being a registered party is not a reason: a miner that kept only its tags could
  otherwise answer its challenges from the other holders' copies.
"""

from __future__ import annotations

import asyncio

from deoss.chain.modules.restoral import OrderState
from deoss.client.miner_types import READ_REASONS, ReadReason
from deoss.services.common.errors import Forbidden
from deoss.services.common.signing import Signer
from deoss.services.miner.chain_view import ChainView
from deoss.services.miner.read_limits import ReadLimiter
from deoss.services.miner.store import FragmentPlace, FragmentStore

__all__ = ["ReadAuthorization"]


class ReadAuthorization:
    """The reason checks of fragment and tag reads (a mixin of ``MinerService``, which sets
    these attributes)."""

    view: ChainView
    store: FragmentStore
    read_limiter: ReadLimiter

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
