"""Signed HTTP requests between parties (DESIGN 6).

Every request carries four headers:

    X-Deoss-Address    the signer's account address (bech32)
    X-Deoss-Time       milliseconds since the Unix epoch, when it was signed
    X-Deoss-Content-Sha256  lowercase hex SHA-256 of the body (of b"" when there is none)
    X-Deoss-Signature  hex Ed25519 signature over the message below

    message = "deoss-http-v1\\n" METHOD "\\n" PATH[?QUERY] "\\n" TIME "\\n" BODY-SHA256

A verifier refuses requests outside a time window around its clock and requests whose signature
it has already seen within that window (replays). Who may call what (a registered miner, the
assigned scheduler, a user who authorized this gateway) is each service's check, against the chain.
The body hash is checked by whoever reads the body (streamed bodies are hashed as they arrive).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping

from deoss.core.errors import DataPathError
from deoss.core.keys import KeyPair, parse_address, verify

__all__ = [
    "EMPTY_BODY_SHA256",
    "HEADER_ADDRESS",
    "HEADER_BODY",
    "HEADER_SIGNATURE",
    "HEADER_TIME",
    "AuthError",
    "RequestVerifier",
    "sign_request",
    "signing_message",
]

HEADER_ADDRESS = "x-deoss-address"
HEADER_TIME = "x-deoss-time"
HEADER_BODY = "x-deoss-content-sha256"
HEADER_SIGNATURE = "x-deoss-signature"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()
DEFAULT_WINDOW_MS = 60_000
MAX_REMEMBERED = 200_000


class AuthError(Exception):
    """A request that is unsigned, badly signed, expired or replayed; the message says which."""


def signing_message(method: str, target: str, time_ms: int, body_sha256: str) -> bytes:
    """The bytes a request signature covers. ``target`` is the path with its query string."""
    return f"deoss-http-v1\n{method.upper()}\n{target}\n{time_ms}\n{body_sha256}".encode()


def sign_request(
    key: KeyPair, method: str, target: str, time_ms: int, body_sha256: str = EMPTY_BODY_SHA256
) -> dict[str, str]:
    """Headers that sign a request made now (``time_ms``) by ``key``."""
    signature = key.sign(signing_message(method, target, time_ms, body_sha256))
    return {
        HEADER_ADDRESS: key.address,
        HEADER_TIME: str(time_ms),
        HEADER_BODY: body_sha256,
        HEADER_SIGNATURE: signature.hex(),
    }


class RequestVerifier:
    """Checks signed requests; remembers signatures for one window to refuse replays.

    Thread-safe: services call it from request handlers running concurrently.
    """

    def __init__(self, window_ms: int = DEFAULT_WINDOW_MS) -> None:
        self.window_ms = window_ms
        self._seen: OrderedDict[bytes, int] = OrderedDict()
        self._lock = threading.Lock()

    def verify(
        self, method: str, target: str, headers: Mapping[str, str], now_ms: int
    ) -> tuple[bytes, str]:
        """Return (signer public key, declared body SHA-256 hex).

        Raises:
            AuthError: missing or malformed headers, a bad signature, a time outside the
                window, or a signature already used.
        """
        lowered = {k.lower(): v for k, v in headers.items()}
        missing = [
            h
            for h in (HEADER_ADDRESS, HEADER_TIME, HEADER_BODY, HEADER_SIGNATURE)
            if h not in lowered
        ]
        if missing:
            raise AuthError(f"unsigned request: missing header(s) {', '.join(missing)}")
        try:
            public_key = parse_address(lowered[HEADER_ADDRESS])
            time_ms = int(lowered[HEADER_TIME])
            signature = bytes.fromhex(lowered[HEADER_SIGNATURE])
        except (DataPathError, ValueError) as exc:
            raise AuthError(f"malformed signature headers: {exc}") from exc
        body = lowered[HEADER_BODY]
        if (
            len(body) != 64
            or body != body.lower()
            or any(c not in "0123456789abcdef" for c in body)
        ):
            raise AuthError(f"{HEADER_BODY} must be 64 lowercase hex digits")
        if abs(now_ms - time_ms) > self.window_ms:
            raise AuthError(
                f"request time {time_ms} is more than {self.window_ms} ms from "
                f"the server's clock {now_ms}; sign it again"
            )
        try:
            verify(public_key, signing_message(method, target, time_ms, body), signature)
        except DataPathError as exc:
            raise AuthError(f"request signature does not verify: {exc}") from exc
        self._remember(signature, time_ms, now_ms)
        return public_key, body

    def _remember(self, signature: bytes, time_ms: int, now_ms: int) -> None:
        with self._lock:
            # Entries are dropped only once their time is outside the window, so a replay
            # inside the window is always caught; when too many are live, refuse instead.
            while self._seen:
                oldest, stamp = next(iter(self._seen.items()))
                if stamp >= now_ms - self.window_ms:
                    break
                self._seen.pop(oldest)
            if signature in self._seen:
                raise AuthError("replayed request: this signature was already used")
            if len(self._seen) >= MAX_REMEMBERED:
                raise AuthError("too many signed requests in the replay window; retry later")
            self._seen[signature] = time_ms
