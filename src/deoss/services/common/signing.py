"""Signed requests at the HTTP edge: verify incoming ones (a FastAPI dependency) and sign
outgoing ones (an httpx auth). The scheme is in ``deoss.services.common.auth``."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass

import httpx
from fastapi import Request

from deoss.core.keys import KeyPair, address_of
from deoss.services.common.auth import (
    EMPTY_BODY_SHA256,
    HEADER_BODY,
    HEADER_HOST,
    HEADER_RANGE,
    SIGNED_HEADERS,
    AuthError,
    RequestVerifier,
    host_names,
    sign_request,
)
from deoss.services.common.errors import BadRequest, PayloadTooLarge

__all__ = [
    "Signer",
    "SigningAuth",
    "iter_body",
    "iter_checked_body",
    "now_ms",
    "receiving_hosts",
    "verify_request",
]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Signer:
    """Who signed a request, and the SHA-256 it declared for the body."""

    public_key: bytes
    body_sha256: str

    @property
    def address(self) -> str:
        return address_of(self.public_key)


def request_target(request: Request) -> str:
    """The request target as the client sent and signed it: the raw (percent-encoded) path and
    query, so names with spaces or escaped characters verify exactly as signed."""
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    query: bytes = request.scope.get("query_string", b"")
    target = raw.decode("latin-1")
    return f"{target}?{query.decode('latin-1')}" if query else target


def receiving_hosts(request: Request) -> frozenset[str]:
    """The Host values that address the socket this request arrived on (the server's local
    address, as the ASGI server reports it); the verifier adds the server's public URL."""
    server = request.scope.get("server")
    if not server:
        return frozenset()
    host, port = server[0], server[1]
    return host_names(str(host), None if port is None else int(port), request.url.scheme)


def verify_request(request: Request, verifier: RequestVerifier) -> Signer:
    """Raises AuthError (HTTP 401) unless the request is signed, addressed to this server,
    fresh and not replayed."""
    for name in SIGNED_HEADERS:
        if len(request.headers.getlist(name)) > 1:
            # the route reads one value; which one the signer meant is ambiguous
            raise AuthError(f"more than one {name} header")
    public_key, body = verifier.verify(
        request.method,
        request_target(request),
        dict(request.headers),
        now_ms(),
        hosts=receiving_hosts(request),
    )
    return Signer(public_key, body)


async def iter_body(request: Request, max_bytes: int) -> AsyncIterator[bytes]:
    """Stream the request body, refusing more than ``max_bytes`` (PayloadTooLarge). Not checked
    against the signature: only for a consumer that checks the bytes against the signed
    SHA-256 itself before it commits (``iter_checked_body`` otherwise)."""
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"body is larger than {max_bytes} bytes")
        yield chunk


async def iter_checked_body(
    request: Request, signer: Signer, max_bytes: int
) -> AsyncIterator[bytes]:
    """Stream the request body, refusing more than ``max_bytes``; at the end the body must hash
    to what the signature declared (else AuthError), so a consumer must not commit before the
    iterator is exhausted."""
    digest = hashlib.sha256()
    async for chunk in iter_body(request, max_bytes):
        digest.update(chunk)
        yield chunk
    if digest.hexdigest() != signer.body_sha256:
        raise AuthError("body does not match the signed SHA-256")


def require_length(request: Request, expected: int) -> None:
    """Refuse early a Content-Length other than ``expected``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) != expected:
        raise BadRequest(f"body must be {expected} bytes, Content-Length says {declared}")


def sent_once(data: bytes) -> tuple[AsyncIterator[bytes], dict[str, str]]:
    """A large request body for httpx, and the Content-Length header to send with it.

    httpx keeps a bytes ``content`` on its Request, and its Request, Response and stream
    objects refer to one another, so the body outlived the request until the cyclic garbage
    collector ran: an idle gateway held all 8 segments (256 MiB) of its last upload. Streamed
    from here, the body is referenced only while it is being sent. Pass its SHA-256 in the
    X-Deoss-Content-Sha256 header (``SigningAuth`` does not read a streamed body)."""
    holder = [data]

    async def body() -> AsyncIterator[bytes]:
        yield holder.pop()

    return body(), {"content-length": str(len(data))}


class SigningAuth(httpx.Auth):
    """Signs every outgoing request with ``key``, for the server its Host header names and with
    its Range header. Byte bodies are hashed here; for a streamed body pass its SHA-256 in the
    X-Deoss-Content-Sha256 header yourself."""

    requires_request_body = False

    def __init__(self, key: KeyPair) -> None:
        self.key = key
        self._last_ms = 0
        self._clock = threading.Lock()

    def _next_ms(self) -> int:
        """Now, but strictly after the last request signed here. Signatures are deterministic:
        two requests with the same method, target and body in one millisecond (ranged reads of
        one fragment, a hedged retry) would otherwise carry the same signature, and the second
        would be refused as a replay."""
        with self._clock:
            self._last_ms = max(now_ms(), self._last_ms + 1)
            return self._last_ms

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        body_sha = request.headers.get(HEADER_BODY)
        if body_sha is None:
            try:
                content = request.content
            except httpx.RequestNotRead as exc:
                raise ValueError("a streamed body needs its SHA-256 in the headers") from exc
            body_sha = hashlib.sha256(content).hexdigest() if content else EMPTY_BODY_SHA256
        target = request.url.raw_path.decode()
        signed = sign_request(
            self.key,
            request.method,
            target,
            self._next_ms(),
            body_sha,
            host=request.headers[HEADER_HOST],
            byte_range=request.headers.get(HEADER_RANGE),
        )
        request.headers.update(signed)
        yield request
