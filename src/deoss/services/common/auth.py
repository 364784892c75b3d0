"""Signed HTTP requests between parties (DESIGN 6), the server's half: verifying them.

The headers and the message a signature covers are the client's half, ``deoss.client.signing``
(one definition, shared by both). HOST is the Host header, so a request names its recipient: a
server refuses a request addressed to any name but its own, and a request signed for one miner
or gateway cannot be replayed to another.

A verifier refuses requests signed more than a window ago or more than a small skew ahead of its
clock, and a signature it has already accepted (a replay). It remembers a signature only once it
verified, per signer and in time order (``ReplayMemory``). Who may call what (a registered miner,
the assigned scheduler, a user who authorized this gateway) is each service's check, against
the chain. The body hash is checked by whoever reads the body (streamed bodies are hashed as
they arrive).
"""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
import threading
from collections.abc import Collection, Mapping
from urllib.parse import urlsplit

from deoss.client.signing import (
    HEADER_ADDRESS,
    HEADER_BODY,
    HEADER_HOST,
    HEADER_RANGE,
    HEADER_SIGNATURE,
    HEADER_TIME,
    signing_message,
)
from deoss.core.errors import DataPathError
from deoss.core.keys import parse_address, verify

__all__ = [
    "AuthError",
    "ReplayMemory",
    "RequestVerifier",
    "host_names",
    "url_host_names",
]

DEFAULT_WINDOW_MS = 60_000
# How far ahead of the server's clock a request may be dated (clocks kept by NTP agree far
# better). A signature is remembered until its time leaves the window, so this bounds how long.
DEFAULT_MAX_AHEAD_MS = 10_000
# One signer's budget of remembered signatures: about 700 requests a second for the 70 s each
# is kept, more than one service process serves. Only that signer is refused beyond it.
MAX_PER_SIGNER = 50_000
# All signers together (see ReplayMemory): about 120 MB (250 bytes each, measured), and more
# signatures than one process verifies in 30 s (15,000 a second measured on one core, before
# any HTTP work): a flood would need that many within an honest request's delay plus 10 s.
MAX_REMEMBERED = 500_000
DEFAULT_PORTS = {"http": 80, "https": 443}
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


