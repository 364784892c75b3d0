"""Restoral: rebuilding the fragments of faulty or exiting miners, and reported losses.

An order names one fragment (fid, segment, fragment) and the miner that held it. Any active
miner that holds no other fragment of that segment and has room may claim it; it must complete
by its deadline height, naming the rebuilt fragment's hash (checked against the declaration), or
the order opens again. Completion moves the placement to the new holder. Exiting miners get
orders for everything they hold and leave (stake returned) once nothing is left.

Keys: ``order/<id>`` -> Order; ``order-frag/<fid><segment:4><fragment:2>`` -> id;
``order-dl/<height><id>`` claim deadlines; ``order-seq`` the next id.
"""

from __future__ import annotations

import enum

from msgspec.structs import replace

from deoss.chain.errors import BadReport, InvalidTransition, NotFound, Unauthorized
from deoss.chain.modules import accounts, files, holdings, miners
from deoss.chain.params import load_params
from deoss.chain.query import QueryArgs, QueryHandler, encode_value, page_limit
from deoss.chain.state import State, get_record, put_record
from deoss.chain.types import BlockContext, BlockEvents, Call, EventSink, Hash32, PubKey, TxContext
from deoss.core import codec
from deoss.core.codec import Record
from deoss.core.keys import address_of

ORDER = b"order/"
BY_FRAGMENT = b"order-frag/"
DEADLINE = b"order-dl/"
SEQUENCE = b"order-seq"

REPORTED_LOSS = "reported loss"
TAGS_UNCONFIRMED = "tags unconfirmed"


class OrderState(enum.IntEnum):  # stored on chain: never renumber
    OPEN = 0
    CLAIMED = 1


class Order(Record):
    id: int
    fid: str
    segment: int
    fragment: int
    fragment_hash: Hash32
    size: int
    former: PubKey
    reason: str
    created_at: int
    state: OrderState = OrderState.OPEN
    claimer: bytes = b""
    deadline: int = 0


def _fragment_key(fid: str, segment: int, fragment: int) -> bytes:
    return (
        BY_FRAGMENT + bytes.fromhex(fid) + segment.to_bytes(4, "big") + fragment.to_bytes(2, "big")
    )


def reported_lost(state: State, holding: holdings.Holding, miner: bytes) -> bool:
    """Has ``miner`` reported this fragment lost (its order still open or claimed)?

    Audit leaves such fragments out of the miner's challenges: the chain already knows they are
    gone, and repair, not slashing, is the answer to an honest report.
    """
    raw = state.get(_fragment_key(holding.fid, holding.segment, holding.fragment))
    if raw is None:
        return False
    order = get_order(state, int.from_bytes(raw, "big"))
    return order is not None and order.former == miner and order.reason == REPORTED_LOSS


def order_for(state: State, holding: holdings.Holding) -> Order | None:
    """The pending order (open or claimed) for this fragment, if any."""
    raw = state.get(_fragment_key(holding.fid, holding.segment, holding.fragment))
    return None if raw is None else get_order(state, int.from_bytes(raw, "big"))


def get_order(state: State, order_id: int) -> Order | None:
    if not isinstance(order_id, int) or not 0 <= order_id < 2**63:
        return None
    return get_record(state, ORDER + order_id.to_bytes(8, "big"), Order)


def _put(state: State, order: Order) -> None:
    put_record(state, ORDER + order.id.to_bytes(8, "big"), order)


def _delete(state: State, order: Order) -> None:
    state.delete(ORDER + order.id.to_bytes(8, "big"))
    state.delete(_fragment_key(order.fid, order.segment, order.fragment))
    if order.state == OrderState.CLAIMED:
        state.delete(DEADLINE + order.deadline.to_bytes(8, "big") + order.id.to_bytes(8, "big"))


def create_order(
    state: State,
    height: int,
    holding: holdings.Holding,
    former: bytes,
    reason: str,
    events: EventSink,
) -> None:
    """Open an order for one fragment, unless one exists already."""
    key = _fragment_key(holding.fid, holding.segment, holding.fragment)
    if state.get(key) is not None:
        return
    order_id = int.from_bytes(state.get(SEQUENCE) or b"\x00", "big")
    state.put(SEQUENCE, (order_id + 1).to_bytes(8, "big"))
    _put(
        state,
        Order(
            id=order_id,
            fid=holding.fid,
            segment=holding.segment,
            fragment=holding.fragment,
            fragment_hash=holding.fragment_hash,
            size=holding.size,
            former=former,
            reason=reason,
            created_at=height,
        ),
    )
    state.put(key, order_id.to_bytes(8, "big"))
    events.emit(
        "restoral.order",
        id=order_id,
        fid=holding.fid,
        segment=holding.segment,
        fragment=holding.fragment,
        former=address_of(former),
        reason=reason,
    )


