"""Storage deals: OPEN (declared) -> assigned to a random scheduler (ASSIGNED) -> SUCCESS.

Everything that moves a deal from state to state lives here, and ``ALLOWED_TRANSITIONS`` is the
only place the state rules are written; a deal is created OPEN by its declaration
(``deals.declare``: the checks, deduplication and the new deal are deoss.chain.modules.declare).
The owner's space, locked at declaration, is used at SUCCESS, released at FAILED. A deal
is reassigned on the declarer's (or owner's) request or when its deadline passes, and FAILED after
``max_deal_attempts`` assignments. A report must carry, for every segment, k + m receipts signed
by distinct, active miners with room for the fragment, each for this deal and its current
assignment (receipts are public once reported: bound to anything less, they would pass for a
later deal of the same fid, or a later assignment, and record fragments nobody stored).

Keys: ``deal/<id>`` -> Deal; ``deal-dl/<height><id>`` deadlines; ``deal-open/<id>`` deals
waiting for a scheduler; ``deal-fid/<fid>`` and ``deal-name/<owner><bucket>\\0<name>`` -> id of
the deal in progress; ``deal-seq`` the next id; ``deal-count/<state>`` counters.
"""

from __future__ import annotations

import enum

from msgspec.structs import replace

from deoss.chain.errors import BadReport, InvalidArgument, InvalidTransition, NotFound, Unauthorized
from deoss.chain.genesis import ChainParams
from deoss.chain.modules import buckets, files, miners, schedulers, space
from deoss.chain.params import load_params
from deoss.chain.query import QueryArgs, QueryHandler, encode_value
from deoss.chain.state import State, get_record, put_record
from deoss.chain.types import BlockContext, BlockEvents, Call, EventSink, PubKey, Sig64, TxContext
from deoss.core import codec
from deoss.core.codec import Record
from deoss.core.errors import DataPathError
from deoss.core.keys import address_of, verify
from deoss.core.layout import SegmentPlan

DEAL = b"deal/"
DEADLINE = b"deal-dl/"
OPEN_QUEUE = b"deal-open/"
BY_FID = b"deal-fid/"
BY_NAME = b"deal-name/"
SEQUENCE = b"deal-seq"
COUNT = b"deal-count/"
RECEIPT_DOMAIN = b"deoss-receipt-v2"


class DealState(enum.IntEnum):  # stored on chain: never renumber
    OPEN = 0
    ASSIGNED = 1
    SUCCESS = 2
    FAILED = 3


ALLOWED_TRANSITIONS: dict[DealState, frozenset[DealState]] = {
    DealState.OPEN: frozenset({DealState.ASSIGNED, DealState.FAILED}),
    DealState.ASSIGNED: frozenset({DealState.ASSIGNED, DealState.SUCCESS, DealState.FAILED}),
    DealState.SUCCESS: frozenset(),
    DealState.FAILED: frozenset(),
}


class Deal(Record):
    id: int
    owner: PubKey
    declarer: PubKey
    bucket: str
    name: str
    size: int
    fid: str
    segments: list[SegmentPlan]
    state: DealState
    deadline: int
    created_at: int
    scheduler: bytes = b""
    attempts: int = 0
    reason: str = ""


class DealCounts(Record):
    open: int = 0
    assigned: int = 0
    success: int = 0
    failed: int = 0


class Receipt(Record):
    """A miner's signature over a fragment it stored (see ``receipt_message``)."""

    miner: PubKey
    signature: Sig64


class ReceiptBody(Record):
    chain_id: str
    deal_id: int
    attempt: int
    fid: str
    segment: int
    fragment: int
    fragment_hash: bytes
    miner: PubKey


def receipt_message(
    chain_id: str,
    deal_id: int,
    attempt: int,
    fid: str,
    segment: int,
    fragment: int,
    fragment_hash: bytes,
    miner: bytes,
) -> bytes:
    """What a miner signs when it accepts a fragment for assignment ``attempt`` of a deal."""
    body = ReceiptBody(
        chain_id=chain_id,
        deal_id=deal_id,
        attempt=attempt,
        fid=fid,
        segment=segment,
        fragment=fragment,
        fragment_hash=fragment_hash,
        miner=miner,
    )
    return RECEIPT_DOMAIN + codec.encode(body)


def id_key(deal_id: int) -> bytes:
    return deal_id.to_bytes(8, "big")


def get_deal(state: State, deal_id: int) -> Deal | None:
    if not isinstance(deal_id, int) or not 0 <= deal_id < 2**63:
        raise InvalidArgument(f"deal id {deal_id!r} is out of range")
    return get_record(state, DEAL + id_key(deal_id), Deal)


def adjust_count(state: State, deal_state: DealState, delta: int) -> None:
    key = COUNT + bytes([deal_state])
    current = int.from_bytes(state.get(key) or b"\x00", "big")
    state.put(key, (current + delta).to_bytes(8, "big"))


