"""Space: storage bought by users (GiB × days × price), its use, and its expiry.

A lease has total, used and locked bytes (free = total - used - locked). Declaring a deal locks
the object's size; SUCCESS moves it to used; FAILED releases it; deleting an object frees it.
At ``expires_at`` the lease is frozen (no new uploads, downloads go on); after the grace period
the owner's objects are removed, a bounded number per block (``files.purge_expired_objects``),
then the lease.

Keys: ``space/<owner>`` -> Lease; ``space-exp/<height><owner>`` -> b"" (next expiry step);
``space-purge/<owner>`` -> b"" (owners whose objects are being removed).
"""

from __future__ import annotations

import enum

from msgspec.structs import replace

from deoss.chain.errors import AlreadyExists, InsufficientSpace, InvalidArgument, NotFound
from deoss.chain.genesis import ChainParams
from deoss.chain.modules import accounts
from deoss.chain.params import load_params
from deoss.chain.query import QueryArgs, QueryHandler, address_arg, encode_value
from deoss.chain.state import State, get_record, put_record
from deoss.chain.types import BlockContext, BlockEvents, Call, TxContext
from deoss.core.codec import Record
from deoss.core.keys import address_of

PREFIX = b"space/"
EXPIRY = b"space-exp/"
PURGE = b"space-purge/"
GiB = 1024**3
MAX_GIB = 1_000_000
MAX_DAYS = 36_500


class LeaseState(enum.IntEnum):  # stored on chain: never renumber
    ACTIVE = 0
    FROZEN = 1
    PURGING = 2


class Lease(Record):
    total_bytes: int
    expires_at: int
    used_bytes: int = 0
    locked_bytes: int = 0
    state: LeaseState = LeaseState.ACTIVE

    @property
    def free_bytes(self) -> int:
        return self.total_bytes - self.used_bytes - self.locked_bytes


def get_lease(state: State, owner: bytes) -> Lease | None:
    return get_record(state, PREFIX + owner, Lease)


def _put(state: State, owner: bytes, lease: Lease) -> None:
    put_record(state, PREFIX + owner, lease)


def _schedule(state: State, owner: bytes, height: int) -> None:
    state.put(EXPIRY + height.to_bytes(8, "big") + owner, b"")


def _unschedule(state: State, owner: bytes, height: int) -> None:
    state.delete(EXPIRY + height.to_bytes(8, "big") + owner)


def require_room(state: State, owner: bytes, size: int) -> Lease:
    """The owner's lease, if it is active with ``size`` bytes free (a check: writes nothing).

    Raises:
        InsufficientSpace: no lease, a lease not active, or too few free bytes (with the reason).
    """
    lease = get_lease(state, owner)
    if lease is None:
        raise InsufficientSpace("the owner has bought no space (space.buy)")
    if lease.state != LeaseState.ACTIVE:
        raise InsufficientSpace(f"the owner's space is {lease.state.name.lower()}; renew it")
    if lease.free_bytes < size:
        raise InsufficientSpace(f"needs {size} bytes, {lease.free_bytes} free")
    return lease


def lock(state: State, owner: bytes, size: int) -> None:
    """Reserve ``size`` bytes for a deal. Raises InsufficientSpace with the reason."""
    lease = require_room(state, owner, size)
    _put(state, owner, replace(lease, locked_bytes=lease.locked_bytes + size))


def unlock(state: State, owner: bytes, size: int) -> None:
    lease = get_lease(state, owner)
    if lease is not None:
        _put(state, owner, replace(lease, locked_bytes=max(0, lease.locked_bytes - size)))


def use_locked(state: State, owner: bytes, size: int) -> None:
    """A deal succeeded: its locked bytes become used bytes."""
    lease = get_lease(state, owner)
    if lease is not None:
        _put(
            state,
            owner,
            replace(
                lease,
                locked_bytes=max(0, lease.locked_bytes - size),
                used_bytes=lease.used_bytes + size,
            ),
        )


def use_direct(state: State, owner: bytes, size: int) -> None:
    """A deduplicated object: charge used bytes at once. Raises InsufficientSpace."""
    lock(state, owner, size)
    use_locked(state, owner, size)


def release(state: State, owner: bytes, size: int) -> None:
    """An object was deleted: its bytes are free again."""
    lease = get_lease(state, owner)
    if lease is not None:
        _put(state, owner, replace(lease, used_bytes=max(0, lease.used_bytes - size)))


def purging_owners(state: State) -> list[bytes]:
    return [key[len(PURGE) :] for key, _ in state.iter_prefix(PURGE)]


def finish_purge(state: State, owner: bytes) -> None:
    state.delete(PURGE + owner)
    state.delete(PREFIX + owner)


def _price(params: ChainParams, gib: int, days: int) -> int:
    return gib * days * params.price_per_gib_day


def _check_range(value: int, top: int, what: str) -> None:
    if not isinstance(value, int) or not 1 <= value <= top:
        raise InvalidArgument(f"{what} must be an integer in 1..{top}, got {value!r}")


