"""Storage miners: stake, declared capacity, the space they serve, and their state.

Space of a miner: ``capacity`` declared; ``service`` held for files; ``locked`` reserved by
restoral orders it claimed; idle = capacity - service - locked. States: ACTIVE (receives new
fragments), FAULTY (repeated failed or missed proofs; no new fragments, its fragments are
rebuilt elsewhere), EXITING (announced exit; fragments moved away), EXITED (stake returned).
Stake must cover ``stake_per_tib`` per started TiB of capacity (and the minimum).

``MINER_TRANSITIONS`` is the only place the state rules are written, and ``transition`` the only
way a miner's state changes (the calls and block steps that move it live in miners, audit and
restoral)::

    ACTIVE  -> FAULTY   audit: max_consecutive_faults faults in a row
    ACTIVE  -> EXITING  miners.exit
    FAULTY  -> ACTIVE   miners.recover (audit.apply_recover)
    FAULTY  -> EXITING  miners.exit
    EXITING -> EXITED   restoral.advance_exiting_miners: nothing held or claimed any more

FAULTY is not forever: ``miners.recover`` (handled in audit, which owns faults and needs the
restoral orders) brings a FAULTY miner back to ACTIVE once ``challenge_interval_blocks`` have
passed since it went FAULTY and its stake covers its capacity again (``miners.add_stake`` first).
It comes back holding nothing it held when it failed: every fragment with a restoral order naming
it as former holder stays ordered and is released (no longer counted in its service space nor
challenged); it is rebuilt elsewhere and the miner drops its copy on ``restoral.completed``.

Keys: ``miner/<miner>`` -> Miner.
"""

from __future__ import annotations

import enum

from msgspec.structs import replace

from deoss.chain.errors import AlreadyExists, InvalidArgument, InvalidTransition, NotFound
from deoss.chain.genesis import ChainParams, TiB
from deoss.chain.modules import accounts
from deoss.chain.modules.gateways import check_endpoint
from deoss.chain.params import load_params
from deoss.chain.query import QueryArgs, QueryHandler, address_arg, encode_value
from deoss.chain.state import State, get_record, put_record
from deoss.chain.types import Call, TxContext
from deoss.core.codec import Record
from deoss.core.keys import address_of

PREFIX = b"miner/"
MAX_CAPACITY = 1024 * TiB


class MinerState(enum.IntEnum):  # stored on chain: never renumber
    ACTIVE = 0
    FAULTY = 1
    EXITING = 2
    EXITED = 3


MINER_TRANSITIONS: dict[MinerState, frozenset[MinerState]] = {
    MinerState.ACTIVE: frozenset({MinerState.FAULTY, MinerState.EXITING}),
    MinerState.FAULTY: frozenset({MinerState.ACTIVE, MinerState.EXITING}),
    MinerState.EXITING: frozenset({MinerState.EXITED}),
    MinerState.EXITED: frozenset(),
}


class Miner(Record):
    endpoint: str
    stake: int
    capacity_bytes: int
    service_bytes: int = 0
    locked_bytes: int = 0
    state: MinerState = MinerState.ACTIVE
    consecutive_faults: int = 0
    total_faults: int = 0
    rewards: int = 0
    slashed: int = 0
    registered_at: int = 0
    faulty_at: int = 0  # height it last went FAULTY: the recovery cool-down counts from it

    @property
    def idle_bytes(self) -> int:
        return self.capacity_bytes - self.service_bytes - self.locked_bytes


class MinerEntry(Record):
    address: str
    miner: Miner


