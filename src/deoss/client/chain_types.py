"""What the ChainClient returns, and how it reads CometBFT v0.38's JSON into it.

Readers accept what a real CometBFT node sends as well as what the embedded node sends: fields
it may omit (``omitempty``) get their defaults, ``null`` lists are empty lists. Anything else
that does not fit raises BadResponse naming the method.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from deoss.chain.types import Event, TxResult
from deoss.client.errors import BadResponse

__all__ = [
    "AppInfo",
    "BlockInfo",
    "BlockResults",
    "ChainStatus",
    "FollowedBlock",
    "TxOutcome",
    "followed_block",
    "parse_rfc3339_ns",
    "read_new_block",
    "tx_hash",
]

_RFC3339 = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z$")


@dataclass(frozen=True)
class ChainStatus:
    chain_id: str
    height: int  # latest committed block (0: none yet)
    block_hash: bytes
    block_time_ns: int
    header_app_hash: bytes  # in the latest header: the state after the block before it


@dataclass(frozen=True)
class AppInfo:
    height: int
    app_hash: bytes  # the state after block ``height``


@dataclass(frozen=True)
class BlockInfo:
    chain_id: str
    height: int
    hash: bytes
    time_ns: int
    last_block_hash: bytes
    last_app_hash: bytes  # the state this block ran on
    txs: list[bytes]


@dataclass(frozen=True)
class BlockResults:
    height: int
    tx_results: list[TxResult]
    events: list[Event]  # of the begin- and end-block hooks
    app_hash: bytes  # the state after this block


@dataclass(frozen=True)
class FollowedBlock:
    """One committed block as ``ChainClient.follow`` yields it."""

    height: int
    header: BlockInfo
    tx_hashes: list[bytes]
    tx_results: list[TxResult]
    events: list[Event]
    app_hash: bytes


@dataclass(frozen=True)
class TxOutcome:
    """A transaction's fate: checked (height None) or included in a block."""

    hash: bytes
    height: int | None = None
    index: int | None = None
    result: TxResult = TxResult()


def parse_rfc3339_ns(text: str) -> int:
    """Nanoseconds since the epoch of a UTC RFC 3339 time with up to 9 fraction digits."""
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 UTC time: {text!r}")
    *fields, fraction = match.groups()
    seconds = calendar.timegm(tuple(int(f) for f in fields) + (0, 0, 0))
    return seconds * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))


@contextmanager
def reading(method: str) -> Iterator[None]:
    """Turn a shape error while reading ``method``'s result into BadResponse."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, binascii.Error) as exc:
        raise BadResponse(f"{method}: unexpected result ({type(exc).__name__}: {exc})") from exc


def from_hex(text: str | None) -> bytes:
    return bytes.fromhex(text or "")


def from_b64(text: str | None) -> bytes:
    return base64.b64decode(text or "", validate=True)


def read_events(items: list[dict[str, Any]] | None) -> list[Event]:
    return [
        Event(
            type=item.get("type", ""),
            attributes=[
                (a.get("key", ""), a.get("value", "")) for a in item.get("attributes") or []
            ],
        )
        for item in items or []
    ]


def read_tx_result(item: dict[str, Any] | None) -> TxResult:
    item = item or {}
    return TxResult(
        code=int(item.get("code", 0)),
        log=item.get("log", ""),
        events=read_events(item.get("events")),
        data=from_b64(item.get("data")),
    )


def read_status(result: dict[str, Any]) -> ChainStatus:
    with reading("status"):
        sync = result["sync_info"]
        return ChainStatus(
            chain_id=result["node_info"]["network"],
            height=int(sync["latest_block_height"]),
            block_hash=from_hex(sync["latest_block_hash"]),
            block_time_ns=parse_rfc3339_ns(sync["latest_block_time"]),
            header_app_hash=from_hex(sync["latest_app_hash"]),
        )


def read_app_info(result: dict[str, Any]) -> AppInfo:
    with reading("abci_info"):
        response = result["response"]
        return AppInfo(
            height=int(response.get("last_block_height", 0)),
            app_hash=from_b64(response.get("last_block_app_hash")),
        )


def read_block(result: dict[str, Any]) -> BlockInfo:
    with reading("block"):
        header = result["block"]["header"]
        return BlockInfo(
            chain_id=header["chain_id"],
            height=int(header["height"]),
            hash=from_hex(result["block_id"]["hash"]),
            time_ns=parse_rfc3339_ns(header["time"]),
            last_block_hash=from_hex(header["last_block_id"]["hash"]),
            last_app_hash=from_hex(header["app_hash"]),
            txs=[from_b64(tx) for tx in result["block"]["data"].get("txs") or []],
        )


def read_block_results(result: dict[str, Any]) -> BlockResults:
    with reading("block_results"):
        return BlockResults(
            height=int(result["height"]),
            tx_results=[read_tx_result(item) for item in result.get("txs_results") or []],
            events=read_events(result.get("finalize_block_events")),
            app_hash=from_b64(result.get("app_hash")),
        )


def tx_hash(tx: bytes) -> bytes:
    return hashlib.sha256(tx).digest()


def followed_block(header: BlockInfo, results: BlockResults) -> FollowedBlock:
    """A block and its results as one FollowedBlock (the heights are checked to agree)."""
    if header.height != results.height:
        raise BadResponse(f"block {header.height} came with the results of {results.height}")
    return FollowedBlock(
        height=header.height,
        header=header,
        tx_hashes=[tx_hash(tx) for tx in header.txs],
        tx_results=results.tx_results,
        events=results.events,
        app_hash=results.app_hash,
    )


def read_new_block(value: dict[str, Any]) -> FollowedBlock:
    """The ``value`` of a NewBlock event: block, block_id and result_finalize_block."""
    header = read_block({"block": value.get("block"), "block_id": value.get("block_id")})
    with reading("NewBlock event"):
        finalized = value["result_finalize_block"]
        results = BlockResults(
            height=header.height,
            tx_results=[read_tx_result(item) for item in finalized.get("tx_results") or []],
            events=read_events(finalized.get("events")),
            app_hash=from_b64(finalized.get("app_hash")),
        )
    if len(results.tx_results) != len(header.txs):
        raise BadResponse(
            f"NewBlock {header.height}: {len(header.txs)} txs but {len(results.tx_results)} results"
        )
    return followed_block(header, results)


def read_tx(result: dict[str, Any]) -> tuple[TxOutcome, bytes]:
    """(outcome, tx bytes) of a ``tx`` result."""
    with reading("tx"):
        outcome = TxOutcome(
            hash=from_hex(result["hash"]),
            height=int(result["height"]),
            index=int(result.get("index", 0)),
            result=read_tx_result(result.get("tx_result")),
        )
        return outcome, from_b64(result.get("tx"))
