"""The common service app: a client that hangs up mid-upload is logged as 499, not a crash;
every request is counted and logged once."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator, MutableMapping
from typing import Any

import httpx
import pytest
from fastapi import Request
from fastapi.responses import StreamingResponse

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

    messages: Iterator[dict[str, Any]] = iter(
        [
            {"type": "http.request", "body": b"x" * 10, "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: MutableMapping[str, Any]) -> None:
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


def test_every_request_is_counted_and_logged_once_with_its_status(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One JSON line per request (not for /healthz and /metrics), with ts, status and ms; the
    Prometheus counter per status; a streamed body is logged once it is all sent."""
    app, _ = create_service_app("gateway", title="t")

    @app.get("/streamed")
    async def streamed() -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            for _ in range(3):
                yield b"x" * 1000

        return StreamingResponse(parts())

    async def requests() -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert 3000 == len((await client.get("/streamed")).content)
            assert 404 == (await client.get("/nowhere")).status_code
            assert 200 == (await client.get("/healthz")).status_code
            return (await client.get("/metrics")).text

    with caplog.at_level(logging.INFO, logger="deoss.service"):
        exposed = asyncio.run(requests())
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "deoss.service"]
    assert [("/streamed", 200), ("/nowhere", 404)] == [(e["path"], e["status"]) for e in lines]
    assert all(e["event"] == "http" and e["ms"] >= 0 and e["ts"].endswith("+00:00") for e in lines)
    assert 'deoss_http_requests_total{method="GET",role="gateway",status="404"} 1.0' in exposed
    assert 'deoss_http_requests_total{method="GET",role="gateway",status="200"} 2.0' in exposed
