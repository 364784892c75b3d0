"""Gateways: registered endpoints that users authorize to act for them on chain.

Registering reserves at least ``gateway_stake`` from the sender's balance (a gateway reads
fragments for its users, and a free identity would make miners' read limits per reader
meaningless). There is no deregistration call yet: the stake stays reserved.

Keys: ``gw/<gateway>`` -> Gateway; ``gw-auth/<user><gateway>`` -> b"" (an authorization).
"""

from __future__ import annotations

from deoss.chain.errors import AlreadyExists, InvalidArgument, NotFound, Unauthorized
from deoss.chain.query import QueryArgs, QueryHandler, address_arg, encode_value
from deoss.chain.state import State, get_record, put_record
from deoss.chain.types import Call, TxContext
from deoss.core import codec
from deoss.core.codec import Record
from deoss.core.keys import address_of

PREFIX = b"gw/"
AUTH = b"gw-auth/"
MAX_ENDPOINT = 256


class Gateway(Record):
    endpoint: str
    registered_at: int
    stake: int = 0


class GatewayEntry(Record):
    address: str
    endpoint: str


def check_endpoint(endpoint: str) -> None:
    """An endpoint is an http(s) URL with a host, at most 256 characters."""
    if not isinstance(endpoint, str) or not 0 < len(endpoint) <= MAX_ENDPOINT:
        raise InvalidArgument(f"endpoint must be 1..{MAX_ENDPOINT} characters")
    scheme, sep, rest = endpoint.partition("://")
    if scheme not in ("http", "https") or not sep or not rest or any(c in rest for c in " \t\n"):
        raise InvalidArgument(f"endpoint {endpoint!r} is not an http(s) URL")


def get_gateway(state: State, pubkey: bytes) -> Gateway | None:
    return get_record(state, PREFIX + pubkey, Gateway)


def is_authorized(state: State, user: bytes, gateway: bytes) -> bool:
    return state.get(AUTH + user + gateway) is not None


def acting_owner(state: State, ctx: TxContext, owner: str) -> bytes:
    """The owner a call acts for: the sender itself, or a user who authorized the sender.

    Raises:
        InvalidArgument: bad owner address. Unauthorized: the sender may not act for the owner.
    """
    if not owner:
        return ctx.sender
    user = address_arg(owner, "owner")
    if user != ctx.sender and not is_authorized(state, user, ctx.sender):
        raise Unauthorized(f"{ctx.sender_address} is not a gateway authorized by {owner}")
    return user


class RegisterGateway(Call, tag="gateways.register"):
    endpoint: str
    stake: int = 0  # reserved from the balance: at least gateway_stake when registering; more
    # may be added by a later call (an endpoint update needs none)


class AuthorizeGateway(Call, tag="gateways.authorize"):
    gateway: str


class RevokeGateway(Call, tag="gateways.revoke"):
    gateway: str


def apply_register(state: State, ctx: TxContext, call: RegisterGateway) -> None:
    """Register the sender as a gateway (reserving its stake), or update its endpoint."""
    # imported here: the CLI imports this module for its calls, and accounts/params pull in
    # genesis (and with it the PoDR² curve library), which `deoss gateway --help` must not load
    from deoss.chain.modules import accounts
    from deoss.chain.params import load_params

    check_endpoint(call.endpoint)
    if call.stake != 0:
        accounts.check_amount(call.stake, "stake")
    existing = get_gateway(state, ctx.sender)
    if existing is None:
        required = load_params(state).gateway_stake
        if call.stake < required:
            raise InvalidArgument(
                f"registering a gateway reserves a stake of at least {required}, got {call.stake}"
            )
    since = existing.registered_at if existing else ctx.block.height
    stake = (existing.stake if existing else 0) + call.stake
    if call.stake:
        accounts.debit(state, ctx.sender, call.stake, "gateway stake")
    put_record(
        state,
        PREFIX + ctx.sender,
        Gateway(endpoint=call.endpoint, registered_at=since, stake=stake),
    )
    ctx.emit(
        "gateway.registered",
        gateway=ctx.sender_address,
        endpoint=call.endpoint,
        stake=str(stake),
    )


def apply_authorize(state: State, ctx: TxContext, call: AuthorizeGateway) -> None:
    """Let a registered gateway act for the sender."""
    gateway = address_arg(call.gateway, "gateway")
    if get_gateway(state, gateway) is None:
        raise NotFound(f"{call.gateway} is not a registered gateway")
    if is_authorized(state, ctx.sender, gateway):
        raise AlreadyExists(f"{call.gateway} is already authorized")
    state.put(AUTH + ctx.sender + gateway, b"")
    ctx.emit("gateway.authorized", user=ctx.sender_address, gateway=call.gateway)


def apply_revoke(state: State, ctx: TxContext, call: RevokeGateway) -> None:
    gateway = address_arg(call.gateway, "gateway")
    if not is_authorized(state, ctx.sender, gateway):
        raise NotFound(f"{call.gateway} is not authorized by {ctx.sender_address}")
    state.delete(AUTH + ctx.sender + gateway)
    ctx.emit("gateway.revoked", user=ctx.sender_address, gateway=call.gateway)


def query_gateway(state: State, args: QueryArgs) -> bytes:
    gateway = get_gateway(state, address_arg(args.address))
    if gateway is None:
        raise NotFound(f"{args.address} is not a registered gateway")
    return encode_value(gateway)


def query_list(state: State, args: QueryArgs) -> bytes:
    entries = []
    for key, raw in state.iter_prefix(PREFIX):
        gateway = codec.decode(raw, Gateway)
        entries.append(
            GatewayEntry(address=address_of(key[len(PREFIX) :]), endpoint=gateway.endpoint)
        )
    return encode_value(entries)


def query_authorized(state: State, args: QueryArgs) -> bytes:
    user = address_arg(args.address)
    prefix = AUTH + user
    return encode_value([address_of(key[len(prefix) :]) for key, _ in state.iter_prefix(prefix)])


HANDLERS = {
    RegisterGateway: apply_register,
    AuthorizeGateway: apply_authorize,
    RevokeGateway: apply_revoke,
}
QUERIES: dict[str, QueryHandler] = {
    "gateway": query_gateway,
    "list": query_list,
    "authorized": query_authorized,
}