def _transition(state: State, deal: Deal, new: DealState, **changes: object) -> Deal:
    if new not in ALLOWED_TRANSITIONS[deal.state]:
        raise InvalidTransition(f"deal {deal.id}: {deal.state.name} -> {new.name}")
    if new != deal.state:
        adjust_count(state, deal.state, -1)
        adjust_count(state, new, 1)
    updated = replace(deal, state=new, **changes)
    put_record(state, DEAL + id_key(deal.id), updated)
    return updated


def deal_timeout(params: ChainParams, segments: int) -> int:
    """Blocks a scheduler has for a deal: a base plus a share per segment, so that a large
    object is not timed out by a deadline sized for a small one."""
    return params.deal_timeout_blocks + segments * params.deal_blocks_per_segment


def name_key(owner: bytes, bucket: str, name: str) -> bytes:
    return BY_NAME + owner + bucket.encode() + b"\x00" + name.encode()


class ReassignDeal(Call, tag="deals.reassign"):
    deal_id: int
    # The assignment the sender gives up on (the deal's ``attempts``); None: whichever is
    # current. A stale one is refused, so a deal the chain already moved stays where it went.
    attempt: int | None = None


class ReportDeal(Call, tag="deals.report"):
    deal_id: int
    placements: list[list[Receipt]]


def _pick_scheduler(state: State, ctx: BlockContext, deal: Deal, exclude: bytes) -> bytes | None:
    active = schedulers.active_schedulers(state)
    candidates = [s for s in active if s != exclude] or active
    if not candidates:
        return None
    word = ctx.derive(b"assign", id_key(deal.id), deal.attempts.to_bytes(4, "big"))
    return candidates[int.from_bytes(word, "big") % len(candidates)]


def _assign(
    state: State, ctx: BlockContext, params: ChainParams, deal: Deal, events: EventSink
) -> bool:
    """Give the deal to a random active scheduler (another one if possible); False if none."""
    scheduler = _pick_scheduler(state, ctx, deal, deal.scheduler)
    if scheduler is None:
        return False
    state.delete(DEADLINE + deal.deadline.to_bytes(8, "big") + id_key(deal.id))
    deadline = ctx.height + deal_timeout(params, len(deal.segments))
    deal = _transition(
        state,
        deal,
        DealState.ASSIGNED,
        scheduler=scheduler,
        attempts=deal.attempts + 1,
        deadline=deadline,
    )
    state.put(DEADLINE + deadline.to_bytes(8, "big") + id_key(deal.id), b"")
    state.delete(OPEN_QUEUE + id_key(deal.id))
    events.emit(
        "deal.assigned",
        id=deal.id,
        fid=deal.fid,
        scheduler=address_of(scheduler),
        attempt=deal.attempts,
        deadline=deadline,
    )
    return True


def _close(state: State, deal: Deal) -> None:
    state.delete(DEADLINE + deal.deadline.to_bytes(8, "big") + id_key(deal.id))
    state.delete(OPEN_QUEUE + id_key(deal.id))
    state.delete(BY_FID + bytes.fromhex(deal.fid))
    state.delete(name_key(deal.owner, deal.bucket, deal.name))
    buckets.adjust(state, deal.owner, deal.bucket, pending=-1)


def _fail(state: State, deal: Deal, reason: str, events: EventSink) -> None:
    _close(state, deal)
    space.unlock(state, deal.owner, deal.size)
    _transition(state, deal, DealState.FAILED, reason=reason)
    events.emit("deal.failed", id=deal.id, fid=deal.fid, reason=reason)


def _retry(
    state: State, ctx: BlockContext, params: ChainParams, deal: Deal, why: str, events: EventSink
) -> None:
    """Reassign, or fail after the last attempt."""
    if deal.attempts >= params.max_deal_attempts:
        _fail(state, deal, f"{why} after {deal.attempts} attempts", events)
    elif not _assign(state, ctx, params, deal, events):
        _fail(state, deal, "no active scheduler", events)


def apply_reassign(state: State, ctx: TxContext, call: ReassignDeal) -> None:
    """The declarer (or owner) asks for another scheduler, e.g. when the assigned one is down."""
    deal = get_deal(state, call.deal_id)
    if deal is None:
        raise NotFound(f"no deal {call.deal_id}")
    if ctx.sender not in (deal.declarer, deal.owner):
        raise Unauthorized(f"only the declarer or owner may reassign deal {deal.id}")
    if deal.state != DealState.ASSIGNED:
        raise InvalidTransition(f"deal {deal.id} is {deal.state.name}, not ASSIGNED")
    if call.attempt is not None and call.attempt != deal.attempts:
        raise InvalidTransition(
            f"deal {deal.id} is at assignment {deal.attempts}, not {call.attempt}: "
            "it was reassigned already"
        )
    _retry(state, ctx.block, load_params(state), deal, "reassigned on request", ctx)


