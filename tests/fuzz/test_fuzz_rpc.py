"""Fuzzing the chain node's RPC (tests/fuzz/openapi.py does the HTTP services): every method,
with parameters of the declared kinds, of the wrong kinds and garbage, as JSON-RPC POST (single
and batch), as URI GET, and as bodies that are not JSON-RPC at all.

The RPC answers like CometBFT: errors over POST come with HTTP 200 (500 for a body that is not
JSON), URI errors with HTTP 500. So the check is not "below 500" but: every answer is a JSON-RPC
document, a 500 carries an error object, no method ends in the catch-all (an unexpected
exception, logged by the RPC), nothing escapes the app, and the node still answers ``health``.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import strategies as st

from deoss.node.devnode import DevNode
from deoss.node.jsonrpc import ParamKind
from deoss.node.rpc import METHODS, RpcSettings, create_app
from tests.chain_fixtures import KEYS, node, transfer
from tests.fuzz.openapi import EXAMPLES, GARBAGE, LATIN1, examples

__all__ = ["node"]

pytestmark = pytest.mark.anyio

PARSE_ERROR, INVALID_REQUEST = -32700, -32600
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)


def _bytes_as(kind: ParamKind) -> st.SearchStrategy[str]:
    raw = st.binary(max_size=48)
    if kind is ParamKind.BYTES:
        return raw.map(lambda b: base64.b64encode(b).decode())
    if kind is ParamKind.HEX_BYTES:
        return raw.map(bytes.hex)
    digest = st.binary(min_size=32, max_size=32)  # HASH: base64 or hex
    return digest.map(bytes.hex) | digest.map(lambda b: base64.b64encode(b).decode())


def typed_value(kind: ParamKind, tx: bytes) -> st.SearchStrategy[Any]:
    """A value of ``kind`` as JSON would carry it, or one of another kind."""
    if kind is ParamKind.INT:
        right: st.SearchStrategy[Any] = st.integers(min_value=-3, max_value=5)
        right |= st.integers(min_value=-(2**70), max_value=2**70).map(str)
    elif kind is ParamKind.BOOL:
        right = st.booleans() | st.sampled_from(["true", "false", "1", "yes"])
    elif kind is ParamKind.STR:
        right = st.sampled_from(["/accounts/account", "", "/nope", "tm.event='NewBlock'"])
        right |= st.text(max_size=20)
    else:
        right = _bytes_as(kind)
        if kind is ParamKind.BYTES:
            right |= st.just(base64.b64encode(tx).decode())
    return st.one_of(right, JSON_VALUES, GARBAGE)


METHOD_NAMES = st.one_of(st.sampled_from(sorted(METHODS)), GARBAGE)


@st.composite
def json_request(draw: st.DrawFn, tx: bytes) -> Any:
    name = draw(METHOD_NAMES)
    specs = METHODS[name].params if name in METHODS else ()
    params: Any = {s.name: draw(typed_value(s.kind, tx)) for s in specs if draw(st.booleans())}
    shape = draw(st.integers(0, 5))
    if shape == 0:
        params = list(params.values())
    elif shape == 1:
        params = draw(JSON_VALUES)  # neither object nor array, or unknown names
    request: dict[str, Any] = {"jsonrpc": "2.0", "id": draw(JSON_SCALARS), "method": name}
    if params is not None:
        request["params"] = params
    if draw(st.integers(0, 6)) == 0:
        request = draw(st.dictionaries(st.sampled_from(sorted(request)), JSON_VALUES))
    return request


@st.composite
def post_bodies(draw: st.DrawFn, tx: bytes) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:
        return httpx.Request("POST", "/", json=draw(JSON_VALUES)).content
    if kind == 2:
        batch = draw(st.lists(json_request(tx), max_size=3))
        return httpx.Request("POST", "/", json=batch).content
    return httpx.Request("POST", "/", json=draw(json_request(tx))).content


@st.composite
def uri_requests(draw: st.DrawFn, tx: bytes) -> tuple[str, dict[str, str]]:
    name = draw(METHOD_NAMES)
    specs = METHODS[name].params if name in METHODS else ()
    query = {}
    for spec in specs:
        if draw(st.booleans()):
            value = draw(typed_value(spec.kind, tx))
            query[spec.name] = value if isinstance(value, str) else str(value)
    if draw(st.integers(0, 4)) == 0:
        query[draw(st.text(LATIN1, min_size=1, max_size=8))] = draw(GARBAGE)
    return name, query


class Failures(logging.Handler):
    """Collects what the RPC logs at ERROR: the catch-all of an unexpected exception."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def failures() -> Iterator[Failures]:
    handler = Failures()
    logger = logging.getLogger("deoss.node")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def assert_json_rpc(response: httpx.Response, what: object) -> None:
    if response.status_code == 200 and not response.content:
        return  # a notification (no id): no reply
    assert response.status_code in (200, 404, 413, 500), (what, response.status_code)
    body = response.json()
    documents = body if isinstance(body, list) else [body]
    for document in documents:
        assert isinstance(document, dict), (what, response.status_code, document)
        assert "2.0" == document.get("jsonrpc"), (what, response.status_code, document)
        assert ("result" in document) != ("error" in document), (what, document)
    if response.status_code != 200:
        assert "error" in body, (what, body)


async def test_rpc_answers_every_request_with_json_rpc(node: DevNode, failures: Failures) -> None:
    node.produce_block()
    tx = transfer(KEYS[0], 0)
    app = create_app(node, RpcSettings(tx_commit_timeout_s=0.05, max_body_bytes=4096))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
        for body in examples(post_bodies(tx), 4 * EXAMPLES):
            response = await client.post("/", content=body)
            assert_json_rpc(response, body)
        for name, query in examples(uri_requests(tx), 4 * EXAMPLES):
            response = await client.get(f"/{quote(name, safe='')}", params=query)
            if name.strip(".") == "" or "/" in name:  # the index, or no route: not JSON-RPC
                assert response.status_code < 500, (name, query, response.text)
            else:
                assert_json_rpc(response, (name, query))
        assert [] == [r.getMessage() for r in failures.records]
        health = await client.get("/health")
        assert 200 == health.status_code, health.text
