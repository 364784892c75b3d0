"""Tags from the mirror copies other holders of a segment keep (docs/podr2.md, "Tag mirrors").

The tagger gives the holder of fragment i of a segment, besides its own tags, copies of the
tags of the next ``tag_mirrors`` fragments of the segment in a ring (i+1, i+2, ... mod n). So
the tags of fragment j are kept by the holders of j-1, j-2, ...; they are asked in that order,
then the other holders (the count is the tagger's setting, unknown here). The first copy that
verifies against the fragment's bytes (``check_tags``) is returned: a mirror holder could not
check what it keeps, so nothing it answers is trusted unchecked.
"""

from __future__ import annotations

import asyncio
import os

from deoss.chain.modules.files import FileRecord
from deoss.core.errors import BadProof
from deoss.core.keys import address_of
from deoss.core.podr2 import TAG_BYTES, TagPublicKey, block_count, check_tags
from deoss.services.common.app import log_event
from deoss.services.miner.peers import PeerError, Peers

__all__ = ["mirror_order", "tags_from_mirrors"]

ROLE = "miner"


def mirror_order(holders: list[bytes], fragment: int, skip: set[bytes]) -> list[bytes]:
    """The holders of a segment to ask for mirrors of fragment ``fragment``'s tags: its ring
    predecessors first, each once, without those in ``skip``."""
    count = len(holders)
    out: list[bytes] = []
    for distance in range(1, count):
        holder = holders[(fragment - distance) % count]
        if holder not in skip and holder not in out:
            out.append(holder)
    return out


async def tags_from_mirrors(
    peers: Peers,
    record: FileRecord,
    segment: int,
    fragment: int,
    data: bytes,
    public: TagPublicKey,
    *,
    skip: set[bytes],
    order_id: int | None = None,
) -> bytes | None:
    """Tags of fragment ``fragment`` of ``segment`` (whose bytes are ``data``) from the first
    other holder whose mirror copy verifies, or None when none does."""
    fragment_hash = record.segments[segment].fragment_hashes[fragment]
    expected = block_count(len(data), public.sectors_per_block) * TAG_BYTES
    endpoints = await peers.miner_endpoints()
    for holder in mirror_order(record.holders[segment], fragment, skip):
        endpoint = endpoints.get(holder)
        if endpoint is None:
            continue
        try:
            tags = await peers.fetch_mirror(
                endpoint, fragment_hash, public.key_id, expected, order_id
            )
            await asyncio.to_thread(check_tags, public, fragment_hash, data, tags, os.urandom(32))
        except (PeerError, BadProof) as exc:
            log_event(
                ROLE,
                "mirror_tags_unusable",
                fid=record.fid,
                segment=segment,
                fragment=fragment,
                holder=address_of(holder)[:16],
                why=str(exc)[:200],
            )
            continue
        return tags
    return None
