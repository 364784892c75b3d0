"""Which miners receive the fragments of a segment: pure functions of the chain's miner list.

Rules (``deals.report`` on chain checks the same ones):

* every fragment of one segment goes to a different miner;
* a miner must be accepting (ACTIVE, with a stake that covers its capacity) and have idle space
  for every fragment of the deal planned on it: ``reserved`` bytes of other segments plus this
  fragment;
* miners that already failed for this deal are skipped.

The order is a deterministic shuffle seeded by (deal id, segment index): load spreads over the
miners, and placing the same segment again prefers the same miners. No I/O, clock or randomness.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from deoss.chain.genesis import ChainParams
from deoss.chain.modules.miners import MinerEntry, accepts_fragments
from deoss.core.keys import parse_address

__all__ = [
    "Candidate",
    "NotEnoughMiners",
    "accepting_candidates",
    "choose_miners",
    "has_room",
    "rank_miners",
]

SHUFFLE_DOMAIN = b"deoss-placement-v1"


class NotEnoughMiners(Exception):
    """Fewer accepting miners with room than the fragments of a segment need."""


@dataclass(frozen=True)
class Candidate:
    """An accepting miner as the chain listed it."""

    public_key: bytes
    address: str
    endpoint: str
    idle_bytes: int


def accepting_candidates(entries: Sequence[MinerEntry], params: ChainParams) -> list[Candidate]:
    """The miners that may receive new fragments (ACTIVE, enough stake), in address order."""
    out = []
    for entry in entries:
        miner = entry.miner
        if not accepts_fragments(miner, params):
            continue
        out.append(
            Candidate(
                public_key=parse_address(entry.address),
                address=entry.address,
                endpoint=miner.endpoint.rstrip("/"),
                idle_bytes=miner.idle_bytes,
            )
        )
    return sorted(out, key=lambda c: c.address)


def has_room(candidate: Candidate, fragment_size: int, reserved: Mapping[bytes, int]) -> bool:
    """Can ``candidate`` take one more fragment of ``fragment_size`` bytes for this deal?"""
    return candidate.idle_bytes - reserved.get(candidate.public_key, 0) >= fragment_size


def _shuffle_key(deal_id: int, segment: int, candidate: Candidate) -> bytes:
    seed = SHUFFLE_DOMAIN + deal_id.to_bytes(8, "big") + segment.to_bytes(4, "big")
    return hashlib.sha256(seed + candidate.public_key).digest()


def rank_miners(
    candidates: Sequence[Candidate],
    *,
    deal_id: int,
    segment: int,
    fragment_size: int,
    exclude: Collection[bytes] = (),
    reserved: Mapping[bytes, int] | None = None,
) -> list[Candidate]:
    """Every usable candidate for one fragment of this segment, in the deal's shuffled order."""
    planned = reserved or {}
    usable = {
        c.public_key: c
        for c in candidates
        if c.public_key not in exclude and has_room(c, fragment_size, planned)
    }
    return sorted(usable.values(), key=lambda c: _shuffle_key(deal_id, segment, c))


def choose_miners(
    candidates: Sequence[Candidate],
    *,
    deal_id: int,
    segment: int,
    count: int,
    fragment_size: int,
    exclude: Collection[bytes] = (),
    reserved: Mapping[bytes, int] | None = None,
) -> tuple[list[Candidate], list[Candidate]]:
    """``count`` distinct miners for the fragments of a segment, and the spares in order.

    Raises:
        NotEnoughMiners: fewer than ``count`` usable miners.
    """
    ranked = rank_miners(
        candidates,
        deal_id=deal_id,
        segment=segment,
        fragment_size=fragment_size,
        exclude=exclude,
        reserved=reserved,
    )
    if len(ranked) < count:
        raise NotEnoughMiners(
            f"deal {deal_id} segment {segment}: {len(ranked)} accepting miners have "
            f"{fragment_size} idle bytes ({len(candidates)} accepting in all, "
            f"{len(exclude)} failed for this deal); {count} distinct miners are needed"
        )
    return ranked[:count], ranked[count:]