def create_orders_for_miner(
    state: State, height: int, miner: bytes, reason: str, events: EventSink
) -> None:
    for holding in list(holdings.holdings_of(state, miner)):
        create_order(state, height, holding, miner, reason, events)


class ReportLoss(Call, tag="restoral.report_loss"):
    fid: str
    segment: int
    fragment: int


class ClaimOrder(Call, tag="restoral.claim"):
    order_id: int


class CompleteOrder(Call, tag="restoral.complete"):
    order_id: int
    fragment_hash: Hash32
    # the tag key whose tags the restorer checked and stored (empty: the file was not tagged
    # when it rebuilt): on a file tagged with that key, completing confirms the tags
    tag_key_id: bytes = b""


def apply_report_loss(state: State, ctx: TxContext, call: ReportLoss) -> None:
    """A miner reports that it lost or found corrupted a fragment it holds."""
    raw = (
        state.get(holdings.hold_key(ctx.sender, call.fid, call.segment, call.fragment))
        if (
            isinstance(call.segment, int)
            and isinstance(call.fragment, int)
            and 0 <= call.segment < 2**32
            and 0 <= call.fragment < 2**16
            and files.fid_key(call.fid)
        )
        else None
    )
    if raw is None:
        raise NotFound("the sender holds no such fragment")
    holding = codec.decode(raw, holdings.Holding)
    create_order(state, ctx.block.height, holding, ctx.sender, REPORTED_LOSS, ctx)


def _require(state: State, order_id: int) -> Order:
    order = get_order(state, order_id)
    if order is None:
        raise NotFound(f"no restoral order {order_id}")
    return order


def apply_claim(state: State, ctx: TxContext, call: ClaimOrder) -> None:
    """An active miner with room, holding no fragment of the segment, takes the order."""
    order = _require(state, call.order_id)
    if order.state != OrderState.OPEN:
        raise InvalidTransition(f"order {order.id} is already claimed")
    miner = miners.require_miner(state, ctx.sender)
    if not miners.is_accepting(state, miner):
        raise Unauthorized("only an active miner may claim restoral orders")
    record = files.get_file(state, order.fid)
    if record is None:
        raise NotFound(f"file {order.fid} no longer exists")
    if ctx.sender in record.holders[order.segment]:
        raise Unauthorized(f"the sender already holds a fragment of segment {order.segment}")
    if miner.idle_bytes < order.size:
        raise BadReport(f"the miner has {miner.idle_bytes} idle bytes, {order.size} needed")
    deadline = ctx.block.height + load_params(state).restoral_deadline_blocks
    _put(state, replace(order, state=OrderState.CLAIMED, claimer=ctx.sender, deadline=deadline))
    state.put(DEADLINE + deadline.to_bytes(8, "big") + order.id.to_bytes(8, "big"), b"")
    miners.add_locked(state, ctx.sender, order.size)
    ctx.emit("restoral.claimed", id=order.id, miner=ctx.sender_address, deadline=deadline)


def apply_complete(state: State, ctx: TxContext, call: CompleteOrder) -> None:
    """The claimer rebuilt the fragment: it becomes the holder (its signature is the tx's)."""
    order = _require(state, call.order_id)
    if order.state != OrderState.CLAIMED or order.claimer != ctx.sender:
        raise Unauthorized(f"order {order.id} is not claimed by the sender")
    if ctx.block.height > order.deadline:
        raise InvalidTransition(f"order {order.id} expired at height {order.deadline}")
    if call.fragment_hash != order.fragment_hash:
        raise BadReport(
            f"fragment hash {call.fragment_hash.hex()} is not the declared "
            f"{order.fragment_hash.hex()}"
        )
    record = files.get_file(state, order.fid)
    if record is None or record.holders[order.segment][order.fragment] != order.former:
        raise NotFound(f"fragment of order {order.id} is no longer held by the former miner")
    segment = record.segments[order.segment]
    holdings.drop_holding(state, order.former, order.fid, order.segment, order.fragment, order.size)
    miners.add_locked(state, ctx.sender, -order.size)
    confirmed = record.tagged and call.tag_key_id == record.tag_key_id
    due = ctx.block.height + load_params(state).tag_confirm_blocks
    holdings.set_holding(
        state,
        ctx.sender,
        order.fid,
        segment,
        order.fragment,
        order.size,
        tags_confirmed=confirmed,
        confirm_due=due if record.tagged and not confirmed else 0,
    )
    holders = [list(row) for row in record.holders]
    holders[order.segment][order.fragment] = ctx.sender
    files.put_file(state, replace(record, holders=holders))
    _delete(state, order)
    ctx.emit(
        "restoral.completed",
        id=order.id,
        fid=order.fid,
        segment=order.segment,
        fragment=order.fragment,
        miner=ctx.sender_address,
        former=address_of(order.former),
        tags_confirmed=confirmed,
    )


