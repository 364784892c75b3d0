"""Signed requests at the HTTP edge, the server's half: verify incoming ones (a FastAPI
dependency) and read their bodies. The scheme is in ``deoss.services.common.auth``; outgoing
requests are signed by ``deoss.client.signing.SigningAuth``."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import Request

from deoss.client.signing import SIGNED_HEADERS, now_ms
from deoss.core.keys import address_of
from deoss.services.common.auth import AuthError, RequestVerifier, host_names
from deoss.services.common.errors import BadRequest, PayloadTooLarge

__all__ = [
    "Signer",
    "iter_body",
    "iter_checked_body",
    "receiving_hosts",
    "verify_request",
]


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
