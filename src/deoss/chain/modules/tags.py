"""The holder's tag confirmation: the signed message a miner gives once it stores verified tags.

A holder signs ``tags_message`` once it stored tags of its fragment that verified under the
tagger's key (docs/tag-confirmations.md); the scheduler carries these signatures in
``files.tagged`` (deoss.chain.modules.tagging). Wire records only: the miner and scheduler
services build and check the same bytes.
"""

from __future__ import annotations

from deoss.chain.types import PubKey, Sig64
from deoss.core import codec
from deoss.core.codec import Record

TAGS_DOMAIN = b"deoss-tags-v1"


class TagConfirmation(Record):
    """A holder's signature over ``tags_message`` for the fragment at (segment, fragment)."""

    segment: int
    fragment: int
    miner: PubKey
    signature: Sig64


class TagsBody(Record):
    chain_id: str
    fid: str
    segment: int
    fragment: int
    fragment_hash: bytes
    key_id: bytes
    miner: PubKey


def tags_message(
    chain_id: str,
    fid: str,
    segment: int,
    fragment: int,
    fragment_hash: bytes,
    key_id: bytes,
    miner: bytes,
) -> bytes:
    """What a holder signs once it stored tags of its fragment that verified under ``key_id``
    (the same shape as ``deals.receipt_message``, another domain)."""
    body = TagsBody(
        chain_id=chain_id,
        fid=fid,
        segment=segment,
        fragment=fragment,
        fragment_hash=fragment_hash,
        key_id=key_id,
        miner=miner,
    )
    return TAGS_DOMAIN + codec.encode(body)
