"""Declaring an upload (``deals.declare``): the checks, then a new OPEN deal or a shared file.

A declaration is checked against the layout (segment count, sizes, k + m fragment hashes each)
and the fid must be the Merkle root of the declared segment hashes. The owner's space is locked
at declaration (the deal's lifecycle, deoss.chain.modules.deals, uses it at SUCCESS and releases
it at FAILED). A fid that is already stored is deduplicated at once (no deal; the object points
at the file), and such a declaration must describe the stored file segment by segment.

The call keeps its ``deals.`` tag (the wire format): it is registered right before
deoss.chain.modules.deals (deoss.chain.calls), where it stood first.
"""

from __future__ import annotations

from dataclasses import dataclass

from deoss.chain.errors import AlreadyExists, InvalidArgument
from deoss.chain.genesis import ChainParams
from deoss.chain.modules import buckets, files, space
from deoss.chain.modules.deals import (
    BY_FID,
    DEADLINE,
    DEAL,
    OPEN_QUEUE,
    SEQUENCE,
    Deal,
    DealState,
    adjust_count,
    deal_timeout,
    id_key,
    name_key,
)
from deoss.chain.modules.gateways import acting_owner
from deoss.chain.params import load_params
from deoss.chain.query import QueryHandler
from deoss.chain.state import State, put_record
from deoss.chain.types import Call, TxContext
from deoss.core.errors import DataPathError
from deoss.core.keys import address_of
from deoss.core.layout import LayoutParams, SegmentPlan, padded_size, segment_count, segment_span
from deoss.core.merkle import compute_fid


def check_declaration(
    layout: LayoutParams, size: int, fid: str, segments: list[SegmentPlan]
) -> None:
    """Raises InvalidArgument unless the segments are exactly those of a ``size``-byte object
    under ``layout`` and ``fid`` is the Merkle root of their hashes."""
    if not isinstance(size, int) or size < 0 or size >= 2**63:
        raise InvalidArgument(f"size must be a non-negative integer, got {size!r}")
    expected = segment_count(size, layout)
    if len(segments) != expected:
        raise InvalidArgument(
            f"a {size}-byte object has {expected} segments, {len(segments)} declared"
        )
    for index, segment in enumerate(segments):
        _, held = segment_span(index, size, layout)
        if segment.index != index or segment.size != held:
            raise InvalidArgument(f"segment {index}: index/size must be {index}/{held}")
        if segment.padded_size != padded_size(held, layout):
            raise InvalidArgument(
                f"segment {index}: padded size must be {padded_size(held, layout)}"
            )
        if len(segment.fragment_hashes) != layout.total_shards:
            raise InvalidArgument(
                f"segment {index}: {len(segment.fragment_hashes)} fragment "
                f"hashes, {layout.total_shards} expected"
            )
    try:
        root = compute_fid([s.hash for s in segments])
    except DataPathError as exc:
        raise InvalidArgument(str(exc)) from exc
    if root != fid:
        raise InvalidArgument(
            f"fid {fid} is not the Merkle root of the declared segment hashes ({root})"
        )


def check_same_file(fid: str, stored: list[SegmentPlan], declared: list[SegmentPlan]) -> None:
    """Raises InvalidArgument unless a declaration of stored ``fid`` describes its segments: the
    fid covers segment hashes only, so sizes and fragment hashes must be compared here.

    Only the last segment's size may differ, within its padding (the same padded segment, so
    the same fragments): the same object with trailing zeros there has the same fid.
    """
    if len(declared) != len(stored):
        raise InvalidArgument(
            f"fid {fid} is stored with {len(stored)} segments, {len(declared)} declared"
        )
    for mine, theirs in zip(declared, stored, strict=True):
        where = f"fid {fid} segment {mine.index}"
        # segment hashes are equal already: the fid is their root
        if mine.padded_size != theirs.padded_size:
            raise InvalidArgument(
                f"{where} is stored padded to {theirs.padded_size} bytes, "
                f"{mine.padded_size} declared"
            )
        if mine.size != theirs.size and mine.index != len(stored) - 1:
            raise InvalidArgument(
                f"{where} is stored with {theirs.size} bytes, {mine.size} declared"
            )
        for index, (ours, stored_hash) in enumerate(
            zip(mine.fragment_hashes, theirs.fragment_hashes, strict=True)
        ):
            if ours != stored_hash:
                raise InvalidArgument(
                    f"{where} fragment {index} is stored as {stored_hash.hex()}, "
                    f"{ours.hex()} declared"
                )


class DeclareDeal(Call, tag="deals.declare"):
    bucket: str
    name: str
    size: int
    fid: str
    segments: list[SegmentPlan]
    owner: str = ""


