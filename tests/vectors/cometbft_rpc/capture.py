"""Record a real CometBFT node's RPC answers as fixtures (see README.md in this folder).

Run against a throwaway validator with CometBFT's built-in kvstore app:

    python tests/vectors/cometbft_rpc/capture.py http://127.0.0.1:36657 tests/vectors/cometbft_rpc

Each answer is written as received (the JSON-RPC envelope included); error answers also get
the HTTP status as ``http_status``. Nothing is edited by hand.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect


class Recorder:
    def __init__(self, rpc: str, out: Path) -> None:
        self.rpc = rpc
        self.ws = rpc.replace("http", "ws", 1) + "/websocket"
        self.out = out
        self.next_id = 0

    def save(self, name: str, document: Any) -> None:
        text = json.dumps(document, indent=2) + "\n"
        (self.out / f"{name}.json").write_text(text)

    def post(self, method: str, params: dict[str, Any]) -> tuple[int, Any]:
        self.next_id += 1
        request = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        response = httpx.post(self.rpc, json=request)
        return response.status_code, response.json()

    def get(self, path: str) -> tuple[int, Any]:
        response = httpx.get(self.rpc + path)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, {"body_text": response.text}

    def record(self, name: str, method: str, params: dict[str, Any]) -> Any:
        status, document = self.post(method, params)
        self.save(name, {"http_status": status, **document} if "error" in document else document)
        return document

    def record_get(self, name: str, path: str) -> None:
        status, document = self.get(path)
        self.save(name, {"http_status": status, **document} if status != 200 else document)


async def _answer(socket: ClientConnection, request_id: int) -> Any:
    while True:
        message = json.loads(await asyncio.wait_for(socket.recv(), 10))
        if message.get("id") == request_id:
            return message


async def _request(socket: ClientConnection, request_id: int, method: str, **params: Any) -> Any:
    request = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    await socket.send(json.dumps(request))
    return await _answer(socket, request_id)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def record_websocket(rec: Recorder) -> None:
    new_block = "tm.event='NewBlock'"
    async with connect(rec.ws) as socket:
        rec.save("ws_subscribe_ok", await _request(socket, 1, "subscribe", query=new_block))
        rec.save("ws_new_block", await _answer(socket, 1))
        rec.post("broadcast_tx_sync", {"tx": b64(b"deoss-nb=v%d" % time.time_ns())})
        while True:
            event = await _answer(socket, 1)
            if event["result"]["data"]["value"]["block"]["data"]["txs"]:
                rec.save("ws_new_block_with_tx", event)
                break
        dup = await _request(socket, 2, "subscribe", query=new_block)
        rec.save("ws_error_already_subscribed", dup)
        rec.save("ws_error_bad_query", await _request(socket, 3, "subscribe", query="tm.event=="))
        rec.save("ws_unsubscribe", await _request(socket, 4, "unsubscribe", query=new_block))
        rec.save("ws_error_unknown_method", await _request(socket, 5, "no_such_method"))
        rec.save("ws_block", await _request(socket, 6, "block", height="1"))
        tx_query = "tm.event='Tx'"
        rec.save("ws_subscribe_tx_ok", await _request(socket, 7, "subscribe", query=tx_query))
        rec.post("broadcast_tx_sync", {"tx": b64(b"deoss-ws=v%d" % time.time_ns())})
        rec.save("ws_tx", await _answer(socket, 7))


def main(rpc: str, out: Path) -> None:
    rec = Recorder(rpc, out)
    rec.record("status", "status", {})
    rec.record("abci_info", "abci_info", {})
    tx = b"deoss-key=deoss-value-%d" % time.time_ns()
    rec.record("broadcast_tx_sync", "broadcast_tx_sync", {"tx": b64(tx)})
    # the same signed bytes again: what a client re-sending after a lost answer gets
    rec.record("error_broadcast_tx_sync_in_cache", "broadcast_tx_sync", {"tx": b64(tx)})
    refused = b"no equals sign"  # kvstore's CheckTx refuses it with code 2
    rec.record("broadcast_tx_sync_refused", "broadcast_tx_sync", {"tx": b64(refused)})
    commit_tx = b"deoss-commit=v%d" % time.time_ns()
    rec.record("broadcast_tx_commit", "broadcast_tx_commit", {"tx": b64(commit_tx)})
    rec.record("broadcast_tx_commit_refused", "broadcast_tx_commit", {"tx": b64(refused)})
    hash_ = hashlib.sha256(tx).digest()
    for _ in range(100):  # until the tx indexer has it
        _, document = rec.post("tx", {"hash": b64(hash_)})
        if "result" in document:
            break
        time.sleep(0.2)
    rec.save("tx", document)
    height = int(document["result"]["height"])
    rec.record_get("tx_uri_hex", f"/tx?hash=0x{hash_.hex()}")
    # a hash in hex in a JSON body is read as base64: 48 wrong bytes, "not found"
    rec.record("error_tx_hex_in_json_body", "tx", {"hash": hash_.hex()})
    rec.record("error_tx_not_found", "tx", {"hash": b64(hashlib.sha256(b"absent").digest())})
    rec.record("block", "block", {"height": str(height)})
    rec.record("block_latest", "block", {})
    rec.record("block_results", "block_results", {"height": str(height)})
    rec.record("block_results_empty", "block_results", {"height": "1"})
    rec.record("abci_query", "abci_query", {"path": "", "data": b"deoss-key".hex()})
    rec.record("abci_query_missing", "abci_query", {"path": "", "data": b"absent".hex()})
    search = {"query": f"tx.height={height}", "page": "1", "per_page": "30"}
    rec.record("tx_search", "tx_search", search)
    rec.record("error_unknown_method", "no_such_method", {})
    rec.record_get("error_unknown_method_uri", "/no_such_method")
    rec.record("error_bad_params", "block", {"height": "abc"})
    rec.record("unknown_param_ignored", "block", {"height": "1", "nope": 1})
    rec.record("error_height_too_high", "block", {"height": "999999"})
    rec.record("error_block_results_height_too_high", "block_results", {"height": "999999"})
    rec.record("error_height_negative", "block", {"height": "-1"})
    rec.record_get("error_height_too_high_uri", "/block?height=999999")
    rec.record("error_abci_query_bad_hex", "abci_query", {"path": "", "data": "zz"})
    rec.record("error_broadcast_bad_base64", "broadcast_tx_sync", {"tx": "%%%"})
    response = httpx.post(rpc, content=b"{not json")
    rec.save("error_parse", {"http_status": response.status_code, **response.json()})
    rec.record_get("block_uri", f"/block?height={height}")
    asyncio.run(record_websocket(rec))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
