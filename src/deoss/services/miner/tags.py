"""Tags and mirror copies of tags: what ``MinerService`` decides about PoDR² tags given to it
(``PUT /tags``, ``PUT /mirror-tags``) and mirror copies it serves (``GET /mirror-tags``).

A mixin rather than a separate object: its methods are ``MinerService``'s public API (the
routes call them on the service) and read the service's own attributes (``view``, ``store``,
``key``), so nothing is delegated by hand and an attribute swapped on the service is the one
they use. Invariants:

* Tags are accepted only from the file's current tagger, for a fragment held for that fid, with
  exactly ``block_count(size, s) × 48`` bytes, s from the tagger's registered tag key, and only
  if they verify against the stored fragment (``core.podr2.check_tags``): a tag that is not a
  valid tag of its block would fail, or stop, this miner's proofs, so it is never stored.
  Once stored, the answer carries this miner's tag confirmation
  (``chain.modules.tags.tags_message``): the tagger needs it to report the file tagged, and
  the chain challenges only confirmed holdings.
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
import os

from deoss.chain.modules.restoral import Order, OrderState
from deoss.chain.modules.tags import tags_message
from deoss.client.miner_types import MirrorRequest, TagsStored
from deoss.core.errors import BadProof
from deoss.core.keys import KeyPair, address_of
from deoss.core.podr2 import TAG_BYTES, TagPublicKey, block_count, check_tag_points, check_tags
from deoss.services.common.errors import BadRequest, Forbidden, NotFound
from deoss.services.common.signing import Signer
from deoss.services.miner.chain_view import ChainView
from deoss.services.miner.errors import FragmentMismatch
from deoss.services.miner.store import FragmentPlace, FragmentStore, MirrorPlace, StoreError
from deoss.services.miner.writer import BodyOpener

__all__ = ["TagDuties"]


class TagDuties:
    """Tags of fragments held here, and mirror copies of other fragments' tags (a mixin of
    ``MinerService``, which sets these attributes)."""

    view: ChainView
    store: FragmentStore
    key: KeyPair

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


def _order_place(order: Order) -> tuple[str, int, int]:
    return order.fid, order.segment, order.fragment


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
