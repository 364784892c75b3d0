"""The gateway's FastAPI app: the common service app, the REST routes, and the one table that
maps the chain's refusals to HTTP statuses.

``create_app(settings, *, chain=None, key=None, transport=None)`` builds everything the app
needs at once (no module globals, nothing left to a startup event), so tests can drive it
in-process with ``httpx.ASGITransport``; ``transport`` carries the gateway's own requests to
schedulers and miners. Closing: the lifespan's end (or ``app.state.gateway.aclose()``) cancels
uploads in progress and closes the HTTP clients.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from deoss.chain import errors as chain_errors
from deoss.client.chain import ChainClient
from deoss.client.errors import (
    ClientError,
    InclusionTimeout,
    NodeUnavailable,
    QueryFailed,
    TxRefused,
)
from deoss.core.keys import KeyPair
from deoss.keyfile import read_key_file
from deoss.services.common.app import create_service_app
from deoss.services.common.errors import error_body
from deoss.services.common.ranges import UnsatisfiableRange
from deoss.services.gateway.routes import router
from deoss.services.gateway.service import Gateway
from deoss.services.gateway.settings import GatewaySettings

__all__ = ["CHAIN_REFUSALS", "create_app"]

DESCRIPTION = """The user-facing API of a DeOSS gateway. Every request is signed with the user's
account key (headers X-Deoss-Address, X-Deoss-Time, X-Deoss-Content-Sha256, X-Deoss-Signature)
and the user must have authorized this gateway on chain. See docs/api.md for examples."""

#: Chain error code -> (HTTP status, error code) for refusals of what the user asked.
CHAIN_REFUSALS: dict[int, tuple[int, str]] = {
    chain_errors.NotFound.code: (404, "not_found"),
    chain_errors.Unauthorized.code: (403, "forbidden"),
    chain_errors.AlreadyExists.code: (409, "conflict"),
    chain_errors.InvalidTransition.code: (409, "conflict"),
    chain_errors.InvalidArgument.code: (400, "bad_request"),
    chain_errors.BadEncoding.code: (400, "bad_request"),  # queries: malformed arguments
    chain_errors.InsufficientSpace.code: (507, "insufficient_space"),
    chain_errors.InsufficientFunds.code: (503, "gateway_cannot_pay"),
}
UNMAPPED_REFUSAL = (502, "chain_refused")  # the gateway's own fault, or a chain it does not know


def _refusal(code: int, log: str) -> JSONResponse:
    status, name = CHAIN_REFUSALS.get(code, UNMAPPED_REFUSAL)
    reason = TxRefused.name_of(code)
    return JSONResponse(error_body(name, f"{log} (chain: {reason})"), status_code=status)


def install_chain_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TxRefused)
    async def _tx_refused(request: Request, exc: TxRefused) -> JSONResponse:
        return _refusal(exc.code, exc.log)

    @app.exception_handler(QueryFailed)
    async def _query_failed(request: Request, exc: QueryFailed) -> JSONResponse:
        return _refusal(exc.code, exc.log)

    @app.exception_handler(NodeUnavailable)
    async def _node_unavailable(request: Request, exc: NodeUnavailable) -> JSONResponse:
        return JSONResponse(error_body("chain_unavailable", str(exc)), status_code=503)

    @app.exception_handler(InclusionTimeout)
    async def _inclusion_timeout(request: Request, exc: InclusionTimeout) -> JSONResponse:
        return JSONResponse(error_body("timeout", str(exc)), status_code=504)

    @app.exception_handler(ClientError)
    async def _client_error(request: Request, exc: ClientError) -> JSONResponse:
        return JSONResponse(error_body("chain_error", str(exc)), status_code=502)

    @app.exception_handler(UnsatisfiableRange)
    async def _bad_range(request: Request, exc: UnsatisfiableRange) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, str(exc)),
            status_code=exc.status,
            headers={"content-range": f"bytes */{exc.size}"},
        )


def create_app(
    settings: GatewaySettings,
    *,
    chain: ChainClient | None = None,
    key: KeyPair | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The gateway app. ``chain`` and ``key`` default to the settings' node and key file."""
    owns_chain = chain is None
    chain_client = chain or ChainClient(settings.chain_url)
    holder: dict[str, Gateway] = {}

    async def health() -> dict[str, Any]:
        return await holder["gateway"].health()

    app, metrics = create_service_app("gateway", title="DeOSS gateway", health=health)
    app.description = DESCRIPTION
    gateway = Gateway(
        settings,
        chain=chain_client,
        key=key or read_key_file(settings.key_path),
        transport=transport,
        registry=metrics.registry,
    )
    holder["gateway"] = gateway
    app.state.gateway = gateway
    app.include_router(router)
    install_chain_error_handlers(app)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await gateway.aclose()
            if owns_chain:
                await chain_client.aclose()

    app.router.lifespan_context = lifespan
    return app
