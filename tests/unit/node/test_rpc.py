"""The RPC in-process: every method's CometBFT shape, and a JSON-RPC error for every bad input."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from deoss.chain.errors import BadEncoding, BadNonce, NotFound
from deoss.chain.modules.accounts import Account
from deoss.chain.query import QueryArgs
from deoss.core import codec
from deoss.node.devnode import DevNode
from deoss.node.jsonrpc import json_depth
from deoss.node.rpc import RpcSettings, create_app
from tests.chain_fixtures import KEYS, RECIPIENT, transfer

with warnings.catch_warnings():  # starlette warns at import that it prefers httpx2
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.anyio

EXEC_RESULT_KEYS = ["code", "data", "log", "info", "gas_wanted", "gas_used", "events", "codespace"]


@asynccontextmanager
async def rpc_client(node: DevNode, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(node, RpcSettings(**settings))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
        yield client


async def call(client: httpx.AsyncClient, method: str, **params: Any) -> dict[str, Any]:
    response = await client.post(
        "/", json={"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
    )
    assert 200 == response.status_code
    body: dict[str, Any] = response.json()
    assert (7, "2.0") == (body["id"], body["jsonrpc"])
    return body


async def result(client: httpx.AsyncClient, method: str, **params: Any) -> Any:
    body = await call(client, method, **params)
    assert "error" not in body, body
    return body["result"]


async def error(client: httpx.AsyncClient, method: str, **params: Any) -> dict[str, Any]:
    body = await call(client, method, **params)
    assert "result" not in body, body
    return dict(body["error"])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def account_query(address: str) -> str:
    return codec.encode(QueryArgs(address=address)).hex()


async def test_status_has_cometbft_shape(node: DevNode) -> None:
    """status: node_info, sync_info with string heights and uppercase hex hashes."""
    block = node.produce_block().block
    async with rpc_client(node) as client:
        status = await result(client, "status")
    assert {"node_info", "sync_info", "validator_info"} == set(status)
    assert "test-chain" == status["node_info"]["network"]
    assert status["node_info"]["version"].startswith("0.38.")
    sync = status["sync_info"]
    assert "1" == sync["latest_block_height"]
    assert block.hash.hex().upper() == sync["latest_block_hash"]
    assert block.header.last_app_hash.hex().upper() == sync["latest_app_hash"]
    assert ("1", False) == (sync["earliest_block_height"], sync["catching_up"])
    assert sync["latest_block_time"].endswith("Z")


async def test_health_and_abci_info(node: DevNode) -> None:
    """abci_info reports the committed height and app hash (base64)."""
    node.produce_block()
    async with rpc_client(node) as client:
        assert {} == await result(client, "health")
        info = (await result(client, "abci_info"))["response"]
    assert ("1", b64(node.app_hash)) == (info["last_block_height"], info["last_block_app_hash"])


async def test_broadcast_tx_sync_accepts_and_refuses(node: DevNode) -> None:
    """broadcast_tx_sync returns the CheckTx code and log with the uppercase SHA-256 hash."""
    tx = transfer(KEYS[0], 0)
    async with rpc_client(node) as client:
        accepted = await result(client, "broadcast_tx_sync", tx=b64(tx))
        bad_nonce = await result(client, "broadcast_tx_sync", tx=b64(transfer(KEYS[1], 3)))
        garbage = await result(client, "broadcast_tx_sync", tx=b64(b"\x01\x02"))
    expected = {"code": 0, "data": "", "log": "", "codespace": ""}
    assert {**expected, "hash": hashlib.sha256(tx).hexdigest().upper()} == accepted
    assert (BadNonce.code, "nonce 3, expected 0") == (bad_nonce["code"], bad_nonce["log"])
    assert BadEncoding.code == garbage["code"]
    assert 1 == len(node.mempool)


async def test_broadcast_tx_commit_waits_for_the_block(node: DevNode) -> None:
    """broadcast_tx_commit answers once the block is committed, with both results."""
    tx = transfer(KEYS[0], 0, amount=3)
    async with rpc_client(node) as client:
        pending = asyncio.ensure_future(result(client, "broadcast_tx_commit", tx=b64(tx)))
        while not len(node.mempool):
            await asyncio.sleep(0.005)
        await asyncio.to_thread(node.produce_block)
        answer = await pending
    assert {"check_tx", "tx_result", "hash", "height"} == set(answer)
    assert EXEC_RESULT_KEYS == list(answer["tx_result"])
    assert ("1", 0, 0) == (
        answer["height"],
        answer["check_tx"]["code"],
        answer["tx_result"]["code"],
    )
    transfer_event = answer["tx_result"]["events"][0]
    assert "transfer" == transfer_event["type"]
    assert {"key": "amount", "value": "3", "index": True} in transfer_event["attributes"]


async def test_broadcast_tx_commit_refused_at_check_and_timeout(node: DevNode) -> None:
    """A refused tx answers at once with height 0; an unmined one times out as CometBFT does."""
    async with rpc_client(node, tx_commit_timeout_s=0.05) as client:
        refused = await result(client, "broadcast_tx_commit", tx=b64(transfer(KEYS[0], 9)))
        timeout = await error(client, "broadcast_tx_commit", tx=b64(transfer(KEYS[0], 0)))
    assert ("0", BadNonce.code) == (refused["height"], refused["check_tx"]["code"])
    assert 0 == refused["tx_result"]["code"]
    assert -32603 == timeout["code"]
    assert "timed out waiting for tx to be included in a block" == timeout["data"]


async def test_block_and_block_results_shapes(node: DevNode) -> None:
    """block: header/data/last_commit; block_results: ExecTxResult list and base64 app hash."""
    tx = transfer(KEYS[0], 0)
    node.check_tx(tx)
    block = node.produce_block().block
    async with rpc_client(node) as client:
        answer = await result(client, "block", height="1")
        latest = await result(client, "block")
        results = await result(client, "block_results", height=1)
    assert answer == latest
    assert block.hash.hex().upper() == answer["block_id"]["hash"]
    header = answer["block"]["header"]
    assert ("1", "test-chain", "") == (
        header["height"],
        header["chain_id"],
        header["last_commit_hash"],
    )
    assert block.header.last_app_hash.hex().upper() == header["app_hash"]
    assert [b64(tx)] == answer["block"]["data"]["txs"]
    assert ["height", "txs_results", "finalize_block_events", "validator_updates"] == list(results)[
        :4
    ]
    assert ("1", b64(block.app_hash), None, None) == (
        results["height"],
        results["app_hash"],
        results["validator_updates"],
        results["consensus_param_updates"],
    )
    assert EXEC_RESULT_KEYS == list(results["txs_results"][0])
    assert ("0", "0", None) == tuple(
        results["txs_results"][0][k] for k in ("gas_wanted", "gas_used", "data")
    )


async def test_block_heights_out_of_range(node: DevNode) -> None:
    """Heights above the chain, negative or not integers are refused with what was wrong."""
    async with rpc_client(node) as client:
        none_yet = await error(client, "block")
        node.produce_block()
        above = await error(client, "block_results", height=5)
        negative = await error(client, "block", height=-1)
        not_int = await error(client, "block", height="five")
    assert "no block has been committed yet" == none_yet["data"]
    assert (-32603, "Internal error") == (above["code"], above["message"])
    assert "height 5 must be less than or equal to the current blockchain height 1" == above["data"]
    assert "height must be greater than 0, but got -1" == negative["data"]
    assert (-32602, "Invalid params") == (not_int["code"], not_int["message"])
    assert "height: expected integer" in not_int["data"]


async def test_tx_by_hash_in_base64_or_hex(node: DevNode) -> None:
    """tx finds an included transaction by its SHA-256: base64 in a JSON body, 0x-hex in a
    URI; hex in a JSON body is read as base64, as CometBFT does, and so never found."""
    tx = transfer(KEYS[0], 0)
    node.check_tx(tx)
    node.produce_block()
    digest = hashlib.sha256(tx).digest()
    async with rpc_client(node) as client:
        by_base64 = await result(client, "tx", hash=b64(digest))
        by_hex = await error(client, "tx", hash=digest.hex())
        by_uri = (await client.get(f"/tx?hash=0x{digest.hex()}")).json()["result"]
        missing = await error(client, "tx", hash=b64(bytes(32)))
        short = await error(client, "tx", hash=b64(b"short"))
        not_base64 = await error(client, "tx", hash="%%%")
    assert by_base64 == by_uri
    read_as_base64 = base64.b64decode(digest.hex()).hex().upper()
    assert f"tx ({read_as_base64}) not found" == by_hex["data"]
    assert {"hash", "height", "index", "tx_result", "tx"} == set(by_base64)
    assert (digest.hex().upper(), "1", 0, b64(tx)) == tuple(
        by_base64[k] for k in ("hash", "height", "index", "tx")
    )
    assert f"tx ({'00' * 32}) not found" == missing["data"]
    assert (-32603, "tx (73686F7274) not found") == (short["code"], short["data"])
    assert -32602 == not_base64["code"] and "not valid base64" in not_base64["data"]


async def test_abci_query_post_and_uri(node: DevNode) -> None:
    """abci_query takes hex data (POST) or 0x data and a quoted path (URI)."""
    node.check_tx(transfer(KEYS[0], 0, amount=11))
    node.produce_block()
    async with rpc_client(node) as client:
        posted = await result(
            client, "abci_query", path="/accounts/account", data=account_query(RECIPIENT)
        )
        uri = await client.get(
            f'/abci_query?path="/accounts/account"&data=0x{account_query(RECIPIENT)}'
        )
        unknown = await result(client, "abci_query", path="/nothing/here")
        old = await error(client, "abci_query", path="/accounts/account", height=1000)
        bad_hex = await error(client, "abci_query", path="/accounts/account", data="zz")
    response = posted["response"]
    assert [
        "code",
        "log",
        "info",
        "index",
        "key",
        "value",
        "proofOps",
        "height",
        "codespace",
    ] == list(response)
    assert Account(balance=11) == codec.decode(base64.b64decode(response["value"]), Account)
    assert ("1", "0") == (response["height"], response["index"])
    assert (200, posted) == (uri.status_code, uri.json()["result"])
    assert NotFound.code == unknown["response"]["code"] and unknown["response"]["log"]
    assert "answers queries at the latest height" in old["data"]
    assert -32602 == bad_hex["code"] and "not valid hex" in bad_hex["data"]


async def test_protocol_errors(node: DevNode) -> None:
    """Bad JSON, unknown methods and parameters, wrong jsonrpc version: JSON-RPC errors."""
    async with rpc_client(node) as client:
        bad_json = await client.post("/", content=b"{not json")
        unknown = await error(client, "nope")
        missing = await error(client, "broadcast_tx_sync")
        extra = await error(client, "status", verbose=True)
        wrong_b64 = await error(client, "broadcast_tx_sync", tx="***")
        version = await client.post("/", json={"jsonrpc": "1.0", "id": 1, "method": "status"})
        websocket_only = await error(client, "subscribe", query="tm.event='Tx'")
        positional = await client.post(
            "/", json={"jsonrpc": "2.0", "id": 2, "method": "block", "params": ["1", "x"]}
        )
    assert (500, -32700) == (bad_json.status_code, bad_json.json()["error"]["code"])
    assert (-32601, "Method not found") == (unknown["code"], unknown["message"])
    assert "missing parameter 'tx'" in missing["data"]
    assert "unknown parameter 'verbose'" in extra["data"]
    assert "tx: not valid base64" in wrong_b64["data"]
    assert -32600 == version.json()["error"]["code"]
    assert -32601 == websocket_only["code"]
    assert "at most 1 parameters" in positional.json()["error"]["data"]


async def test_batch_and_notification(node: DevNode) -> None:
    """A batch answers in order, skipping notifications; a lone notification gets no body."""
    txs = [transfer(KEYS[0], nonce) for nonce in range(3)]
    batch = [
        {"jsonrpc": "2.0", "id": i, "method": "broadcast_tx_sync", "params": {"tx": b64(tx)}}
        for i, tx in enumerate(txs)
    ]
    batch.append({"jsonrpc": "2.0", "method": "status"})
    async with rpc_client(node) as client:
        answers = (await client.post("/", json=batch)).json()
        notification = await client.post("/", json={"jsonrpc": "2.0", "method": "health"})
    assert [0, 1, 2] == [a["id"] for a in answers]
    assert [0, 0, 0] == [a["result"]["code"] for a in answers]
    assert (200, b"") == (notification.status_code, notification.content)


async def test_uri_requests_and_errors(node: DevNode) -> None:
    """GET /method?args answers with id -1; errors come with HTTP 500, unknown paths 404."""
    node.produce_block()
    async with rpc_client(node) as client:
        ok = await client.get("/block?height=1")
        bad = await client.get("/block?height=abc")
        unknown = await client.get("/no_such_method")
        index = await client.get("/")
    assert (200, -1, "1") == (
        ok.status_code,
        ok.json()["id"],
        ok.json()["result"]["block"]["header"]["height"],
    )
    assert (500, -32602) == (bad.status_code, bad.json()["error"]["code"])
    assert (404, -32601) == (unknown.status_code, unknown.json()["error"]["code"])
    assert "status" in index.json()["methods"]


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b'{"jsonrpc": "2.0", "id": 1, "method": "block", "params": {"height": '
        + b"[" * 900
        + b"1"
        + b"]" * 900
        + b"}}",
    ],
)
async def test_deeply_nested_json_is_a_parse_error(node: DevNode, body: bytes) -> None:
    """JSON nested deeper than the limit is refused like any unparsable body (HTTP 500,
    -32700, saying the nesting is too deep), not a RecursionError."""
    async with rpc_client(node) as client:
        response = await client.post("/", content=body)
    assert (500, -32700) == (response.status_code, response.json()["error"]["code"])
    assert "nested deeper than" in response.json()["error"]["data"]


async def test_json_nested_within_the_limit_and_brackets_in_strings_are_fine(
    node: DevNode,
) -> None:
    """Depth counts structure only: brackets inside strings (escaped quotes included) do not
    count, and a request nested to the limit is answered."""
    async with rpc_client(node) as client:
        in_string = await error(client, "abci_query", path='\\"[[[' + "[" * 5000, data="zz")
        nested = await client.post(
            "/",
            content=b'{"jsonrpc": "2.0", "id": 3, "method": "health", "x": '
            + b"[" * 60
            + b"]" * 60
            + b"}",
        )
    assert "data: not valid hex" in in_string["data"]
    assert {} == nested.json()["result"]


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b"", 0),
        (b"[[], {}]", 2),
        (b'{"a": "]]]]", "b": ["[[\\"[["]}', 2),  # brackets and an escaped quote in strings
        (b'["\\\\", [1]]', 2),  # an escaped backslash ends before the quote
        (b'"unterminated [[[', 0),
        (b'[["' + b'\\"' * 10_000, 2),
        (b"[" * 3_000_000, 3_000_000),  # past one scanning chunk
    ],
)
def test_json_depth_counts_structure_only(body: bytes, depth: int) -> None:
    assert depth == json_depth(body)


@pytest.mark.parametrize(
    "query",
    ["height=" + "9" * 5000, 'height="' + "9" * 5000 + '"', "height=%C2%B2", "height=5%0A"],
)
async def test_uri_integers_are_a_few_ascii_digits(node: DevNode, query: str) -> None:
    """A 5,000-digit, non-ASCII or newline-terminated height is Invalid params, not a 500
    from int() or a height of 5."""
    node.produce_block()
    async with rpc_client(node) as client:
        response = await client.get("/block?" + query)
    assert (500, -32602) == (response.status_code, response.json()["error"]["code"])
    assert "height: expected an integer" in response.json()["error"]["data"]


async def test_json_integers_are_bounded_too(node: DevNode) -> None:
    """A height given as a 5,000-digit string, or a number beyond 64 bits, is refused."""
    node.produce_block()
    async with rpc_client(node) as client:
        long_string = await error(client, "block", height="9" * 5000)
        newline = await error(client, "block", height="1\n")
        huge = await client.post(
            "/",
            content=b'{"jsonrpc":"2.0","id":1,"method":"block","params":{"height":'
            + b"9" * 5000
            + b"}}",
        )
    assert (-32602, "height: expected integer") == (
        long_string["code"],
        long_string["data"][: len("height: expected integer")],
    )
    assert -32602 == newline["code"]
    assert (500, -32700) == (huge.status_code, huge.json()["error"]["code"])


def test_websocket_refuses_deep_json(node: DevNode) -> None:
    """The websocket answers a too-deep message with a parse error and stays open."""
    app = create_app(node)
    with TestClient(app) as client, client.websocket_connect("/websocket") as socket:
        socket.send_text("[" * 100_000)
        refused = socket.receive_json()
        socket.send_json({"jsonrpc": "2.0", "id": 2, "method": "health"})
        answer = socket.receive_json()
    assert (-32700, True) == (refused["error"]["code"], "nested deeper" in refused["error"]["data"])
    assert {} == answer["result"]


async def test_oversized_body_is_refused(node: DevNode) -> None:
    """A body above max_body_bytes gets HTTP 413 and an Invalid Request error."""
    async with rpc_client(node, max_body_bytes=1000) as client:
        response = await client.post("/", content=b" " * 2000)
    assert (413, -32600) == (response.status_code, response.json()["error"]["code"])
    assert "limit" in response.json()["error"]["data"]


def test_websocket_subscriptions(node: DevNode) -> None:
    """subscribe delivers NewBlock and matching Tx events tagged with the request id."""
    app = create_app(node)
    other = KEYS[3].address
    with TestClient(app) as client, client.websocket_connect("/websocket") as socket:
        socket.send_json(
            {
                "jsonrpc": "2.0",
                "id": "blocks",
                "method": "subscribe",
                "params": {"query": "tm.event='NewBlock'"},
            }
        )
        assert {"jsonrpc": "2.0", "id": "blocks", "result": {}} == socket.receive_json()
        query = f"tm.event='Tx' AND transfer.recipient='{RECIPIENT}'"
        socket.send_json({"jsonrpc": "2.0", "id": 5, "method": "subscribe", "params": [query]})
        assert {} == socket.receive_json()["result"]
        node.check_tx(transfer(KEYS[0], 0, to=other))
        node.check_tx(transfer(KEYS[0], 1, amount=4))
        node.produce_block()
        new_block = socket.receive_json()
        assert "blocks" == new_block["id"]
        assert ["NewBlock"] == new_block["result"]["events"]["tm.event"]
        value = new_block["result"]["data"]["value"]
        assert "tendermint/event/NewBlock" == new_block["result"]["data"]["type"]
        assert "1" == value["block"]["header"]["height"]
        assert 2 == len(value["result_finalize_block"]["tx_results"])
        tx_event = socket.receive_json()
        assert (5, query) == (tx_event["id"], tx_event["result"]["query"])
        tx_result = tx_event["result"]["data"]["value"]["TxResult"]
        assert ("1", 1) == (tx_result["height"], tx_result["index"])
        assert [RECIPIENT] == tx_event["result"]["events"]["transfer.recipient"]
        socket.send_json({"jsonrpc": "2.0", "id": 6, "method": "status"})
        assert "1" == socket.receive_json()["result"]["sync_info"]["latest_block_height"]


def test_websocket_unsubscribe_and_bad_queries(node: DevNode) -> None:
    """unsubscribe stops events; unknown subscriptions and bad queries are errors."""
    app = create_app(node)
    with TestClient(app) as client, client.websocket_connect("/websocket") as socket:

        def request(method: str, **params: Any) -> dict[str, Any]:
            socket.send_json({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
            answer: dict[str, Any] = socket.receive_json()
            return answer

        assert {} == request("subscribe", query="tm.event='NewBlock'")["result"]
        assert (
            "already subscribed"
            == request("subscribe", query="tm.event='NewBlock'")["error"]["data"]
        )
        assert {} == request("unsubscribe", query="tm.event='NewBlock'")["result"]
        assert (
            "subscription not found"
            == request("unsubscribe", query="tm.event='NewBlock'")["error"]["data"]
        )
        bad = request("subscribe", query="tm.event=='x'")["error"]
        assert (-32603, True) == (bad["code"], bad["data"].startswith("failed to parse query"))
        node.produce_block()
        socket.send_text("{broken")
        assert -32700 == socket.receive_json()["error"]["code"]  # no NewBlock event before it
