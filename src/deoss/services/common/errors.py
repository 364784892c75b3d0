"""Service errors and their one mapping to HTTP responses.

Every error a service returns is ``{"error": {"code": "<snake_case>", "message": "..."}}`` with
a real HTTP status. Routes raise ``ServiceError`` subclasses (or data-path errors, mapped in
``DATA_PATH_STATUS``); nothing builds HTTPException by hand.
"""

from __future__ import annotations

from typing import ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from deoss.core import errors as core_errors
from deoss.services.common.auth import AuthError

__all__ = [
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
        headers = None
        if isinstance(exc, TooManyRequests):
            headers = {"retry-after": str(exc.retry_after_s)}
        return JSONResponse(error_body(exc.code, str(exc)), status_code=exc.status, headers=headers)

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
