"""The common service app: a client that hangs up mid-upload is logged as 499, not a crash."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request

from deoss.services.common.app import create_service_app
from deoss.services.common.errors import CLIENT_CLOSED


def test_a_client_that_goes_away_mid_body_gets_499_and_the_app_keeps_serving() -> None:
    app, _ = create_service_app("miner", title="t")
    read: list[int] = []

    @app.put("/upload")
    async def upload(request: Request) -> dict[str, int]:
        async for chunk in request.stream():
            read.append(len(chunk))
        return {"bytes": sum(read)}

    messages = iter(
        [
            {"type": "http.request", "body": b"x" * 10, "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": "/upload",
        "raw_path": b"/upload",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-length", b"100")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    asyncio.run(app(scope, receive, send))
    assert [10] == read
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert CLIENT_CLOSED == start["status"]
