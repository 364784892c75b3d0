"""Service errors and their one mapping to HTTP responses.

Every error a service returns is ``{"error": {"code": "<snake_case>", "message": "..."}}`` with
a real HTTP status. Routes raise ``ServiceError`` subclasses (or data-path errors, mapped in
``DATA_PATH_STATUS``; or the chain client's errors, mapped in ``CHAIN_REFUSALS``); nothing
builds HTTPException by hand. ``install_error_handlers`` installs the whole table on every
service's app (deoss.services.common.app), so the three services answer alike.
"""

from __future__ import annotations

from typing import ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from deoss.chain import errors as chain_errors
from deoss.client.errors import (
    ClientError,
    InclusionTimeout,
    NodeUnavailable,
    QueryFailed,
    TxRefused,
)
from deoss.core import errors as core_errors
from deoss.services.common.auth import AuthError

__all__ = [
    "CHAIN_REFUSALS",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "RangeNotSatisfiable",
    "ServiceError",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthenticated",
    "error_body",
    "install_error_handlers",
]


class ServiceError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def headers(self) -> dict[str, str] | None:
        """Headers the answer carries besides the error body (none by default)."""
        return None


class BadRequest(ServiceError):
    status, code = 400, "bad_request"


class Unauthenticated(ServiceError):
    status, code = 401, "unauthenticated"


class Forbidden(ServiceError):
    status, code = 403, "forbidden"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class Conflict(ServiceError):
    status, code = 409, "conflict"


class PayloadTooLarge(ServiceError):
    status, code = 413, "payload_too_large"


class RangeNotSatisfiable(ServiceError):
    status, code = 416, "range_not_satisfiable"


class TooManyRequests(ServiceError):
    """Refused for load, before anything was done; the answer's Retry-After says when to try
    again."""

    status, code = 429, "too_many_requests"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str] | None:
        return {"retry-after": str(self.retry_after_s)}


class UpstreamFailed(ServiceError):
    status, code = 502, "upstream_failed"


class ServiceUnavailable(ServiceError):
    status, code = 503, "unavailable"


DATA_PATH_STATUS: dict[type[core_errors.DataPathError], tuple[int, str]] = {
    core_errors.HashMismatch: (422, "hash_mismatch"),
    core_errors.DecodeError: (400, "bad_encoding"),
    core_errors.InvalidParameters: (400, "invalid_parameters"),
    core_errors.InvalidKey: (400, "invalid_key"),
    core_errors.BadSignature: (401, "bad_signature"),
    core_errors.NotEnoughFragments: (503, "not_enough_fragments"),
    core_errors.BadProof: (422, "bad_proof"),
    core_errors.MerkleProofMismatch: (422, "bad_proof"),
}


#: Chain error code -> (HTTP status, error code) for the chain's refusals of what was asked.
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
UNMAPPED_REFUSAL = (502, "chain_refused")  # the service's own fault, or a chain it does not know


def _refusal(code: int, log: str) -> JSONResponse:
    status, name = CHAIN_REFUSALS.get(code, UNMAPPED_REFUSAL)
    reason = TxRefused.name_of(code)
    return JSONResponse(error_body(name, f"{log} (chain: {reason})"), status_code=status)


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


# nginx's convention: the client closed the connection before the answer (nobody reads it).
CLIENT_CLOSED = 499


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # a hedged or cancelled transfer: an everyday event, not a server error worth a traceback
        return JSONResponse(
            error_body("client_disconnected", "the client went away"), CLIENT_CLOSED
        )

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, str(exc)), status_code=exc.status, headers=exc.headers()
        )

    @app.exception_handler(AuthError)
    async def _auth_error(request: Request, exc: AuthError) -> JSONResponse:
        return JSONResponse(error_body("unauthenticated", str(exc)), status_code=401)

    @app.exception_handler(core_errors.DataPathError)
    async def _data_path_error(request: Request, exc: core_errors.DataPathError) -> JSONResponse:
        status, code = next(
            (v for t, v in DATA_PATH_STATUS.items() if isinstance(exc, t)), (400, "bad_request")
        )
        return JSONResponse(error_body(code, str(exc)), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        return JSONResponse(error_body("bad_request", details), status_code=400)

    install_chain_error_handlers(app)


def install_chain_error_handlers(app: FastAPI) -> None:
    """The chain client's errors that reach a route: refusals by ``CHAIN_REFUSALS``, an
    unreachable node 503, a transaction not included in time 504, anything else 502."""

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
