"""The CometBFT v0.38-compatible RPC of a DevNode: JSON-RPC POST, URI GET and /websocket.

Methods: ``status``, ``health``, ``abci_info``, ``abci_query``, ``broadcast_tx_sync``,
``broadcast_tx_commit``, ``block``, ``block_results``, ``tx``; on /websocket also
``subscribe``, ``unsubscribe`` and ``unsubscribe_all``. Every method answers with CometBFT's
result shape (rpc_json.py) and refuses bad input with a JSON-RPC error object (jsonrpc.py)
whose ``data`` says what was wrong. docs/chain.md ("## RPC") shows each with examples.

Routes only read the request, call one method and write the response; the methods call the
node (off the event loop: the node serialises machine access with a lock) and the store. No
module globals: ``create_app(node)`` builds the whole app for one node, so a test process can
serve many. Like CometBFT, JSON-RPC errors over POST come with HTTP 200 (500 for a body that
is not JSON) and URI-style errors with HTTP 500; bodies over the limit get HTTP 413.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

import deoss
from deoss.chain.types import TxResult
from deoss.node import rpc_json
from deoss.node.devnode import DevNode, NodeError
from deoss.node.events import EventHub, QueryError, parse_query
from deoss.node.jsonrpc import (
    URI_REQUEST_ID,
    InternalError,
    InvalidRequest,
    MethodNotFound,
    Param,
    ParamKind,
    ParseError,
    RpcError,
    decode_json,
    error_response,
    params_from_json,
    params_from_uri,
    success_response,
)
from deoss.node.rpc_ws import WsSession
from deoss.node.store import BlockRecord, tx_hash

__all__ = ["METHODS", "RpcMethods", "RpcSettings", "create_app"]

log = logging.getLogger(__name__)
T = TypeVar("T")

DECODE_IN_THREAD_BYTES = 64 * 1024
COMETBFT_COMPAT_VERSION = "0.38.26"  # the version whose answers tests/vectors/cometbft_rpc holds
VERSION = f"{COMETBFT_COMPAT_VERSION}+deoss.{deoss.__version__}"


@dataclass(frozen=True)
class RpcSettings:
    max_body_bytes: int = 8 * 1024 * 1024
    tx_commit_timeout_s: float = 10.0  # CometBFT's timeout_broadcast_tx_commit
    max_subscription_clients: int = 1000
    max_subscriptions_per_client: int = 100
    max_pending_events: int = 10_000  # per websocket; a slower client loses its subscription


@dataclass(frozen=True)
class CallContext:
    request_id: Any
    session: WsSession | None = None


Handler = Callable[["RpcMethods", dict[str, Any], CallContext], Awaitable[Any]]


@dataclass(frozen=True)
class Method:
    handler: Handler
    params: tuple[Param, ...] = ()
    websocket_only: bool = False


class RpcMethods:
    """The RPC methods over one node; shared by HTTP and websocket requests."""

    def __init__(self, node: DevNode, hub: EventHub, settings: RpcSettings) -> None:
        self.node = node
        self.hub = hub
        self.settings = settings

    # --- dispatch --------------------------------------------------------------------------

    async def handle_request(self, request: Any, session: WsSession | None) -> Any:
        """One JSON-RPC request object -> its response (None for a notification)."""
        if not isinstance(request, dict):
            return error_response(None, InvalidRequest("a request must be a JSON object"))
        if "id" not in request:
            return None  # a notification: JSON-RPC says no reply, as CometBFT does
        request_id = request["id"]
        try:
            if request.get("jsonrpc", "2.0") != "2.0":
                raise InvalidRequest('"jsonrpc" must be "2.0"')
            name = request.get("method")
            if not isinstance(name, str):
                raise InvalidRequest('"method" must be a string')
            method = self.lookup(name, websocket=session is not None)
            params = params_from_json(method.params, request.get("params"))
            result = await self.invoke(name, method, params, CallContext(request_id, session))
        except RpcError as exc:
            return error_response(request_id, exc)
        return success_response(request_id, result)

    def lookup(self, name: str, *, websocket: bool) -> Method:
        method = METHODS.get(name)
        if method is None or (method.websocket_only and not websocket):
            raise MethodNotFound()  # no ``data``, as CometBFT (GET / lists the methods)
        return method

    async def invoke(
        self, name: str, method: Method, params: dict[str, Any], context: CallContext
    ) -> Any:
        try:
            return await method.handler(self, params, context)
        except RpcError:
            raise
        except Exception as exc:  # the RPC edge: report, never drop the connection
            log.exception("RPC method %s failed", name)
            raise InternalError(f"{name} failed: {exc!r}") from exc

    async def _on_node(self, function: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(function, *args)
        except NodeError as exc:
            raise InternalError(str(exc)) from exc

    # --- info ------------------------------------------------------------------------------

    async def status(self, params: dict[str, Any], context: CallContext) -> Any:
        latest = self.node.last_block
        earliest = await self._on_node(self.node.store.get_block, 1) if latest.height else None
        return rpc_json.status_json(
            chain_id=self.node.chain_id, latest=latest, earliest=earliest, version=VERSION
        )

    async def health(self, params: dict[str, Any], context: CallContext) -> Any:
        return {}

    async def abci_info(self, params: dict[str, Any], context: CallContext) -> Any:
        latest = self.node.last_block
        return rpc_json.abci_info_json(
            height=latest.height, app_hash=latest.app_hash, version=VERSION
        )

    async def abci_query(self, params: dict[str, Any], context: CallContext) -> Any:
        height = params.get("height", 0)
        if height not in (0, self.node.height):
            raise InternalError(
                f"height {height} is not available: this node answers queries at the latest"
                f" height ({self.node.height}) only; pass 0"
            )
        result = await self._on_node(
            self.node.query, params.get("path", ""), params.get("data", b"")
        )
        return rpc_json.abci_query_json(result)

    # --- transactions ----------------------------------------------------------------------

    async def broadcast_tx_sync(self, params: dict[str, Any], context: CallContext) -> Any:
        tx = params["tx"]
        result = await self._check_tx(tx)
        return rpc_json.broadcast_sync_json(result, tx_hash(tx))

    async def _check_tx(self, tx: bytes) -> TxResult:
        """check_tx on the loop when the node is idle (cheap), else on a worker thread."""
        try:
            result = self.node.check_tx_if_idle(tx)
        except NodeError as exc:
            raise InternalError(str(exc)) from exc
        return result if result is not None else await self._on_node(self.node.check_tx, tx)

    async def broadcast_tx_commit(self, params: dict[str, Any], context: CallContext) -> Any:
        tx = params["tx"]
        hash_ = tx_hash(tx)
        included = self.hub.wait_for_tx(hash_)  # before the check: the block may be quick
        try:
            try:
                check = await self._check_tx(tx)
            except InternalError as exc:
                raise InternalError(f"error on broadcastTxCommit: {exc}") from exc
            response = {
                "check_tx": rpc_json.check_tx_json(check),
                "tx_result": rpc_json.exec_tx_result_json(None),
                "hash": rpc_json.hex_upper(hash_),
                "height": "0",
            }
            if check.code != 0:
                return response
            try:
                inclusion = await asyncio.wait_for(included, self.settings.tx_commit_timeout_s)
            except TimeoutError:
                raise InternalError("timed out waiting for tx to be included in a block") from None
        finally:
            self.hub.forget_tx(hash_, included)
        response["tx_result"] = rpc_json.exec_tx_result_json(inclusion.result)
        response["height"] = str(inclusion.height)
        return response

    async def tx(self, params: dict[str, Any], context: CallContext) -> Any:
        hash_ = params["hash"]
        found = await self._on_node(self.node.store.find_tx, hash_)
        if found is None:
            raise InternalError(f"tx ({rpc_json.hex_upper(hash_)}) not found")
        height, index = found
        block = await self._block_at(height)
        return rpc_json.tx_json(block, index, hash_)

    # --- blocks ----------------------------------------------------------------------------

    async def block(self, params: dict[str, Any], context: CallContext) -> Any:
        return rpc_json.block_json(await self._block_at(self._height(params.get("height"))))

    async def block_results(self, params: dict[str, Any], context: CallContext) -> Any:
        block = await self._block_at(self._height(params.get("height")))
        return rpc_json.block_results_json(block)

    def _height(self, height: int | None) -> int:
        """CometBFT's rules: absent or 0 = latest; otherwise 1..latest."""
        latest = self.node.height
        if not height:
            if latest == 0:
                raise InternalError("no block has been committed yet")
            return latest
        if height < 0:
            raise InternalError(f"height must be greater than 0, but got {height}")
        if height > latest:
            raise InternalError(
                f"height {height} must be less than or equal to the current blockchain"
                f" height {latest}"
            )
        return height

    async def _block_at(self, height: int) -> BlockRecord:
        block = self.node.last_block
        if block.height == height:
            return block
        found = await self._on_node(self.node.store.get_block, height)
        if found is None:
            raise InternalError(f"block {height} is not in the store")
        return found

    # --- subscriptions (websocket) -----------------------------------------------------------

    async def subscribe(self, params: dict[str, Any], context: CallContext) -> Any:
        session = _session(context)
        try:
            query = parse_query(params["query"])
        except QueryError as exc:
            raise InternalError(f"failed to parse query: {exc}") from exc
        session.subscribe(query, context.request_id)
        return {}

    async def unsubscribe(self, params: dict[str, Any], context: CallContext) -> Any:
        _session(context).unsubscribe(params["query"])
        return {}

    async def unsubscribe_all(self, params: dict[str, Any], context: CallContext) -> Any:
        _session(context).unsubscribe_all()
        return {}