@dataclass(frozen=True)
class CheckedDeclaration:
    """What the checks of a declaration found, for its mutation phase."""

    owner: bytes
    fid_raw: bytes
    params: ChainParams
    deduplicates: bool  # the fid is stored already: the object shares that file, no deal


def check_declare(state: State, ctx: TxContext, call: DeclareDeal) -> CheckedDeclaration:
    """The checks of ``deals.declare``: reads only, and raises the first rule the call breaks,
    in this order (the order decides which error a call breaking several rules gets).

    Raises:
        Unauthorized, NotFound (bucket), InvalidArgument (name, layout, fid, a stored fid
        declared with other sizes or fragment hashes), AlreadyExists (object or deal in
        progress), InsufficientSpace.
    """
    owner = acting_owner(state, ctx, call.owner)
    buckets.require_bucket(state, owner, call.bucket)
    files.check_object_name(call.name)
    fid_raw = files.fid_key(call.fid)
    params = load_params(state)
    check_declaration(params.layout, call.size, call.fid, call.segments)
    if files.get_object(state, owner, call.bucket, call.name) is not None:
        raise AlreadyExists(
            f"object {call.name!r} exists in bucket {call.bucket!r}; delete it first"
        )
    pending = state.get(name_key(owner, call.bucket, call.name))
    if pending is not None:
        raise AlreadyExists(f"deal {int.from_bytes(pending, 'big')} for this name is in progress")
    stored = files.get_file(state, call.fid)
    if stored is not None:
        check_same_file(call.fid, stored.segments, call.segments)
    else:
        in_progress = state.get(BY_FID + fid_raw)
        if in_progress is not None:
            raise AlreadyExists(
                f"deal {int.from_bytes(in_progress, 'big')} for fid {call.fid} is in "
                "progress; declare again after it completes to share its storage"
            )
    # a deduplicated object is charged its size, which matching segments make the file's (up
    # to padding); a new deal locks it
    space.require_room(state, owner, call.size)
    return CheckedDeclaration(
        owner=owner, fid_raw=fid_raw, params=params, deduplicates=stored is not None
    )


def apply_declare(state: State, ctx: TxContext, call: DeclareDeal) -> None:
    """Declare an upload for the owner (the sender or a user who authorized it): the checks
    (``check_declare``), then the writes, which refuse nothing."""
    checked = check_declare(state, ctx, call)
    if checked.deduplicates:
        _add_deduplicated_object(state, ctx, call, checked.owner)
    else:
        _open_deal(state, ctx, call, checked)


def _add_deduplicated_object(state: State, ctx: TxContext, call: DeclareDeal, owner: bytes) -> None:
    space.use_direct(state, owner, call.size)
    files.add_object(state, ctx.block.height, owner, call.bucket, call.name, call.fid, call.size)
    ctx.emit(
        "deal.deduplicated",
        owner=address_of(owner),
        bucket=call.bucket,
        name=call.name,
        fid=call.fid,
    )


def _open_deal(
    state: State, ctx: TxContext, call: DeclareDeal, checked: CheckedDeclaration
) -> None:
    owner, fid_raw, params = checked.owner, checked.fid_raw, checked.params
    space.lock(state, owner, call.size)
    buckets.adjust(state, owner, call.bucket, pending=1)
    deal_id = int.from_bytes(state.get(SEQUENCE) or b"\x00", "big")
    state.put(SEQUENCE, (deal_id + 1).to_bytes(8, "big"))
    deadline = ctx.block.height + deal_timeout(params, len(call.segments))
    deal = Deal(
        id=deal_id,
        owner=owner,
        declarer=ctx.sender,
        bucket=call.bucket,
        name=call.name,
        size=call.size,
        fid=call.fid,
        segments=call.segments,
        state=DealState.OPEN,
        deadline=deadline,
        created_at=ctx.block.height,
    )
    put_record(state, DEAL + id_key(deal_id), deal)
    adjust_count(state, DealState.OPEN, 1)
    state.put(OPEN_QUEUE + id_key(deal_id), b"")
    state.put(DEADLINE + deadline.to_bytes(8, "big") + id_key(deal_id), b"")
    state.put(BY_FID + fid_raw, id_key(deal_id))
    state.put(name_key(owner, call.bucket, call.name), id_key(deal_id))
    ctx.emit(
        "deal.declared",
        id=deal_id,
        owner=address_of(owner),
        bucket=call.bucket,
        name=call.name,
        fid=call.fid,
        size=call.size,
    )


HANDLERS = {DeclareDeal: apply_declare}
QUERIES: dict[str, QueryHandler] = {}
