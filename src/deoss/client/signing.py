"""Signed HTTP requests between parties, the client's half (DESIGN 6): the message a signature
covers, the headers that carry it, and an httpx auth that signs every outgoing request.

Every request carries four headers:

    X-Deoss-Address    the signer's account address (bech32)
    X-Deoss-Time       milliseconds since the Unix epoch, when it was signed
    X-Deoss-Content-Sha256  lowercase hex SHA-256 of the body (of b"" when there is none)
    X-Deoss-Signature  hex Ed25519 signature over the message below

    message = "deoss-http-v2\\n" METHOD "\\n" HOST "\\n" PATH[?QUERY] "\\n" RANGE "\\n"
              TIME "\\n" BODY-SHA256

HOST is the Host header, so a request names its recipient. RANGE is "range:" followed by the
Range header, or empty without one (an empty Range is not an absent one). Every other header
that changes what a request means must join this message. The server's half (verifying,
refusing replays) is ``deoss.services.common.auth``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import AsyncIterator, Generator

import httpx

from deoss.core.keys import KeyPair

__all__ = [
    "EMPTY_BODY_SHA256",
    "HEADER_ADDRESS",
    "HEADER_BODY",
    "HEADER_HOST",
    "HEADER_RANGE",
    "HEADER_SIGNATURE",
    "HEADER_TIME",
    "SIGNED_HEADERS",
    "SigningAuth",
    "now_ms",
    "sent_once",
    "sign_request",
    "signing_message",
]

HEADER_ADDRESS = "x-deoss-address"
HEADER_TIME = "x-deoss-time"
HEADER_BODY = "x-deoss-content-sha256"
HEADER_SIGNATURE = "x-deoss-signature"
HEADER_HOST = "host"
HEADER_RANGE = "range"
#: Headers that change what a request means, hence covered by its signature.
SIGNED_HEADERS = (HEADER_HOST, HEADER_RANGE)
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def signing_message(
    method: str, host: str, target: str, byte_range: str | None, time_ms: int, body_sha256: str
) -> bytes:
    """The bytes a request signature covers. ``target`` is the path with its query string."""
    range_line = "" if byte_range is None else f"range:{byte_range}"
    return (
        f"deoss-http-v2\n{method.upper()}\n{host}\n{target}\n{range_line}\n{time_ms}\n{body_sha256}"
    ).encode()


def sign_request(
    key: KeyPair,
    method: str,
    target: str,
    time_ms: int,
    body_sha256: str = EMPTY_BODY_SHA256,
    *,
    host: str,
    byte_range: str | None = None,
) -> dict[str, str]:
    """Headers that sign a request made now (``time_ms``) by ``key`` to ``host`` (the Host
    header it is sent with), with the Range header ``byte_range`` if any."""
    message = signing_message(method, host, target, byte_range, time_ms, body_sha256)
    return {
        HEADER_ADDRESS: key.address,
        HEADER_TIME: str(time_ms),
        HEADER_BODY: body_sha256,
        HEADER_SIGNATURE: key.sign(message).hex(),
    }


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