def required_stake(params: ChainParams, capacity_bytes: int) -> int:
    return max(params.miner_min_stake, -(-capacity_bytes // TiB) * params.stake_per_tib)


def get_miner(state: State, pubkey: bytes) -> Miner | None:
    return get_record(state, PREFIX + pubkey, Miner)


def put_miner(state: State, pubkey: bytes, miner: Miner) -> None:
    put_record(state, PREFIX + pubkey, miner)


def require_miner(state: State, pubkey: bytes) -> Miner:
    miner = get_miner(state, pubkey)
    if miner is None:
        raise NotFound(f"{address_of(pubkey)} is not a miner")
    return miner


def accepts_fragments(miner: Miner, params: ChainParams) -> bool:
    """May this miner receive new fragments or claim restoral orders? ACTIVE, with the stake
    its capacity requires (slashes can take it under). The one rule: the chain, the schedulers'
    placement and the miners' repairers all ask it."""
    return miner.state == MinerState.ACTIVE and miner.stake >= required_stake(
        params, miner.capacity_bytes
    )


def is_accepting(state: State, miner: Miner) -> bool:
    return accepts_fragments(miner, load_params(state))


def all_miners(state: State) -> list[tuple[bytes, Miner]]:
    out = []
    for key, _ in state.iter_prefix(PREFIX):
        miner = get_record(state, key, Miner)
        if miner is not None:
            out.append((key[len(PREFIX) :], miner))
    return out


def may_transition(miner: Miner, new: MinerState) -> bool:
    """Does ``MINER_TRANSITIONS`` allow this miner to move to ``new``?"""
    return new in MINER_TRANSITIONS[miner.state]


def transition(
    state: State,
    pubkey: bytes,
    miner: Miner,
    new: MinerState,
    *,
    refusal: str = "",
    **changes: object,
) -> Miner:
    """Move ``miner`` (the record of ``pubkey``) to ``new``, with ``changes`` to its other
    fields, and store it; returns the stored record.

    Raises:
        InvalidTransition: the table does not allow it (``refusal`` is the message, if given);
            nothing is written.
    """
    if not may_transition(miner, new):
        raise InvalidTransition(
            refusal or f"miner {address_of(pubkey)}: {miner.state.name} -> {new.name}"
        )
    updated = replace(miner, state=new, **changes)
    put_miner(state, pubkey, updated)
    return updated


def add_service(state: State, pubkey: bytes, delta: int) -> None:
    miner = require_miner(state, pubkey)
    put_miner(state, pubkey, replace(miner, service_bytes=max(0, miner.service_bytes + delta)))


def add_locked(state: State, pubkey: bytes, delta: int) -> None:
    miner = require_miner(state, pubkey)
    put_miner(state, pubkey, replace(miner, locked_bytes=max(0, miner.locked_bytes + delta)))


def slash(state: State, pubkey: bytes, bps: int) -> int:
    """Take ``bps``/10000 of the stake into the treasury; returns the amount."""
    miner = require_miner(state, pubkey)
    amount = miner.stake * bps // 10_000
    put_miner(
        state, pubkey, replace(miner, stake=miner.stake - amount, slashed=miner.slashed + amount)
    )
    accounts.treasury_credit(state, amount)
    return amount


class RegisterMiner(Call, tag="miners.register"):
    endpoint: str
    capacity_bytes: int
    stake: int


class UpdateMiner(Call, tag="miners.update"):
    endpoint: str


class AddStake(Call, tag="miners.add_stake"):
    amount: int


class ExitMiner(Call, tag="miners.exit"):
    pass


class RecoverMiner(Call, tag="miners.recover"):
    """FAULTY -> ACTIVE; applied by ``audit.apply_recover`` (it needs the restoral orders)."""


def recovery_height(params: ChainParams, miner: Miner) -> int:
    """The first height at which a FAULTY miner may recover: one audit interval of cool-down,
    so that its restoral orders are open to claims before it competes for fragments again."""
    return miner.faulty_at + params.challenge_interval_blocks


def apply_register(state: State, ctx: TxContext, call: RegisterMiner) -> None:
    """Register the sender as a miner, moving ``stake`` from its balance.

    Raises:
        AlreadyExists, InvalidArgument (endpoint, capacity, stake too low), InsufficientFunds.
    """
    if get_miner(state, ctx.sender) is not None:
        raise AlreadyExists("the sender is already a miner; use miners.update")
    check_endpoint(call.endpoint)
    if not isinstance(call.capacity_bytes, int) or not 0 < call.capacity_bytes <= MAX_CAPACITY:
        raise InvalidArgument(f"capacity_bytes must be in 1..{MAX_CAPACITY}")
    accounts.check_amount(call.stake, "stake")
    needed = required_stake(load_params(state), call.capacity_bytes)
    if call.stake < needed:
        raise InvalidArgument(f"stake {call.stake} is below the {needed} this capacity needs")
    accounts.debit(state, ctx.sender, call.stake, "miner stake")
    put_miner(
        state,
        ctx.sender,
        Miner(
            endpoint=call.endpoint,
            stake=call.stake,
            capacity_bytes=call.capacity_bytes,
            registered_at=ctx.block.height,
        ),
    )
    ctx.emit(
        "miner.registered",
        miner=ctx.sender_address,
        endpoint=call.endpoint,
        capacity_bytes=call.capacity_bytes,
    )


def apply_update(state: State, ctx: TxContext, call: UpdateMiner) -> None:
    miner = require_miner(state, ctx.sender)
    check_endpoint(call.endpoint)
    put_miner(state, ctx.sender, replace(miner, endpoint=call.endpoint))
    ctx.emit("miner.updated", miner=ctx.sender_address, endpoint=call.endpoint)


def apply_add_stake(state: State, ctx: TxContext, call: AddStake) -> None:
    miner = require_miner(state, ctx.sender)
    if miner.state == MinerState.EXITED:
        raise InvalidTransition("the miner has exited")
    accounts.check_amount(call.amount, "amount")
    accounts.debit(state, ctx.sender, call.amount, "stake")
    put_miner(state, ctx.sender, replace(miner, stake=miner.stake + call.amount))
    ctx.emit("miner.staked", miner=ctx.sender_address, amount=call.amount)


def apply_exit(state: State, ctx: TxContext, call: ExitMiner) -> None:
    """Announce exit: no new fragments; restoral moves the held ones; then the stake returns."""
    miner = require_miner(state, ctx.sender)
    transition(
        state,
        ctx.sender,
        miner,
        MinerState.EXITING,
        refusal=f"an {miner.state.name.lower()} miner cannot exit",
    )
    ctx.emit("miner.exiting", miner=ctx.sender_address)


def query_miner(state: State, args: QueryArgs) -> bytes:
    return encode_value(require_miner(state, address_arg(args.address)))


def query_list(state: State, args: QueryArgs) -> bytes:
    return encode_value([MinerEntry(address=address_of(k), miner=m) for k, m in all_miners(state)])


HANDLERS = {
    RegisterMiner: apply_register,
    UpdateMiner: apply_update,
    AddStake: apply_add_stake,
    ExitMiner: apply_exit,
}
QUERIES: dict[str, QueryHandler] = {"miner": query_miner, "list": query_list}
