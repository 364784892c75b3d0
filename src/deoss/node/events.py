"""Event subscriptions and transaction waiters, fed by the node after each committed block.

Queries are the subset of CometBFT's query language that clients use::

    tm.event='NewBlock'
    tm.event='Tx' AND transfer.recipient='deoss1…' AND tx.height>=10

conditions joined by AND, each ``key OP operand`` with OP one of ``= < <= > >= CONTAINS`` and
the operand a 'quoted string' or an integer, or ``key EXISTS``. A condition holds when any
value of ``key`` in the message's event map satisfies it.

Each committed block publishes one NewBlock message (keys ``tm.event`` and the block's own
``type.key`` events) and one Tx message per transaction (``tm.event``, ``tx.hash``,
``tx.height`` and the tx's ``type.key`` events), as CometBFT's event bus does.

Invariants: ``publish`` runs on the block producer's thread, after the block is in the store;
every hand-off to a subscriber or waiter goes through its own event loop
(``call_soon_threadsafe``), so messages reach each subscriber in block order.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deoss.chain.types import Event, TxResult
from deoss.node.devnode import CommittedBlock
from deoss.node.rpc_json import (
    block_body_json,
    block_id_json,
    finalize_block_json,
    hex_upper,
    tx_event_json,
)

__all__ = ["EventHub", "Query", "QueryError", "TxInclusion", "parse_query"]

MAX_QUERY_LENGTH = 512  # as CometBFT

_CONDITION = re.compile(
    r"""\s*(?P<key>[^\s=<>'"]+)\s*
    (?:(?P<exists>EXISTS)
      |(?P<op><=|>=|=|<|>|CONTAINS)\s*(?:'(?P<string>[^']*)'|(?P<number>-?[0-9]+))
    )\s*$""",
    re.VERBOSE,
)


class QueryError(ValueError):
    """A subscription query that cannot be parsed."""


@dataclass(frozen=True)
class Condition:
    key: str
    op: str  # "=", "<", "<=", ">", ">=", "CONTAINS", "EXISTS"
    operand: str | int | None

    def holds(self, values: list[str]) -> bool:
        return any(self._holds_for(value) for value in values)

    def _holds_for(self, value: str) -> bool:
        if self.op == "EXISTS":
            return True
        if self.op == "CONTAINS":
            return str(self.operand) in value
        if isinstance(self.operand, str):
            return self.op == "=" and value == self.operand
        try:
            number = int(value)
        except ValueError:
            return False
        operand = int(self.operand or 0)
        return {
            "=": number == operand,
            "<": number < operand,
            "<=": number <= operand,
            ">": number > operand,
            ">=": number >= operand,
        }[self.op]


@dataclass(frozen=True)
class Query:
    text: str
    conditions: tuple[Condition, ...]

    def matches(self, events: dict[str, list[str]]) -> bool:
        return all(c.holds(events.get(c.key, [])) for c in self.conditions)


def parse_query(text: str) -> Query:
    """Parse a subscription query; raises QueryError saying what is wrong."""
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryError(f"query is longer than {MAX_QUERY_LENGTH} characters")
    if not text.strip():
        raise QueryError("query is empty")
    conditions = []
    for part in re.split(r"\s+AND\s+", text.strip()):
        match = _CONDITION.match(part)
        if match is None:
            raise QueryError(
                f"cannot parse condition {part!r}: expected key='value', key=123 or key EXISTS"
            )
        if match["exists"]:
            conditions.append(Condition(match["key"], "EXISTS", None))
        elif match["string"] is not None:
            if match["op"] not in ("=", "CONTAINS"):
                raise QueryError(f"{part!r}: {match['op']} needs an integer operand")
            conditions.append(Condition(match["key"], match["op"], match["string"]))
        else:
            conditions.append(Condition(match["key"], match["op"], int(match["number"])))
    return Query(text, tuple(conditions))


def event_map(base: dict[str, list[str]], events: list[Event]) -> dict[str, list[str]]:
    """CometBFT's composite keys: ``type.key`` -> every value, in order."""
    mapped = {key: list(values) for key, values in base.items()}
    for event in events:
        for key, value in event.attributes:
            mapped.setdefault(f"{event.type}.{key}", []).append(value)
    return mapped


@dataclass(frozen=True)
class TxInclusion:
    height: int
    index: int
    result: TxResult


@dataclass(eq=False)
class Subscription:
    """One query of one websocket connection; ``deliver`` runs on ``loop``."""

    query: Query
    loop: asyncio.AbstractEventLoop
    deliver: Callable[[dict[str, Any]], None]


@dataclass(eq=False)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[TxInclusion] = field(repr=False)


class EventHub:
    """Fan-out of committed blocks to subscriptions and broadcast_tx_commit waiters."""

    def __init__(self, max_subscriptions: int = 1000) -> None:
        self.max_subscriptions = max_subscriptions
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription] = []
        self._waiters: dict[bytes, list[_Waiter]] = {}

    def subscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if len(self._subscriptions) >= self.max_subscriptions:
                raise QueryError(f"max_subscription_clients {self.max_subscriptions} reached")
            self._subscriptions.append(subscription)

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    def wait_for_tx(self, tx_hash: bytes) -> asyncio.Future[TxInclusion]:
        """A future resolved when a block including ``tx_hash`` is committed.

        Register before submitting the transaction; call ``forget_tx`` when done waiting.
        """
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop, loop.create_future())
        with self._lock:
            self._waiters.setdefault(tx_hash, []).append(waiter)
        return waiter.future

    def forget_tx(self, tx_hash: bytes, future: asyncio.Future[TxInclusion]) -> None:
        with self._lock:
            waiters = [w for w in self._waiters.get(tx_hash, []) if w.future is not future]
            if waiters:
                self._waiters[tx_hash] = waiters
            else:
                self._waiters.pop(tx_hash, None)

    def publish(self, committed: CommittedBlock) -> None:
        """Hand a committed block to every matching subscription and waiter (any thread)."""
        with self._lock:
            subscriptions = list(self._subscriptions)
            waiters = {h: self._waiters.pop(h) for h in committed.tx_hashes if h in self._waiters}
        block = committed.block
        for index, tx_hash in enumerate(committed.tx_hashes):
            inclusion = TxInclusion(block.height, index, block.results[index])
            for waiter in waiters.get(tx_hash, []):
                _call_on(waiter.loop, _resolve, waiter.future, inclusion)
        if subscriptions:
            gone = self._publish_events(committed, subscriptions)
            for sub in gone:
                self.unsubscribe(sub)

    def _publish_events(
        self, committed: CommittedBlock, subscriptions: list[Subscription]
    ) -> list[Subscription]:
        """Send the block's messages; returns the subscriptions whose loop has closed."""
        gone: list[Subscription] = []
        block = committed.block
        new_block_events = event_map({"tm.event": ["NewBlock"]}, block.events)
        new_block_data: dict[str, Any] | None = None
        for sub in subscriptions:
            if sub.query.matches(new_block_events):
                if new_block_data is None:  # built once, and only when someone wants it
                    new_block_data = {
                        "type": "tendermint/event/NewBlock",
                        "value": {
                            "block": block_body_json(block),
                            "block_id": block_id_json(block.hash),
                            "result_finalize_block": finalize_block_json(block),
                        },
                    }
                _send(sub, new_block_data, new_block_events, gone)
        for index, tx_hash in enumerate(committed.tx_hashes):
            result = block.results[index]
            base = {"tm.event": ["Tx"], "tx.hash": [hex_upper(tx_hash)]}
            base["tx.height"] = [str(block.height)]
            tx_events = event_map(base, result.events)
            matching = [sub for sub in subscriptions if sub.query.matches(tx_events)]
            if not matching:
                continue
            data = {"type": "tendermint/event/Tx", "value": tx_event_json(block, index)}
            for sub in matching:
                _send(sub, data, tx_events, gone)
        return gone


def _send(
    sub: Subscription,
    data: dict[str, Any],
    events: dict[str, list[str]],
    gone: list[Subscription],
) -> None:
    message = {"query": sub.query.text, "data": data, "events": events}
    if not _call_on(sub.loop, sub.deliver, message) and sub not in gone:
        gone.append(sub)


def _call_on(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> bool:
    """Schedule ``callback`` on ``loop``; False if that loop has closed (its client is gone)."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        return False
    return True


def _resolve(future: asyncio.Future[TxInclusion], inclusion: TxInclusion) -> None:
    if not future.done():
        future.set_result(inclusion)