class AuthError(Exception):
    """A request that is unsigned, badly signed, expired or replayed; the message says which."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_names(host: str, port: int | None, scheme: str = "http") -> frozenset[str]:
    """The Host header values (lowercase) that address ``host:port`` over ``scheme``.

    A loopback address also answers to the other loopback names at the same port: a request
    can only reach it from its own machine, where the port tells services apart."""
    host = host.lower().strip("[]")
    hosts = {f"[{host}]" if ":" in host else host}
    if _is_loopback(host):
        hosts.update(LOOPBACK_NAMES)
    names = {f"{name}:{port}" for name in hosts} if port is not None else set()
    if port is None or port == DEFAULT_PORTS.get(scheme):
        names.update(hosts)  # the port is left out of Host when it is the scheme's default
    return frozenset(names)


def url_host_names(url: str) -> frozenset[str]:
    """The Host header values that address ``url`` (e.g. a service's public URL)."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host")
    scheme = parts.scheme or "http"
    return host_names(parts.hostname, parts.port or DEFAULT_PORTS.get(scheme), scheme)


class ReplayMemory:
    """The signatures accepted within the window, remembered per signer, forgotten by time.

    Thread-safe: services verify from request handlers running concurrently.

    Invariants, so that no replay inside the window is ever accepted and no signer's traffic
    can make another signer's requests fail:

    - only verified signatures are remembered (a forged one costs nothing durable), each until
      its request time leaves the window (a heap by time: a late-dated entry never holds the
      others back, and dates are at most ``max_ahead_ms`` ahead, so none is kept for long);
    - one signer holds at most ``max_per_signer`` of them; beyond that only its own requests
      are refused;
    - all signers together hold at most ``max_entries``. Signatures are free to make with
      fresh keys, so when that is reached the oldest is forgotten and ``floor_ms`` rises to its
      time: every request dated at or before the floor is refused from then on (it may be a
      replay of what was forgotten). Evicting by time means the floor only refuses a request
      whose signature is older than the last ``max_entries`` accepted ones: a flood has to get
      that many signatures verified in the seconds between an honest request's signing and
      its arrival (plus ``max_ahead_ms``), more than a service process can verify. Refusing
      new signers instead would let a flood lock everyone out; forgetting a signer's entries
      without a floor would let them be replayed.
    """

    def __init__(
        self,
        window_ms: int = DEFAULT_WINDOW_MS,
        *,
        max_per_signer: int | None = None,
        max_entries: int | None = None,
    ) -> None:
        self.window_ms = window_ms
        self.max_per_signer = MAX_PER_SIGNER if max_per_signer is None else max_per_signer
        self.max_entries = MAX_REMEMBERED if max_entries is None else max_entries
        self.floor_ms = -1
        self._clock_ms = 0
        self._expiry: list[tuple[int, bytes, bytes]] = []  # heap of (time_ms, entry, signer)
        self._seen: set[bytes] = set()
        self._per_signer: dict[bytes, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def held_by(self, signer: bytes) -> int:
        """How many of ``signer``'s signatures are remembered."""
        return self._per_signer.get(signer, 0)

    def clock(self, now_ms: int) -> int:
        """``now_ms``, or the latest time seen if the clock went back: a signature forgotten
        at a later time must not become acceptable again."""
        with self._lock:
            self._clock_ms = max(self._clock_ms, now_ms)
            return self._clock_ms

    def remember(self, signer: bytes, signature: bytes, time_ms: int, now_ms: int) -> None:
        """Remember a verified signature made at ``time_ms``, or raise AuthError."""
        entry = hashlib.blake2b(signer + signature, digest_size=16).digest()
        with self._lock:
            self._forget_before(max(self._clock_ms, now_ms) - self.window_ms)
            if time_ms <= self.floor_ms:
                raise AuthError(
                    f"request time {time_ms} is before {self.floor_ms}, the oldest this "
                    "server still remembers under load; sign it again"
                )
            if entry in self._seen:
                raise AuthError("replayed request: this signature was already used")
            held = self._per_signer.get(signer, 0)
            if held >= self.max_per_signer:
                raise AuthError(
                    f"too many signed requests from this signer ({held}) in the replay "
                    "window; retry later"
                )
            if len(self._seen) >= self.max_entries:
                self.floor_ms = max(self.floor_ms, self._forget_oldest())
                if time_ms <= self.floor_ms:
                    raise AuthError(
                        f"request time {time_ms} is before the oldest this server still "
                        "remembers under load; sign it again"
                    )
            heapq.heappush(self._expiry, (time_ms, entry, signer))
            self._seen.add(entry)
            self._per_signer[signer] = held + 1

    def _forget_before(self, limit_ms: int) -> None:
        while self._expiry and self._expiry[0][0] < limit_ms:
            self._forget_oldest()

    def _forget_oldest(self) -> int:
        time_ms, entry, signer = heapq.heappop(self._expiry)
        self._seen.discard(entry)
        held = self._per_signer[signer] - 1
        if held:
            self._per_signer[signer] = held
        else:
            del self._per_signer[signer]
        return time_ms


class RequestVerifier:
    """Checks signed requests addressed to this server; refuses replays (``ReplayMemory``).

    ``public_url`` is the URL the server is registered or known under when it is not the
    address it listens on (behind a proxy or NAT): requests addressed to it are its own too.
    """

    def __init__(
        self,
        window_ms: int = DEFAULT_WINDOW_MS,
        *,
        public_url: str = "",
        max_ahead_ms: int = DEFAULT_MAX_AHEAD_MS,
        max_per_signer: int | None = None,
        max_remembered: int | None = None,
    ) -> None:
        self.window_ms = window_ms
        self.max_ahead_ms = max_ahead_ms
        self.public_hosts = url_host_names(public_url) if public_url else frozenset()
        self.memory = ReplayMemory(
            window_ms, max_per_signer=max_per_signer, max_entries=max_remembered
        )

    def verify(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        now_ms: int,
        *,
        hosts: Collection[str],
    ) -> tuple[bytes, str]:
        """Return (signer public key, declared body SHA-256 hex). ``hosts``: the Host values
        that address where the request arrived (lowercase; ``host_names``).

        Raises:
            AuthError: missing or malformed headers, a request addressed to another server,
                a time outside the window, a bad signature, or a signature already used.
        """
        lowered = {k.lower(): v for k, v in headers.items()}
        required = (HEADER_ADDRESS, HEADER_TIME, HEADER_BODY, HEADER_SIGNATURE, HEADER_HOST)
        missing = [h for h in required if h not in lowered]
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
        host = lowered[HEADER_HOST]
        if host.lower() not in hosts and host.lower() not in self.public_hosts:
            raise AuthError(
                f"request addressed to {host!r}, not to this server; sign it for the "
                "address you send it to"
            )
        now = self.memory.clock(now_ms)
        if time_ms < now - self.window_ms:
            raise AuthError(
                f"request time {time_ms} is more than {self.window_ms} ms from "
                f"the server's clock {now} (signed too long ago); sign it again"
            )
        if time_ms > now + self.max_ahead_ms:
            raise AuthError(
                f"request time {time_ms} is more than {self.max_ahead_ms} ms ahead of "
                f"the server's clock {now}; check the clock"
            )
        message = signing_message(method, host, target, lowered.get(HEADER_RANGE), time_ms, body)
        try:
            verify(public_key, message, signature)
        except DataPathError as exc:
            raise AuthError(f"request signature does not verify: {exc}") from exc
        self.memory.remember(public_key, signature, time_ms, now)
        return public_key, body
