"""The embedded node answers every recorded request in CometBFT v0.38.26's shape.

For each fixture in tests/vectors/cometbft_rpc (recorded from a real validator, see its
README) the same request goes to a DevNode and the two answers are compared structurally
(tests/rpc_shapes.py): same keys, same JSON types, same string encodings.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import warnings
from typing import Any

import httpx
import pytest

from deoss.node.devnode import DevNode
from deoss.node.rpc import create_app
from tests.chain_fixtures import KEYS, RECIPIENT, transfer
from tests.rpc_shapes import fixture, fixture_names, shape_differences

with warnings.catch_warnings():  # starlette warns at import that it prefers httpx2
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.anyio

# Not served by the embedded node (docs/chain.md, "## RPC", lists what it leaves out).
NOT_SERVED = {"tx_search"}
# Answered over the websocket (test_websocket_answers_have_cometbft_shapes).
WEBSOCKET = {name for name in fixture_names() if name.startswith("ws_")}
NOT_JSON_RPC = {"error_unknown_method_uri"}  # CometBFT's mux answers "404 page not found"
# Where the embedded node knowingly differs: CometBFT ignores a parameter it does not know;
# the embedded node refuses it (Invalid params), so a client that works against the embedded
# node never depends on a misspelt parameter being ignored.
STRICTER = {"unknown_param_ignored"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Embedded:
    """A DevNode with an empty block 1 and a block 2 holding two transfers."""

    def __init__(self, node: DevNode, client: httpx.AsyncClient) -> None:
        self.node = node
        self.client = client
        self.next_id = 0
        self.tx = transfer(KEYS[0], 0, amount=5)
        self.hash = hashlib.sha256(self.tx).digest()

    async def setup(self) -> None:
        self.node.produce_block()
        self.node.check_tx(self.tx)
        self.node.check_tx(transfer(KEYS[1], 0, amount=6))
        self.node.produce_block()

    async def post(self, method: str, params: dict[str, Any]) -> Any:
        self.next_id += 1
        request = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        response = await self.client.post("/", json=request)
        document = response.json()
        return (
            {"http_status": response.status_code, **document} if "error" in document else document
        )

    async def get(self, path: str) -> Any:
        response = await self.client.get(path)
        document = response.json()
        return (
            document
            if response.status_code == 200
            else {"http_status": response.status_code, **document}
        )

    async def broadcast_commit(self, tx: bytes) -> Any:
        pending = asyncio.ensure_future(self.post("broadcast_tx_commit", {"tx": b64(tx)}))
        while not len(self.node.mempool) and not pending.done():
            await asyncio.sleep(0.005)
        if not pending.done():
            await asyncio.to_thread(self.node.produce_block)
        return await pending

    async def answer(self, name: str) -> Any:
        """The embedded node's answer to the request that recorded fixture ``name``."""
        hash_b64 = b64(self.hash)
        fresh = transfer(KEYS[2], 0)
        refused = transfer(KEYS[2], 9)
        requests: dict[str, tuple[str, dict[str, Any]]] = {
            "status": ("status", {}),
            "abci_info": ("abci_info", {}),
            "broadcast_tx_sync": ("broadcast_tx_sync", {"tx": b64(fresh)}),
            "broadcast_tx_sync_refused": ("broadcast_tx_sync", {"tx": b64(refused)}),
            "broadcast_tx_commit_refused": ("broadcast_tx_commit", {"tx": b64(refused)}),
            "tx": ("tx", {"hash": hash_b64}),
            "error_tx_not_found": ("tx", {"hash": b64(hashlib.sha256(b"absent").digest())}),
            "block": ("block", {"height": "2"}),
            "block_latest": ("block", {}),
            "block_results": ("block_results", {"height": "2"}),
            "block_results_empty": ("block_results", {"height": "1"}),
            "abci_query": (
                "abci_query",
                {"path": "/accounts/account", "data": _account(RECIPIENT)},
            ),
            "abci_query_missing": ("abci_query", {"path": "/nothing/here", "data": ""}),
            "error_unknown_method": ("no_such_method", {}),
            "error_bad_params": ("block", {"height": "abc"}),
            "error_height_too_high": ("block", {"height": "999999"}),
            "error_block_results_height_too_high": ("block_results", {"height": "999999"}),
            "error_height_negative": ("block", {"height": "-1"}),
            "error_abci_query_bad_hex": ("abci_query", {"path": "", "data": "zz"}),
            "error_broadcast_bad_base64": ("broadcast_tx_sync", {"tx": "%%%"}),
        }
        if name in requests:
            method, params = requests[name]
            return await self.post(method, params)
        if name == "error_broadcast_tx_sync_in_cache":
            again = transfer(KEYS[3], 0)
            await self.post("broadcast_tx_sync", {"tx": b64(again)})
            return await self.post("broadcast_tx_sync", {"tx": b64(again)})
        if name == "broadcast_tx_commit":
            return await self.broadcast_commit(transfer(KEYS[1], 1))
        if name == "error_tx_hex_in_json_body":
            return await self.post("tx", {"hash": self.hash.hex()})
        if name == "unknown_param_ignored":
            return await self.post("block", {"height": "1", "nope": 1})
        if name == "tx_uri_hex":
            return await self.get(f"/tx?hash=0x{self.hash.hex()}")
        if name == "block_uri":
            return await self.get("/block?height=2")
        if name == "error_height_too_high_uri":
            return await self.get("/block?height=999999")
        if name == "error_parse":
            response = await self.client.post("/", content=b"{not json")
            return {"http_status": response.status_code, **response.json()}
        raise AssertionError(f"no embedded request for fixture {name}")


