"""One /websocket connection: JSON-RPC requests in, responses and subscription events out.

Requests on a connection run one at a time, in order (as CometBFT's websocket does). Events of
a subscription are sent as JSON-RPC responses carrying the id of the ``subscribe`` request and a
ResultEvent ``{"query", "data", "events"}``. Everything leaves through one queue written by one
task, so a response never interleaves with an event mid-frame. A client that lets more than
``max_pending_events`` events pile up loses its subscriptions, and is told so with a -32000
error (CometBFT's "client is not pulling messages fast enough").
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from deoss.node.events import Query, QueryError, Subscription
from deoss.node.jsonrpc import (
    InternalError,
    ParseError,
    ServerError,
    decode_json,
    error_response,
    success_response,
)

if TYPE_CHECKING:
    from deoss.node.rpc import RpcMethods

__all__ = ["WsSession"]


class WsSession:
    """The subscriptions and outgoing queue of one websocket connection."""

    def __init__(self, socket: WebSocket, methods: RpcMethods) -> None:
        self.socket = socket
        self.methods = methods
        self.subscriptions: dict[str, Subscription] = {}
        self._outgoing: asyncio.Queue[tuple[bool, dict[str, Any]]] = asyncio.Queue()
        self._pending_events = 0

    async def run(self) -> None:
        await self.socket.accept()
        sender = asyncio.create_task(self._send_loop())
        try:
            await self._receive_loop()
        finally:
            self.unsubscribe_all()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _receive_loop(self) -> None:
        while True:
            message = await self.socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                text = (message.get("bytes") or b"").decode("utf-8", "replace")
            try:
                document = decode_json(text.encode())
            except ParseError as exc:
                response: Any = error_response(None, exc)
            else:
                response = await self.methods.handle_request(document, self)
            if response is not None:
                self._outgoing.put_nowait((False, response))

    async def _send_loop(self) -> None:
        while True:
            is_event, message = await self._outgoing.get()
            if is_event:
                self._pending_events -= 1
            try:
                await self.socket.send_text(msgspec.json.encode(message).decode())
            except (WebSocketDisconnect, RuntimeError, OSError):
                return  # the receive loop sees the disconnect and cleans up

    # --- subscriptions ---------------------------------------------------------------------

    def subscribe(self, query: Query, request_id: Any) -> None:
        """Start sending the events matching ``query``, tagged with ``request_id``."""
        limit = self.methods.settings.max_subscriptions_per_client
        if query.text in self.subscriptions:
            raise InternalError("already subscribed")
        if len(self.subscriptions) >= limit:
            raise InternalError(f"max_subscriptions_per_client {limit} reached")
        loop = asyncio.get_running_loop()
        subscription = Subscription(query, loop, lambda event: None)
        subscription.deliver = lambda event: self._deliver(subscription, request_id, event)
        try:
            self.methods.hub.subscribe(subscription)
        except QueryError as exc:
            raise InternalError(str(exc)) from exc
        self.subscriptions[query.text] = subscription

    def unsubscribe(self, query_text: str) -> None:
        subscription = self.subscriptions.pop(query_text, None)
        if subscription is None:
            raise InternalError("subscription not found")
        self.methods.hub.unsubscribe(subscription)

    def unsubscribe_all(self) -> None:
        for subscription in self.subscriptions.values():
            self.methods.hub.unsubscribe(subscription)
        self.subscriptions.clear()

    def _deliver(self, subscription: Subscription, request_id: Any, event: dict[str, Any]) -> None:
        """Queue one event (runs on this connection's loop)."""
        if self.subscriptions.get(subscription.query.text) is not subscription:
            return  # unsubscribed while the event was on its way
        if self._pending_events >= self.methods.settings.max_pending_events:
            del self.subscriptions[subscription.query.text]
            self.methods.hub.unsubscribe(subscription)
            reason = "client is not pulling messages fast enough"
            error = ServerError(f"subscription was canceled (reason: {reason})")
            self._outgoing.put_nowait((False, error_response(request_id, error)))
            return
        self._pending_events += 1
        self._outgoing.put_nowait((True, success_response(request_id, event)))