def _check_placements(
    state: State, params: ChainParams, chain_id: str, deal: Deal, placements: list[list[Receipt]]
) -> dict[bytes, int]:
    """Raises BadReport on any broken rule; returns bytes to add per miner."""
    n = params.layout.total_shards
    if len(placements) != len(deal.segments):
        raise BadReport(f"{len(placements)} placements for {len(deal.segments)} segments")
    load: dict[bytes, int] = {}
    for segment, receipts in zip(deal.segments, placements, strict=True):
        if len(receipts) != n:
            raise BadReport(f"segment {segment.index}: {len(receipts)} receipts, {n} needed")
        if len({r.miner for r in receipts}) != n:
            raise BadReport(f"segment {segment.index}: fragments must be on {n} distinct miners")
        size = params.layout.fragment_size(segment)
        for index, receipt in enumerate(receipts):
            miner = miners.get_miner(state, receipt.miner)
            who = address_of(receipt.miner)
            if miner is None or not miners.is_accepting(state, miner):
                raise BadReport(
                    f"segment {segment.index} fragment {index}: {who} is not an active miner"
                )
            message = receipt_message(
                chain_id,
                deal.id,
                deal.attempts,
                deal.fid,
                segment.index,
                index,
                segment.fragment_hashes[index],
                receipt.miner,
            )
            try:
                verify(receipt.miner, message, receipt.signature)
            except DataPathError as exc:
                raise BadReport(
                    f"segment {segment.index} fragment {index}: receipt of {who} does not verify "
                    f"for deal {deal.id} assignment {deal.attempts}"
                ) from exc
            load[receipt.miner] = load.get(receipt.miner, 0) + size
    for pubkey, needed in load.items():
        miner = miners.get_miner(state, pubkey)
        if miner is not None and miner.idle_bytes < needed:
            raise BadReport(
                f"miner {address_of(pubkey)} has {miner.idle_bytes} idle bytes, {needed} needed"
            )
    return load


def apply_report(state: State, ctx: TxContext, call: ReportDeal) -> None:
    """The assigned scheduler reports where every fragment is; the deal becomes a file.

    Raises:
        NotFound, Unauthorized (not the assigned scheduler), InvalidTransition (not ASSIGNED),
        BadReport (a receipt or placement rule).
    """
    deal = get_deal(state, call.deal_id)
    if deal is None:
        raise NotFound(f"no deal {call.deal_id}")
    if deal.state != DealState.ASSIGNED:
        raise InvalidTransition(f"deal {deal.id} is {deal.state.name}, not ASSIGNED")
    if ctx.sender != deal.scheduler:
        raise Unauthorized(f"deal {deal.id} is assigned to {address_of(deal.scheduler)}")
    params = load_params(state)
    _check_placements(state, params, ctx.block.chain_id, deal, call.placements)
    holders = [[r.miner for r in receipts] for receipts in call.placements]
    files.store_file(state, ctx.block, deal.fid, deal.segments, holders, ctx.sender)
    _close(state, deal)
    space.use_locked(state, deal.owner, deal.size)
    files.add_object(
        state, ctx.block.height, deal.owner, deal.bucket, deal.name, deal.fid, deal.size
    )
    _transition(state, deal, DealState.SUCCESS)
    ctx.emit(
        "deal.success",
        id=deal.id,
        fid=deal.fid,
        owner=address_of(deal.owner),
        bucket=deal.bucket,
        name=deal.name,
        scheduler=ctx.sender_address,
    )


def retry_overdue_deals(
    state: State, ctx: BlockContext, params: ChainParams, events: BlockEvents
) -> None:
    """Block step: deals at or past their deadline are reassigned, or FAILED after the last
    attempt (an OPEN deal nobody took fails at once)."""
    for key, _ in state.iter_prefix(DEADLINE):
        if int.from_bytes(key[len(DEADLINE) : len(DEADLINE) + 8], "big") > ctx.height:
            break
        deal = get_record(state, DEAL + key[len(DEADLINE) + 8 :], Deal)
        if deal is None or deal.state not in (DealState.OPEN, DealState.ASSIGNED):
            state.delete(key)
            continue
        if deal.state == DealState.OPEN:
            _fail(state, deal, "no scheduler before the deadline", events)
        else:
            _retry(state, ctx, params, deal, "deadline passed", events)


def assign_open_deals(
    state: State, ctx: BlockContext, params: ChainParams, events: BlockEvents
) -> None:
    """Block step: assign the deals declared in this block (and any still waiting for a
    scheduler) to a scheduler drawn from the block seed."""
    for key, _ in list(state.iter_prefix(OPEN_QUEUE)):
        deal = get_record(state, DEAL + key[len(OPEN_QUEUE) :], Deal)
        if deal is not None and deal.state == DealState.OPEN:
            _assign(state, ctx, params, deal, events)


def query_deal(state: State, args: QueryArgs) -> bytes:
    deal = get_deal(state, args.id)
    if deal is None:
        raise NotFound(f"no deal {args.id}")
    return encode_value(deal)


def query_counts(state: State, args: QueryArgs) -> bytes:
    def read(s: DealState) -> int:
        return int.from_bytes(state.get(COUNT + bytes([s])) or b"\x00", "big")

    return encode_value(
        DealCounts(
            open=read(DealState.OPEN),
            assigned=read(DealState.ASSIGNED),
            success=read(DealState.SUCCESS),
            failed=read(DealState.FAILED),
        )
    )


HANDLERS = {ReassignDeal: apply_reassign, ReportDeal: apply_report}
QUERIES: dict[str, QueryHandler] = {"deal": query_deal, "counts": query_counts}
