"""Wire records of the miner's HTTP API, shared by its routes (``deoss.services.miner.routes``)
and its client (``deoss.client.miner``): what a request names, what an answer carries."""

from __future__ import annotations

import json
from dataclasses import dataclass

from deoss.client.errors import PeerBadAnswer

__all__ = [
    "READ_REASONS",
    "FragmentRequest",
    "MirrorRequest",
    "ReadReason",
    "Receipt",
    "TagsStored",
]

READ_REASONS = ("download", "restoral", "tagging")


@dataclass(frozen=True)
class FragmentRequest:
    fragment_hash: bytes
    deal_id: int
    attempt: int  # the deal's assignment the scheduler places for (the deal's ``attempts``)
    segment: int
    fragment: int
    declared_length: int | None  # Content-Length, when the client sent one


@dataclass(frozen=True)
class MirrorRequest:
    """A mirror copy of the tags of fragment ``fragment`` of ``segment`` of ``fid``."""

    fragment_hash: bytes
    fid: str
    segment: int
    fragment: int
    declared_length: int | None  # Content-Length, when the client sent one


@dataclass(frozen=True)
class ReadReason:
    """Why a fragment is read, as the signed request names it (query parameters ``reason``,
    ``owner``, ``fid``, ``order``; the request signature covers the query)."""

    kind: str  # one of READ_REASONS, or "" when the request named none
    fid: str = ""  # download, tagging: the file the fragment is read for
    owner: str = ""  # download: the owner the read is for ("" = the signer itself)
    order: int | None = None  # restoral: the claimed order

    def query(self) -> dict[str, str]:
        """The query parameters that name this reason (those set, in the routes' order)."""
        params = {"reason": self.kind, "fid": self.fid, "owner": self.owner}
        if self.order is not None:
            params["order"] = str(self.order)
        return {name: value for name, value in params.items() if value}


@dataclass(frozen=True)
class Receipt:
    """A miner's receipt for a fragment it stored (``PUT /fragments``): its address and its
    signature over ``deals.receipt_message``."""

    miner: str
    signature: bytes

    @classmethod
    def from_answer(cls, answer: bytes, what: str) -> Receipt:
        """The receipt in a miner's JSON answer (``{"miner": ..., "signature": hex}``).

        Raises:
            PeerBadAnswer: not that shape (``what`` names the request in the message).
        """
        try:
            body = json.loads(answer)
            return cls(str(body["miner"]), bytes.fromhex(body["signature"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise PeerBadAnswer(f"{what}: malformed receipt ({exc!r})") from exc


@dataclass(frozen=True)
class TagsStored:
    """Tags kept for the fragment at (segment, fragment) of a file, and this miner's signed
    confirmation of them (``chain.modules.tags.tags_message`` under ``key_id``)."""

    blocks: int
    segment: int
    fragment: int
    key_id: bytes
    miner: str
    signature: bytes