def _session(context: CallContext) -> WsSession:
    if context.session is None:  # lookup() keeps websocket methods off HTTP
        raise MethodNotFound()
    return context.session


_HEIGHT = Param("height", ParamKind.INT)
_TX = Param("tx", ParamKind.BYTES, required=True)
_QUERY = Param("query", ParamKind.STR, required=True)

METHODS: dict[str, Method] = {
    "status": Method(RpcMethods.status),
    "health": Method(RpcMethods.health),
    "abci_info": Method(RpcMethods.abci_info),
    "abci_query": Method(
        RpcMethods.abci_query,
        (
            Param("path", ParamKind.STR),
            Param("data", ParamKind.HEX_BYTES),
            _HEIGHT,
            Param("prove", ParamKind.BOOL),
        ),
    ),
    "broadcast_tx_sync": Method(RpcMethods.broadcast_tx_sync, (_TX,)),
    "broadcast_tx_commit": Method(RpcMethods.broadcast_tx_commit, (_TX,)),
    "block": Method(RpcMethods.block, (_HEIGHT,)),
    "block_results": Method(RpcMethods.block_results, (_HEIGHT,)),
    "tx": Method(
        RpcMethods.tx,
        (Param("hash", ParamKind.HASH, required=True), Param("prove", ParamKind.BOOL)),
    ),
    "subscribe": Method(RpcMethods.subscribe, (_QUERY,), websocket_only=True),
    "unsubscribe": Method(RpcMethods.unsubscribe, (_QUERY,), websocket_only=True),
    "unsubscribe_all": Method(RpcMethods.unsubscribe_all, (), websocket_only=True),
}


