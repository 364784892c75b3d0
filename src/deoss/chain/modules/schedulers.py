"""Schedulers: staked nodes that check, code, tag and place uploads.

A scheduler registers with a stake, an endpoint and its PoDR² tag public key, which must carry a
valid proof of possession and the chain's sectors-per-block; the key id is unique on chain.
Keys: ``sched/<scheduler>`` -> Scheduler; ``sched-key/<key id>`` -> scheduler public key.

There is no call that removes a scheduler or changes its tag key: a scheduler that stops for
good keeps its record, so the public key of every tag key id stays readable
(``/schedulers/tag_key``) for as long as files tagged with it live. The audit verifies proofs
with the same mapping; a future exit or key rotation must keep it for such files.
"""

from __future__ import annotations

from msgspec.structs import replace

from deoss.chain.errors import AlreadyExists, InvalidArgument, NotFound
from deoss.chain.modules import accounts
from deoss.chain.modules.gateways import check_endpoint
from deoss.chain.params import load_params
from deoss.chain.query import QueryArgs, QueryHandler, address_arg, encode_value
from deoss.chain.state import State, get_record, put_record
from deoss.chain.types import Call, TxContext
from deoss.core.codec import Record
from deoss.core.errors import DataPathError
from deoss.core.keys import address_of
from deoss.core.podr2 import TagPublicKey

PREFIX = b"sched/"
KEYS = b"sched-key/"


class Scheduler(Record):
    endpoint: str
    stake: int
    tag_key: TagPublicKey
    registered_at: int
    penalties: int = 0


class SchedulerEntry(Record):
    address: str
    endpoint: str
    stake: int
    penalties: int


def get_scheduler(state: State, pubkey: bytes) -> Scheduler | None:
    return get_record(state, PREFIX + pubkey, Scheduler)


def tag_key_by_id(state: State, key_id: bytes) -> TagPublicKey | None:
    owner = state.get(KEYS + key_id)
    if owner is None:
        return None
    scheduler = get_scheduler(state, owner)
    return scheduler.tag_key if scheduler else None


def active_schedulers(state: State) -> list[bytes]:
    """Schedulers whose stake still meets the minimum, in key order."""
    minimum = load_params(state).scheduler_min_stake
    out = []
    for key, _ in state.iter_prefix(PREFIX):
        scheduler = get_record(state, key, Scheduler)
        if scheduler is not None and scheduler.stake >= minimum:
            out.append(key[len(PREFIX) :])
    return out


def penalize(state: State, pubkey: bytes, amount: int) -> int:
    """Take up to ``amount`` of a scheduler's stake into the treasury; returns what was taken."""
    scheduler = get_scheduler(state, pubkey)
    if scheduler is None:
        return 0
    taken = min(amount, scheduler.stake)
    put_record(
        state,
        PREFIX + pubkey,
        replace(scheduler, stake=scheduler.stake - taken, penalties=scheduler.penalties + 1),
    )
    accounts.treasury_credit(state, taken)
    return taken


class RegisterScheduler(Call, tag="schedulers.register"):
    endpoint: str
    stake: int
    tag_key: TagPublicKey


class UpdateScheduler(Call, tag="schedulers.update"):
    endpoint: str


def apply_register(state: State, ctx: TxContext, call: RegisterScheduler) -> None:
    """Register the sender as a scheduler, moving ``stake`` from its balance.

    Raises:
        AlreadyExists, InvalidArgument (endpoint, stake, key), InsufficientFunds.
    """
    if get_scheduler(state, ctx.sender) is not None:
        raise AlreadyExists("the sender is already a scheduler; use schedulers.update")
    check_endpoint(call.endpoint)
    params = load_params(state)
    accounts.check_amount(call.stake, "stake")
    if call.stake < params.scheduler_min_stake:
        raise InvalidArgument(
            f"stake {call.stake} is below the minimum {params.scheduler_min_stake}"
        )
    if call.tag_key.sectors_per_block != params.podr2.sectors_per_block:
        raise InvalidArgument(
            f"tag key has {call.tag_key.sectors_per_block} sectors per block, "
            f"the chain uses {params.podr2.sectors_per_block}"
        )
    try:
        call.tag_key.verify_possession()
    except DataPathError as exc:
        raise InvalidArgument(f"tag key: {exc}") from exc
    key_id = call.tag_key.key_id
    if state.get(KEYS + key_id) is not None:
        raise AlreadyExists("this tag key is already registered by another scheduler")
    accounts.debit(state, ctx.sender, call.stake, "scheduler stake")
    put_record(
        state,
        PREFIX + ctx.sender,
        Scheduler(
            endpoint=call.endpoint,
            stake=call.stake,
            tag_key=call.tag_key,
            registered_at=ctx.block.height,
        ),
    )
    state.put(KEYS + key_id, ctx.sender)
    ctx.emit(
        "scheduler.registered",
        scheduler=ctx.sender_address,
        endpoint=call.endpoint,
        key_id=key_id.hex(),
    )


def apply_update(state: State, ctx: TxContext, call: UpdateScheduler) -> None:
    scheduler = get_scheduler(state, ctx.sender)
    if scheduler is None:
        raise NotFound("the sender is not a scheduler")
    check_endpoint(call.endpoint)
    put_record(state, PREFIX + ctx.sender, replace(scheduler, endpoint=call.endpoint))
    ctx.emit("scheduler.updated", scheduler=ctx.sender_address, endpoint=call.endpoint)


def query_scheduler(state: State, args: QueryArgs) -> bytes:
    scheduler = get_scheduler(state, address_arg(args.address))
    if scheduler is None:
        raise NotFound(f"{args.address} is not a scheduler")
    return encode_value(scheduler)


def query_tag_key(state: State, args: QueryArgs) -> bytes:
    """The registered tag public key with id ``key_id`` (hex), whoever registered it."""
    try:
        key_id = bytes.fromhex(args.key_id)
    except ValueError as exc:
        raise InvalidArgument(f"key_id {args.key_id[:80]!r} is not hexadecimal") from exc
    if len(key_id) != 32:
        raise InvalidArgument(f"key_id must be 32 bytes (64 hex digits), got {len(key_id)}")
    public = tag_key_by_id(state, key_id)
    if public is None:
        raise NotFound(f"no registered tag key {args.key_id}")
    return encode_value(public)


def query_list(state: State, args: QueryArgs) -> bytes:
    entries = []
    for key, _ in state.iter_prefix(PREFIX):
        s = get_record(state, key, Scheduler)
        if s is not None:
            entries.append(
                SchedulerEntry(
                    address=address_of(key[len(PREFIX) :]),
                    endpoint=s.endpoint,
                    stake=s.stake,
                    penalties=s.penalties,
                )
            )
    return encode_value(entries)


HANDLERS = {RegisterScheduler: apply_register, UpdateScheduler: apply_update}
QUERIES: dict[str, QueryHandler] = {
    "scheduler": query_scheduler,
    "list": query_list,
    "tag_key": query_tag_key,
}
