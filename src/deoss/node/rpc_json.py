"""The JSON shapes of CometBFT v0.38's RPC results, built from the node's records.

Encodings, as CometBFT writes them (rpc/core/types/responses.go, abci/types/types.go):

* int64 fields (heights, gas, index of abci_query) are decimal strings; uint32 fields (code,
  tx index, part-set total) are numbers;
* HexBytes fields (block and tx hashes, header hashes, status app hash, broadcast ``data``) are
  uppercase hex, ``""`` when empty; []byte fields (txs, ``value``, exec ``data``, block_results
  ``app_hash``) are base64, ``null`` when empty;
* ABCI results (ResponseCheckTx, ExecTxResult, ResponseQuery) list every field, defaults
  included, except in a Tx event, which leaves out every empty one; an empty list in
  block_results is ``null``; event attributes are plain strings with ``"index": true``;
* times are RFC 3339 in UTC with nanoseconds, trailing zeros dropped (Go's RFC3339Nano).

Header semantics follow CometBFT: ``header.app_hash`` of block h is the state after block h-1
(the state the block was executed on); ``block_results.app_hash`` of block h is the state after
it. Fields with no meaning on a single embedded producer (validators, commits, evidence) are
empty. ``data_hash`` is SHA-256 over the concatenated tx hashes (not CometBFT's Merkle root).
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

from deoss.chain.types import Event, QueryResult, TxResult
from deoss.node.store import BlockRecord

__all__ = [
    "abci_info_json",
    "abci_query_json",
    "b64",
    "block_body_json",
    "block_id_json",
    "block_json",
    "block_results_json",
    "broadcast_sync_json",
    "check_tx_json",
    "event_json",
    "exec_tx_result_json",
    "finalize_block_json",
    "hex_upper",
    "rfc3339",
    "status_json",
    "tx_event_json",
    "tx_json",
]

BLOCK_PROTOCOL = "11"  # CometBFT v0.38's block protocol version
P2P_PROTOCOL = "8"


def hex_upper(data: bytes) -> str:
    return data.hex().upper()


def b64(data: bytes) -> str | None:
    return base64.b64encode(data).decode("ascii") if data else None


def rfc3339(time_ns: int) -> str:
    """Go's RFC3339Nano in UTC: 2026-11-24T13:21:37.5Z."""
    seconds, fraction = divmod(time_ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + "Z"


def event_json(event: Event) -> dict[str, Any]:
    return {
        "type": event.type,
        "attributes": [{"key": k, "value": v, "index": True} for k, v in event.attributes],
    }


def exec_tx_result_json(result: TxResult | None) -> dict[str, Any]:
    """ExecTxResult; None gives the empty result CometBFT returns for a tx that was not run."""
    result = result or TxResult()
    return {
        "code": result.code,
        "data": b64(result.data),
        "log": result.log,
        "info": "",
        "gas_wanted": "0",
        "gas_used": "0",
        "events": [event_json(e) for e in result.events],
        "codespace": "",
    }


def check_tx_json(result: TxResult) -> dict[str, Any]:
    """ResponseCheckTx (the same fields as ExecTxResult in v0.38)."""
    return exec_tx_result_json(result)


def broadcast_sync_json(result: TxResult, tx_hash: bytes) -> dict[str, Any]:
    """ResultBroadcastTx: ``data`` is HexBytes here, unlike in the ABCI results."""
    return {
        "code": result.code,
        "data": hex_upper(result.data),
        "log": result.log,
        "codespace": "",
        "hash": hex_upper(tx_hash),
    }


def abci_query_json(result: QueryResult) -> dict[str, Any]:
    return {
        "response": {
            "code": result.code,
            "log": result.log,
            "info": "",
            "index": "0",
            "key": None,
            "value": b64(result.value),
            "proofOps": None,
            "height": str(result.height),
            "codespace": "",
        }
    }


def block_id_json(hash_: bytes) -> dict[str, Any]:
    return {"hash": hex_upper(hash_), "parts": {"total": 1 if hash_ else 0, "hash": ""}}


def _header_json(block: BlockRecord) -> dict[str, Any]:
    stored = block.header
    tx_hashes = b"".join(hashlib.sha256(tx).digest() for tx in block.txs)
    return {
        "version": {"block": BLOCK_PROTOCOL, "app": "0"},
        "chain_id": stored.header.chain_id,
        "height": str(block.height),
        "time": rfc3339(block.time_ns),
        "last_block_id": block_id_json(stored.last_block_hash),
        "last_commit_hash": "",
        "data_hash": hex_upper(hashlib.sha256(tx_hashes).digest()),
        "validators_hash": "",
        "next_validators_hash": "",
        "consensus_hash": "",
        "app_hash": hex_upper(stored.last_app_hash),
        "last_results_hash": "",
        "evidence_hash": "",
        "proposer_address": hex_upper(stored.header.proposer),
    }


def block_body_json(block: BlockRecord) -> dict[str, Any]:
    """types.Block: header, data.txs (base64), evidence, last_commit."""
    return {
        "header": _header_json(block),
        "data": {"txs": [b64(tx) for tx in block.txs]},
        "evidence": {"evidence": []},
        "last_commit": {
            "height": str(max(block.height - 1, 0)),
            "round": 0,
            "block_id": block_id_json(block.header.last_block_hash),
            "signatures": [],
        },
    }


def block_json(block: BlockRecord) -> dict[str, Any]:
    """ResultBlock: {"block_id", "block"}."""
    return {"block_id": block_id_json(block.hash), "block": block_body_json(block)}


def block_results_json(block: BlockRecord) -> dict[str, Any]:
    """ResultBlockResults: an empty list is ``null``, as Go writes a nil slice."""
    return {
        "height": str(block.height),
        "txs_results": [exec_tx_result_json(r) for r in block.results] or None,
        "finalize_block_events": [event_json(e) for e in block.events] or None,
        "validator_updates": None,
        "consensus_param_updates": None,
        "app_hash": b64(block.app_hash),
    }


def finalize_block_json(block: BlockRecord) -> dict[str, Any]:
    """ResponseFinalizeBlock, as the NewBlock event carries it: ``events`` and ``tx_results``
    only when not empty, no ``consensus_param_updates``, ``validator_updates`` always."""
    response: dict[str, Any] = {}
    if block.events:
        response["events"] = [event_json(e) for e in block.events]
    if block.results:
        response["tx_results"] = [exec_tx_result_json(r) for r in block.results]
    response["validator_updates"] = []
    response["app_hash"] = b64(block.app_hash)
    return response


def tx_event_json(block: BlockRecord, index: int) -> dict[str, Any]:
    """The ``value`` of a Tx event: abci.TxResult, every field omitted when it is empty or 0
    (``index`` of the first tx, ``code`` 0, an empty ``log``...), unlike in block_results."""
    result = block.results[index]
    full = exec_tx_result_json(result)
    tx_result: dict[str, Any] = {"height": str(block.height)}
    if index:
        tx_result["index"] = index
    tx_result["tx"] = b64(block.txs[index])
    tx_result["result"] = {k: v for k, v in full.items() if v not in (0, "0", "", None, [])}
    return {"TxResult": tx_result}


def tx_json(block: BlockRecord, index: int, tx_hash: bytes) -> dict[str, Any]:
    """ResultTx: {"hash", "height", "index", "tx_result", "tx"}."""
    return {
        "hash": hex_upper(tx_hash),
        "height": str(block.height),
        "index": index,
        "tx_result": exec_tx_result_json(block.results[index]),
        "tx": b64(block.txs[index]),
    }


def status_json(
    *, chain_id: str, latest: BlockRecord, earliest: BlockRecord | None, version: str
) -> dict[str, Any]:
    """ResultStatus: node_info, sync_info, validator_info (no validator key on a DevNode)."""
    node_id = hashlib.sha256(b"deoss-devnode" + chain_id.encode()).hexdigest()[:40]
    has_blocks = latest.height > 0
    first = earliest if earliest is not None and has_blocks else None
    return {
        "node_info": {
            "protocol_version": {"p2p": P2P_PROTOCOL, "block": BLOCK_PROTOCOL, "app": "0"},
            "id": node_id,
            "listen_addr": "",
            "network": chain_id,
            "version": version,
            "channels": "",
            "moniker": "deoss-devnode",
            "other": {"tx_index": "on", "rpc_address": ""},
        },
        "sync_info": {
            "latest_block_hash": hex_upper(latest.hash) if has_blocks else "",
            "latest_app_hash": hex_upper(latest.header.last_app_hash) if has_blocks else "",
            "latest_block_height": str(latest.height),
            "latest_block_time": rfc3339(latest.time_ns),
            "earliest_block_hash": hex_upper(first.hash) if first else "",
            "earliest_app_hash": hex_upper(first.header.last_app_hash) if first else "",
            "earliest_block_height": str(first.height if first else 0),
            "earliest_block_time": rfc3339(first.time_ns if first else 0),
            "catching_up": False,
        },
        "validator_info": {
            "address": "",
            "pub_key": {"type": "tendermint/PubKeyEd25519", "value": ""},
            "voting_power": "0",
        },
    }


def abci_info_json(*, height: int, app_hash: bytes, version: str) -> dict[str, Any]:
    """ResultABCIInfo: the app's last committed height and app hash (base64)."""
    return {
        "response": {
            "data": "deoss",
            "version": version,
            "app_version": "1",
            "last_block_height": str(height),
            "last_block_app_hash": b64(app_hash),
        }
    }