def release_unconfirmed_holdings_due(state: State, height: int, events: EventSink) -> None:
    """Block step: holdings of tagged files whose holder did not confirm its tags by their due
    height are released (no service space, never challenged) and rebuilt elsewhere, as a lost
    fragment: without the confirmation the holder could keep the space and never be audited."""
    for miner, holding in holdings.take_unconfirmed_holdings_due(state, height):
        holdings.drop_holding(
            state, miner, holding.fid, holding.segment, holding.fragment, holding.size
        )
        create_order(state, height, holding, miner, TAGS_UNCONFIRMED, events)


def reopen_expired_claims(state: State, ctx: BlockContext, events: BlockEvents) -> None:
    """Block step: claims past their deadline open again (the claimer's locked space is
    freed); a claim may still complete at its deadline height, so only earlier ones reopen."""
    for key, _ in state.iter_prefix(DEADLINE):
        if int.from_bytes(key[len(DEADLINE) : len(DEADLINE) + 8], "big") >= ctx.height:
            break
        state.delete(key)
        order = get_order(state, int.from_bytes(key[len(DEADLINE) + 8 :], "big"))
        if order is None or order.state != OrderState.CLAIMED:
            continue
        miners.add_locked(state, order.claimer, -order.size)
        _put(state, replace(order, state=OrderState.OPEN, claimer=b"", deadline=0))
        events.emit("restoral.expired", id=order.id, miner=address_of(order.claimer))


def cancel_orders_of_deleted_files(state: State, events: BlockEvents) -> None:
    """Block step: orders for fragments of files deleted in this block (``files.GONE``, by
    ``files.delete`` or the expiry purge) are cancelled; claimers get their locked space back."""
    for gone, _ in list(state.iter_prefix(files.GONE)):
        state.delete(gone)
        for _, raw_id in list(state.iter_prefix(BY_FRAGMENT + gone[len(files.GONE) :])):
            order = get_order(state, int.from_bytes(raw_id, "big"))
            if order is None:
                continue
            if order.state == OrderState.CLAIMED:
                miners.add_locked(state, order.claimer, -order.size)
            _delete(state, order)
            events.emit("restoral.cancelled", id=order.id)


def advance_exiting_miners(state: State, ctx: BlockContext, events: BlockEvents) -> None:
    """Block step: an exiting miner that still holds or has claimed something gets orders
    for all it holds; one with nothing left exits and its stake returns."""
    for pubkey, miner in miners.all_miners(state):
        if miner.state != miners.MinerState.EXITING:
            continue
        if miner.service_bytes or miner.locked_bytes:
            create_orders_for_miner(state, ctx.height, pubkey, "miner exit", events)
            continue
        accounts.credit(state, pubkey, miner.stake)
        miners.transition(state, pubkey, miner, miners.MinerState.EXITED, stake=0)
        events.emit("miner.exited", miner=address_of(pubkey), stake_returned=miner.stake)


def query_order(state: State, args: QueryArgs) -> bytes:
    return encode_value(_require(state, args.id))


def query_orders(state: State, args: QueryArgs) -> bytes:
    limit = page_limit(args)
    out = []
    for key, _ in state.iter_prefix(ORDER):
        order = get_record(state, key, Order)
        if order is not None and order.id >= args.id:
            out.append(order)
            if len(out) == limit:
                break
    return encode_value(out)


HANDLERS = {ReportLoss: apply_report_loss, ClaimOrder: apply_claim, CompleteOrder: apply_complete}
QUERIES: dict[str, QueryHandler] = {"order": query_order, "orders": query_orders}
