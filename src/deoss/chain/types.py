"""Records shared by the machine and every module: calls, events, results, block context."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Annotated, Protocol, dataclass_transform

import msgspec

from deoss.core.codec import Record
from deoss.core.keys import Address, address_of

__all__ = [
    "BlockContext",
    "BlockEvents",
    "BlockHeader",
    "Call",
    "Event",
    "EventSink",
    "Hash32",
    "PubKey",
    "QueryResult",
    "Sig64",
    "TxContext",
    "TxResult",
    "make_event",
]

Hash32 = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
PubKey = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
Sig64 = Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]


# Subclasses inherit frozen and kw_only; told to the type checker as for core.codec.Record.
@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(msgspec.field,))
class Call(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    array_like=True,
    tag_field="call",
):
    """Base of every transaction call; subclasses set ``tag="<module>.<verb>"``."""


class Event(Record):
    """A CometBFT-style event: a type and string attributes, in order."""

    type: str
    attributes: list[tuple[str, str]]

    def get(self, key: str) -> str | None:
        return next((v for k, v in self.attributes if k == key), None)


class TxResult(Record):
    """Outcome of one transaction: code 0 is success; code and data are consensus data."""

    code: int = 0
    log: str = ""
    events: list[Event] = []
    data: bytes = b""


class BlockHeader(Record):
    """What the driver tells the machine about a block; the only source of time and entropy."""

    chain_id: str
    height: int
    time_ns: int
    hash: Hash32
    proposer: bytes = b""


@dataclass(frozen=True)
class BlockContext:
    """The environment of the block being executed."""

    chain_id: str
    height: int
    time_ns: int
    block_hash: bytes
    seed: bytes  # sha256(previous app hash || block hash): the block's randomness

    def derive(self, *labels: bytes) -> bytes:
        """A 32-byte value derived from the block seed, for one purpose."""
        return hashlib.sha256(b"deoss-seed" + self.seed + b"".join(labels)).digest()


@dataclass
class TxContext:
    """A transaction's sender and the place its events go."""

    block: BlockContext
    sender: bytes
    events: list[Event] = field(default_factory=list)

    @property
    def sender_address(self) -> Address:
        return address_of(self.sender)

    def emit(self, type_: str, **attributes: object) -> None:
        self.events.append(make_event(type_, **attributes))


def make_event(type_: str, **attributes: object) -> Event:
    """The one way the chain makes an event: every attribute as a string, in the order given
    (events are consensus-visible in block results, so their shape must not vary by caller)."""
    return Event(type=type_, attributes=[(k, str(v)) for k, v in attributes.items()])


class EventSink(Protocol):
    """Where events go: a transaction's context or a block's step events. Code that runs both
    inside a transaction and inside a block step (opening a restoral order, failing a deal,
    removing an object, a miner's fault) takes one of these."""

    def emit(self, type_: str, **attributes: object) -> None: ...


@dataclass
class BlockEvents:
    """The events the begin- and end-block steps emit, in order (``finalize_block_events``)."""

    events: list[Event] = field(default_factory=list)

    def emit(self, type_: str, **attributes: object) -> None:
        self.events.append(make_event(type_, **attributes))


class QueryResult(Record):
    """Answer to an abci_query: code 0 and the encoded value, or a code and a log."""

    code: int = 0
    log: str = ""
    value: bytes = b""
    height: int = 0