# --- HTTP ----------------------------------------------------------------------------------


def json_response(body: Any, status_code: int = 200) -> Response:
    return Response(msgspec.json.encode(body), status_code, media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise InvalidRequest(f"request body is {declared} bytes, the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InvalidRequest(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def handle_post(methods: RpcMethods, request: Request) -> Response:
    try:
        body = await read_body(request, methods.settings.max_body_bytes)
    except InvalidRequest as exc:
        return json_response(error_response(None, exc), 413)
    except ClientDisconnect:
        return Response(status_code=499)  # the client went away mid-request: nobody to answer
    try:
        # a large body is decoded off the loop: its depth scan and decoding take a while
        large = len(body) > DECODE_IN_THREAD_BYTES
        document = await asyncio.to_thread(decode_json, body) if large else decode_json(body)
    except ParseError as exc:
        return json_response(error_response(None, exc), 500)
    if not isinstance(document, list):
        response = await methods.handle_request(document, None)
        return Response(status_code=200) if response is None else json_response(response)
    if not document:
        return json_response(error_response(None, InvalidRequest("empty batch")))
    # a batch runs in order: a key's transactions must reach check_tx in nonce order
    responses = [await methods.handle_request(item, None) for item in document]
    return json_response([r for r in responses if r is not None])


async def handle_uri(methods: RpcMethods, name: str, request: Request) -> Response:
    try:
        method = methods.lookup(name, websocket=False)
    except MethodNotFound as exc:
        return json_response(error_response(URI_REQUEST_ID, exc), 404)
    try:
        params = params_from_uri(method.params, dict(request.query_params))
        result = await methods.invoke(name, method, params, CallContext(URI_REQUEST_ID))
    except RpcError as exc:
        return json_response(error_response(URI_REQUEST_ID, exc), 500)
    return json_response(success_response(URI_REQUEST_ID, result))


def create_app(node: DevNode, settings: RpcSettings | None = None) -> FastAPI:
    """The RPC app of ``node``; it listens to the node's blocks until the app shuts down."""
    settings = settings or RpcSettings()
    hub = EventHub(settings.max_subscription_clients)
    methods = RpcMethods(node, hub, settings)
    node.add_listener(hub.publish)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        node.remove_listener(hub.publish)

    app = FastAPI(
        title="DeOSS chain RPC (CometBFT v0.38 subset)",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.rpc = methods

    @app.post("/")
    async def post_root(request: Request) -> Response:
        return await handle_post(methods, request)

    @app.get("/")
    async def list_methods() -> Response:
        names = [n for n, m in METHODS.items() if not m.websocket_only]
        return json_response({"methods": names, "websocket": "/websocket"})

    @app.get("/{name}")
    async def get_method(name: str, request: Request) -> Response:
        return await handle_uri(methods, name, request)

    @app.websocket("/websocket")
    async def websocket(socket: WebSocket) -> None:
        await WsSession(socket, methods).run()

    return app