class BuySpace(Call, tag="space.buy"):
    gib: int
    days: int


class ExpandSpace(Call, tag="space.expand"):
    gib: int


class RenewSpace(Call, tag="space.renew"):
    days: int


def apply_buy(state: State, ctx: TxContext, call: BuySpace) -> None:
    """Buy a new lease of ``gib`` GiB for ``days`` days.

    Raises:
        InvalidArgument, AlreadyExists (a lease exists: expand or renew it), InsufficientFunds.
    """
    _check_range(call.gib, MAX_GIB, "gib")
    _check_range(call.days, MAX_DAYS, "days")
    if get_lease(state, ctx.sender) is not None:
        raise AlreadyExists("the account already has space; use space.expand or space.renew")
    params = load_params(state)
    cost = _price(params, call.gib, call.days)
    accounts.debit(state, ctx.sender, cost, "space")
    accounts.treasury_credit(state, cost)
    expires_at = ctx.block.height + call.days * params.blocks_per_day
    _put(state, ctx.sender, Lease(total_bytes=call.gib * GiB, expires_at=expires_at))
    _schedule(state, ctx.sender, expires_at)
    ctx.emit(
        "space.bought", owner=ctx.sender_address, gib=call.gib, expires_at=expires_at, cost=cost
    )


def apply_expand(state: State, ctx: TxContext, call: ExpandSpace) -> None:
    """Add ``gib`` GiB to an active lease, paying for the days it has left."""
    _check_range(call.gib, MAX_GIB, "gib")
    lease = get_lease(state, ctx.sender)
    if lease is None:
        raise NotFound("the account has no space; use space.buy")
    if lease.state != LeaseState.ACTIVE:
        raise InsufficientSpace(f"space is {lease.state.name.lower()}; renew it first")
    params = load_params(state)
    days_left = max(1, -(-(lease.expires_at - ctx.block.height) // params.blocks_per_day))
    cost = _price(params, call.gib, days_left)
    accounts.debit(state, ctx.sender, cost, "space expansion")
    accounts.treasury_credit(state, cost)
    _put(state, ctx.sender, replace(lease, total_bytes=lease.total_bytes + call.gib * GiB))
    ctx.emit("space.expanded", owner=ctx.sender_address, gib=call.gib, cost=cost)


def apply_renew(state: State, ctx: TxContext, call: RenewSpace) -> None:
    """Extend a lease by ``days`` days; a frozen lease becomes active again."""
    _check_range(call.days, MAX_DAYS, "days")
    lease = get_lease(state, ctx.sender)
    if lease is None:
        raise NotFound("the account has no space; use space.buy")
    if lease.state == LeaseState.PURGING:
        raise InsufficientSpace("space expired past its grace period and is being removed")
    params = load_params(state)
    gib = -(-lease.total_bytes // GiB)
    cost = _price(params, gib, call.days)
    accounts.debit(state, ctx.sender, cost, "space renewal")
    accounts.treasury_credit(state, cost)
    old_step = (
        lease.expires_at
        if lease.state == LeaseState.ACTIVE
        else (lease.expires_at + params.space_grace_blocks)
    )
    _unschedule(state, ctx.sender, old_step)
    expires_at = max(lease.expires_at, ctx.block.height) + call.days * params.blocks_per_day
    _put(state, ctx.sender, replace(lease, expires_at=expires_at, state=LeaseState.ACTIVE))
    _schedule(state, ctx.sender, expires_at)
    ctx.emit("space.renewed", owner=ctx.sender_address, expires_at=expires_at, cost=cost)


def advance_expired_leases(
    state: State, ctx: BlockContext, params: ChainParams, events: BlockEvents
) -> None:
    """Block step: leases at their deadline freeze; frozen ones past the grace period start
    purging (``files.purge_expired_objects`` removes their objects)."""
    for key, _ in state.iter_prefix(EXPIRY):
        height = int.from_bytes(key[len(EXPIRY) : len(EXPIRY) + 8], "big")
        if height > ctx.height:
            break
        owner = key[len(EXPIRY) + 8 :]
        state.delete(key)
        lease = get_lease(state, owner)
        if lease is None:
            continue
        if lease.state == LeaseState.ACTIVE:
            _put(state, owner, replace(lease, state=LeaseState.FROZEN))
            _schedule(state, owner, lease.expires_at + params.space_grace_blocks)
            events.emit("space.frozen", owner=address_of(owner))
        elif lease.state == LeaseState.FROZEN:
            _put(state, owner, replace(lease, state=LeaseState.PURGING))
            state.put(PURGE + owner, b"")
            events.emit("space.purging", owner=address_of(owner))


def query_lease(state: State, args: QueryArgs) -> bytes:
    lease = get_lease(state, address_arg(args.address))
    if lease is None:
        raise NotFound(f"{args.address} has no space")
    return encode_value(lease)


HANDLERS = {BuySpace: apply_buy, ExpandSpace: apply_expand, RenewSpace: apply_renew}
QUERIES: dict[str, QueryHandler] = {"lease": query_lease}
