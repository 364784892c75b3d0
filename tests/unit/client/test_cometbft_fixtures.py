"""The ChainClient reads every answer a real CometBFT v0.38.26 node gave (tests/vectors/
cometbft_rpc): each fixture is replayed through a mock transport to the client method that
asks for it, or handed to the reader that parses it."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import httpx
import pytest

from deoss.client import chain_types as read
from deoss.client.block_feed import _result_of
from deoss.client.chain import ChainClient
from deoss.client.errors import RpcError, TxRefused
from tests.rpc_shapes import fixture

pytestmark = pytest.mark.anyio


def replaying(name: str, seen: list[dict[str, Any]] | None = None) -> ChainClient:
    """A client whose every request is answered with fixture ``name`` (its envelope's id
    replaced by the request's)."""
    recorded = {k: v for k, v in fixture(name).items() if k != "http_status"}

    def handler(request: httpx.Request) -> httpx.Response:
        body = httpx.Response(200, content=request.content).json()
        if seen is not None:
            seen.append(body)
        return httpx.Response(200, json={**recorded, "id": body["id"]})

    return ChainClient("http://node", transport=httpx.MockTransport(handler))


async def test_status_and_abci_info() -> None:
    async with replaying("status") as client:
        status = await client.status()
    sync = fixture("status")["result"]["sync_info"]
    assert (int(sync["latest_block_height"]), sync["latest_block_hash"]) == (
        status.height,
        status.block_hash.hex().upper(),
    )
    assert fixture("status")["result"]["node_info"]["network"] == status.chain_id
    assert status.block_time_ns == read.parse_rfc3339_ns(sync["latest_block_time"])
    async with replaying("abci_info") as client:
        info = await client.app_info()
    response = fixture("abci_info")["result"]["response"]
    assert int(response["last_block_height"]) == info.height
    assert base64.b64decode(response["last_block_app_hash"]) == info.app_hash


@pytest.mark.parametrize("name", ["block", "block_latest", "block_uri", "ws_block"])
async def test_blocks(name: str) -> None:
    async with replaying(name) as client:
        block = await client.block()
    header = fixture(name)["result"]["block"]["header"]
    txs = fixture(name)["result"]["block"]["data"]["txs"]
    assert (int(header["height"]), header["app_hash"]) == (
        block.height,
        block.last_app_hash.hex().upper(),
    )
    assert [base64.b64decode(tx) for tx in txs] == block.txs
    assert header["last_block_id"]["hash"] == block.last_block_hash.hex().upper()


@pytest.mark.parametrize("name", ["block_results", "block_results_empty"])
async def test_block_results(name: str) -> None:
    async with replaying(name) as client:
        results = await client.block_results(1)
    recorded = fixture(name)["result"]
    assert len(recorded["txs_results"] or []) == len(results.tx_results)
    assert base64.b64decode(recorded["app_hash"]) == results.app_hash
    for item, result in zip(recorded["txs_results"] or [], results.tx_results, strict=True):
        attributes = [(a["key"], a["value"]) for a in item["events"][0]["attributes"]]
        assert attributes == result.events[0].attributes


@pytest.mark.parametrize("name", ["tx", "tx_uri_hex"])
async def test_tx_by_hash_sends_base64(name: str) -> None:
    seen: list[dict[str, Any]] = []
    recorded = fixture(name)["result"]
    hash_ = bytes.fromhex(recorded["hash"])
    async with replaying(name, seen) as client:
        outcome = await client.tx(hash_)
    assert hash_ == base64.b64decode(seen[0]["params"]["hash"], validate=True)
    assert (hash_, int(recorded["height"]), recorded["index"]) == (
        outcome.hash,
        outcome.height,
        outcome.index,
    )
    assert hashlib.sha256(base64.b64decode(recorded["tx"])).digest() == hash_


def test_tx_search_items_read_as_tx_answers() -> None:
    for item in fixture("tx_search")["result"]["txs"]:
        outcome, tx = read.read_tx(item)
        assert hashlib.sha256(tx).digest() == outcome.hash


async def test_broadcasts() -> None:
    async with replaying("broadcast_tx_sync") as client:
        checked = await client.broadcast(b"tx", wait=False)
    assert None is checked.height
    async with replaying("broadcast_tx_sync_refused") as client:
        with pytest.raises(TxRefused) as refused:
            await client.broadcast(b"tx", wait=False)
    assert ("check", 2) == (refused.value.stage, refused.value.code)
    async with replaying("broadcast_tx_commit") as client:
        committed = await client.broadcast(b"tx", wait=True)
    recorded = fixture("broadcast_tx_commit")["result"]
    assert int(recorded["height"]) == committed.height
    assert len(recorded["tx_result"]["events"]) == len(committed.result.events)
    async with replaying("broadcast_tx_commit_refused") as client:
        with pytest.raises(TxRefused) as refused:
            await client.broadcast(b"tx", wait=True)
    assert ("check", 2) == (refused.value.stage, refused.value.code)


@pytest.mark.parametrize("name", ["abci_query", "abci_query_missing"])
def test_abci_query_values(name: str) -> None:
    response = fixture(name)["result"]["response"]
    value = read.from_b64(response["value"])
    assert (0, value) == (int(response["code"]), base64.b64decode(response["value"] or ""))


@pytest.mark.parametrize(
    "name",
    [
        "error_abci_query_bad_hex",
        "error_bad_params",
        "error_block_results_height_too_high",
        "error_broadcast_bad_base64",
        "error_broadcast_tx_sync_in_cache",
        "error_height_negative",
        "error_height_too_high",
        "error_height_too_high_uri",
        "error_parse",
        "error_tx_hex_in_json_body",
        "error_tx_not_found",
        "error_unknown_method",
    ],
)
async def test_errors_are_rpc_errors(name: str) -> None:
    recorded = fixture(name)["error"]
    async with replaying(name) as client:
        with pytest.raises(RpcError) as failed:
            await client.call("status")
    assert (recorded["code"], recorded["message"], recorded.get("data", "")) == (
        failed.value.code,
        failed.value.message,
        failed.value.data,
    )


@pytest.mark.parametrize("name", ["ws_new_block", "ws_new_block_with_tx"])
def test_new_block_events(name: str) -> None:
    message = fixture(name)
    result = _result_of(message, message["id"])
    assert result is not None
    block = read.read_new_block(result["data"]["value"])
    value = result["data"]["value"]
    assert int(value["block"]["header"]["height"]) == block.height
    finalized = value["result_finalize_block"]
    assert base64.b64decode(finalized["app_hash"]) == block.app_hash
    assert len(finalized.get("tx_results", [])) == len(block.tx_results) == len(block.tx_hashes)


def test_subscription_answers() -> None:
    ok = fixture("ws_subscribe_ok")
    assert {} == _result_of(ok, ok["id"])
    for name in ("ws_error_already_subscribed", "ws_error_bad_query"):
        with pytest.raises(Exception, match=fixture(name)["error"]["data"][:20]):
            _result_of(fixture(name), fixture(name)["id"])