def _account(address: str) -> str:
    from deoss.chain.query import QueryArgs
    from deoss.core import codec

    return codec.encode(QueryArgs(address=address)).hex()


HTTP_FIXTURES = [
    n for n in fixture_names() if n not in NOT_SERVED | WEBSOCKET | NOT_JSON_RPC | STRICTER
]


async def test_every_fixture_is_compared() -> None:
    """Each recorded answer is either compared here or named as left out."""
    assert HTTP_FIXTURES and WEBSOCKET
    assert {"status", "block", "block_results", "tx", "broadcast_tx_sync"} <= set(HTTP_FIXTURES)


async def test_http_answers_have_cometbft_shapes(node: DevNode) -> None:
    transport = httpx.ASGITransport(app=create_app(node))
    differences = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
        embedded = Embedded(node, client)
        await embedded.setup()
        for name in HTTP_FIXTURES:
            expected = fixture(name)
            actual = await embedded.answer(name)
            found = shape_differences(expected, actual)
            if found:
                differences[name] = found
    assert not differences, json.dumps(differences, indent=1)


def test_websocket_answers_have_cometbft_shapes(node: DevNode) -> None:
    app = create_app(node)
    answers: dict[str, Any] = {}
    with TestClient(app) as client, client.websocket_connect("/websocket") as socket:

        def request(request_id: int, method: str, **params: Any) -> Any:
            socket.send_json(
                {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
            )
            return socket.receive_json()

        node.produce_block()
        answers["ws_subscribe_ok"] = request(1, "subscribe", query="tm.event='NewBlock'")
        node.produce_block()
        answers["ws_new_block"] = socket.receive_json()
        node.check_tx(transfer(KEYS[0], 0))
        node.produce_block()
        answers["ws_new_block_with_tx"] = socket.receive_json()
        dup = request(2, "subscribe", query="tm.event='NewBlock'")
        answers["ws_error_already_subscribed"] = dup
        answers["ws_error_bad_query"] = request(3, "subscribe", query="tm.event==")
        answers["ws_unsubscribe"] = request(4, "unsubscribe", query="tm.event='NewBlock'")
        answers["ws_error_unknown_method"] = request(5, "no_such_method")
        answers["ws_block"] = request(6, "block", height="1")
        answers["ws_subscribe_tx_ok"] = request(7, "subscribe", query="tm.event='Tx'")
        node.check_tx(transfer(KEYS[0], 1))
        node.produce_block()
        answers["ws_tx"] = socket.receive_json()
    assert WEBSOCKET == set(answers)
    differences = {
        name: found
        for name, answer in answers.items()
        if (found := shape_differences(fixture(name), answer))
    }
    assert not differences, json.dumps(differences, indent=1)


async def test_unknown_parameters_are_refused_where_cometbft_ignores_them(node: DevNode) -> None:
    """The one knowing difference (STRICTER): CometBFT answers, the embedded node refuses."""
    assert "result" in fixture("unknown_param_ignored")
    transport = httpx.ASGITransport(app=create_app(node))
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
        embedded = Embedded(node, client)
        await embedded.setup()
        answer = await embedded.answer("unknown_param_ignored")
    assert -32602 == answer["error"]["code"]
    assert "unknown parameter 'nope'" in answer["error"]["data"]
