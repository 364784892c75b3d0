"""Tags on request, for a fragment's holder or restorer (``PUT /tags/{hash}?fid=[&order=]``).

A miner that rebuilt a fragment for a restoral order, or a holder whose tags are missing, sends
the fragment's bytes to the scheduler holding the file's tag key and gets its PoDR² tags back.
Checks, in order; each failure raises before a tag is computed:

0. the signed body SHA-256 is the fragment hash (``FragmentMismatch``, 422);
1. the file exists on chain (``NotFound``, 404);
2. this scheduler holds the file's tag key: the key that tagged it, or, not tagged yet, the
   file's tagger is this scheduler (``Forbidden``, 403, naming who holds it);
3. the hash is one of the file's declared fragment hashes (``NotFound``, 404);
4. the signer holds that fragment, or claimed a restoral order for it that is still CLAIMED
   (``Forbidden``, 403);
5. the body is exactly the fragment's size and hashes to its hash (``FragmentMismatch``, 422);
6. the tags are computed in the tagger's low-priority pool, at most ``tag_workers`` requests
   at once (the rest wait).

Invariants: tags are only computed for bytes whose SHA-256 is a fragment hash the chain
declares for the file, for a party the chain names, so this is no oracle that tags arbitrary
data; the tag secret stays in the enclave. A chain that cannot be read is
``ServiceUnavailable`` (503).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from deoss.chain.modules.files import FileRecord
from deoss.chain.modules.restoral import OrderState
from deoss.client.chain import ChainClient
from deoss.client.chain_reads import BoundLookup
from deoss.client.errors import ClientError
from deoss.core.keys import KeyPair, address_of
from deoss.core.layout import LayoutParams
from deoss.services.common.app import log_event
from deoss.services.common.errors import Forbidden, NotFound, ServiceError, ServiceUnavailable
from deoss.services.common.signing import Signer
from deoss.services.scheduler.enclave import Enclave
from deoss.services.scheduler.tagging import Tagger

__all__ = ["FragmentMismatch", "Retagger", "TagRequest"]

ROLE = "scheduler"
P = ParamSpec("P")
R = TypeVar("R")


class FragmentMismatch(ServiceError):
    """The body is not the fragment it names: signed hash, size or SHA-256 differ."""

    status, code = 422, "fragment_mismatch"


@dataclass(frozen=True)
class TagRequest:
    """An admitted request: the fragment, the size its body must have, who asked and why."""

    fid: str
    fragment_hash: bytes
    segment: int
    fragment: int
    size: int
    signer: Signer
    order_id: int | None


class Retagger:
    """Computes the tags of one fragment for its holder or the claimer of its restoral order."""

    def __init__(
        self,
        *,
        chain: ChainClient,
        key: KeyPair,
        enclave: Enclave,
        layout: LayoutParams,
        tagger: Tagger,
    ) -> None:
        self.chain = chain
        self.key = key
        self.enclave = enclave
        self.layout = layout
        self.tagger = tagger

    async def admit(
        self, fid: str, fragment_hash: bytes, order_id: int | None, signer: Signer
    ) -> TagRequest:
        """Checks 0 to 4 of the module docstring, before the body is read.

        Raises:
            FragmentMismatch, NotFound, Forbidden, ServiceUnavailable.
        """
        name = fragment_hash.hex()
        if signer.body_sha256 != name:
            raise FragmentMismatch(
                f"the body's signed SHA-256 {signer.body_sha256} is not the fragment hash {name}"
            )
        record = await self._read_or_none(self.chain.reads.file, fid)
        if record is None:
            raise NotFound(f"no file {fid} on chain")
        self._check_tag_key(record)
        positions = [
            (segment, index)
            for segment, plan in enumerate(record.segments)
            for index, declared in enumerate(plan.fragment_hashes)
            if declared == fragment_hash
        ]
        if not positions:
            raise NotFound(f"file {fid} declares no fragment {name}")
        segment, index = await self._entitled_position(
            record, fragment_hash, positions, order_id, signer
        )
        return TagRequest(
            fid=fid,
            fragment_hash=fragment_hash,
            segment=segment,
            fragment=index,
            size=self.layout.fragment_size(record.segments[segment]),
            signer=signer,
            order_id=order_id,
        )

    async def tag(self, request: TagRequest, data: bytes) -> bytes:
        """Checks 5 and 6: the fragment's tags (``block_count(size, s) * TAG_BYTES`` bytes).

        Raises:
            FragmentMismatch: the bytes are not the fragment.
        """
        name = request.fragment_hash.hex()
        if len(data) != request.size:
            raise FragmentMismatch(f"fragment {name} is {request.size} bytes, got {len(data)}")
        actual = await asyncio.to_thread(_sha256, data)
        if actual != request.fragment_hash:
            raise FragmentMismatch(f"the body hashes to {actual.hex()}, not to {name}")
        tags = await self.tagger.tag_bytes(data, request.fragment_hash)
        log_event(
            ROLE,
            "tags_served",
            fid=request.fid,
            fragment=name,
            to=request.signer.address,
            order=request.order_id,
        )
        return tags

    def _check_tag_key(self, record: FileRecord) -> None:
        if record.tagged:
            if record.tag_key_id != self.enclave.key_id:
                raise Forbidden(
                    f"file {record.fid} is tagged with tag key {record.tag_key_id.hex()}; "
                    f"this scheduler holds tag key {self.enclave.key_id.hex()}"
                )
        elif record.tagger != self.key.public_key:
            raise Forbidden(
                f"file {record.fid} is to be tagged by scheduler {address_of(record.tagger)}, "
                f"not by {self.key.address}"
            )

    async def _entitled_position(
        self,
        record: FileRecord,
        fragment_hash: bytes,
        positions: list[tuple[int, int]],
        order_id: int | None,
        signer: Signer,
    ) -> tuple[int, int]:
        """The (segment, fragment) the signer may have tagged: one it holds, or its order's."""
        for segment, index in positions:
            holders = record.holders[segment] if segment < len(record.holders) else []
            if index < len(holders) and holders[index] == signer.public_key:
                return segment, index
        what = f"fragment {fragment_hash.hex()} of file {record.fid}"
        if order_id is None:
            raise Forbidden(
                f"{signer.address} does not hold {what}; a restorer names its claimed restoral "
                f"order (order=<id>)"
            )
        order = await self._read_or_none(self.chain.reads.order, order_id)
        if order is None:
            raise Forbidden(f"no restoral order {order_id} on chain")
        if order.fid != record.fid or order.fragment_hash != fragment_hash:
            raise Forbidden(
                f"restoral order {order_id} is for fragment {order.fragment_hash.hex()} of file "
                f"{order.fid}, not for {what}"
            )
        if order.state != OrderState.CLAIMED or order.claimer != signer.public_key:
            raise Forbidden(f"restoral order {order_id} is not claimed by {signer.address}")
        if (order.segment, order.fragment) in positions:
            return order.segment, order.fragment
        return positions[0]

    async def _read_or_none(
        self, lookup: BoundLookup[P, R], *args: P.args, **kwargs: P.kwargs
    ) -> R | None:
        try:
            return await lookup(*args, **kwargs)
        except ClientError as exc:
            raise ServiceUnavailable(f"cannot read {lookup.path} from the chain: {exc}") from exc


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
