"""How every DeOSS HTTP server (chain node RPC, gateway, scheduler, miner) treats slow clients.

uvicorn bounds only the idle time between requests (``timeout_keep_alive``). A client that
opens a connection and sends a request head a byte at a time, or announces a body and stops
sending it, holds its connection, its buffers and (mid-body) the request's task for as long
as it likes (slowloris). ``SlowClientGuard`` is uvicorn's httptools protocol with three bounds:

    request head   the whole head (request line and headers) must arrive within
                   ``header_timeout_s`` of the connection opening, or of the first byte of
                   a later request on a kept-alive connection; it may not exceed
                   ``max_header_bytes``
    request body   no more than ``body_idle_timeout_s`` may pass without a byte of the
                   body arriving. The clock runs only while the server wants bytes: not
                   while reading is paused because the application has not consumed what
                   arrived (back-pressure), nor while the client waits for ``100 Continue``

A request that breaks a bound is answered ``408`` (``431`` for an oversized head) with
``Connection: close`` when no response has started, and its connection is closed; the
application sees the client disconnect. A connection that never sent a byte is closed
without an answer. One timer per connection, re-armed only when it fires, so a stream of
body chunks costs no timer work.

Holding many connections costs a file descriptor each: ``raise_open_file_limit`` lifts the
process's soft limit to its hard one at start (the usual soft default, 1024, is spent by
a few hundred held connections plus the service's own files), and the listen backlog is
``BACKLOG`` (the kernel caps it at net.core.somaxconn).
"""

from __future__ import annotations

import asyncio
import enum
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

__all__ = [
    "BACKLOG",
    "DEFAULT_HTTP_LIMITS",
    "HTTP_LIMIT_DEFAULTS",
    "HttpLimits",
    "SlowClientGuard",
    "guarded_protocol",
    "raise_open_file_limit",
    "read_http_limits",
]

# Pending connections the kernel queues before the server accepts them (also uvicorn's default).
BACKLOG = 2048
# Upper bound of every timeout setting: a longer one no longer defends anything.
MAX_TIMEOUT_S = 3600.0
# Largest accepted head bound: the head is held in memory until it is complete.
MAX_HEADER_BYTES_LIMIT = 1024 * 1024
# A hard limit reported as unlimited: ask for this many (macOS refuses more than OPEN_MAX).
UNLIMITED_FILES_TARGET = 65536


@dataclass(frozen=True)
class HttpLimits:
    """Bounds on how slowly a client may send a request (see the module docstring)."""

    header_timeout_s: float = 10.0
    body_idle_timeout_s: float = 30.0
    max_header_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        for name in ("header_timeout_s", "body_idle_timeout_s"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not 0 < value <= MAX_TIMEOUT_S
            ):
                raise ValueError(
                    f"{name} must be a number of seconds in (0, {MAX_TIMEOUT_S:g}], got {value!r}"
                )
        size = self.max_header_bytes
        if (
            isinstance(size, bool)
            or not isinstance(size, int)
            or not 1024 <= size <= MAX_HEADER_BYTES_LIMIT
        ):
            raise ValueError(
                f"max_header_bytes must be an integer in 1024..{MAX_HEADER_BYTES_LIMIT}, "
                f"got {size!r}"
            )


DEFAULT_HTTP_LIMITS = HttpLimits()

# The settings as config keys with their defaults (services' [service], the node's [rpc]).
HTTP_LIMIT_DEFAULTS: dict[str, Any] = {
    "header_timeout_s": HttpLimits.header_timeout_s,
    "body_idle_timeout_s": HttpLimits.body_idle_timeout_s,
    "max_header_bytes": HttpLimits.max_header_bytes,
}


def read_http_limits(values: Mapping[str, Any], section: str) -> HttpLimits:
    """The limits from a config section (keys absent there keep their defaults).

    Raises:
        ValueError: a bad value; the message names ``section.key`` and what is allowed.
    """
    chosen = {key: values.get(key, default) for key, default in HTTP_LIMIT_DEFAULTS.items()}
    for key, value in chosen.items():
        # TOML has no "5 means 5.0"; a whole number of seconds is fine
        if isinstance(HTTP_LIMIT_DEFAULTS[key], float) and type(value) is int:
            chosen[key] = float(value)
    try:
        return HttpLimits(**chosen)
    except ValueError as exc:
        raise ValueError(f"{section}.{exc}") from exc


def guarded_protocol(limits: HttpLimits) -> type[SlowClientGuard]:
    """The protocol class to pass as uvicorn's ``http``, bound to ``limits``."""
    return type("SlowClientGuard", (SlowClientGuard,), {"limits": limits})


def raise_open_file_limit() -> int:
    """Lift the soft limit on open files to the hard limit; return the soft limit in force."""
    try:
        import resource
    except ImportError:  # not a POSIX system: nothing to raise
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_FILES_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):  # refused (a sandbox): keep what we have
            return soft
        return target
    return soft


class _Reading(enum.Enum):
    NOTHING = "nothing"  # between requests (uvicorn's keep-alive timeout), or the app's turn
    HEAD = "head"
    BODY = "body"


class _ObservedFlow(FlowControl):
    """uvicorn's flow control, telling the guard when reading resumes (the app asked for
    more of the body, or 100 Continue was just sent): the body's idle clock restarts."""

    def __init__(self, transport: asyncio.Transport, on_resume: Callable[[], None]) -> None:
        super().__init__(transport)
        self._on_resume = on_resume

    def resume_reading(self) -> None:
        super().resume_reading()
        self._on_resume()


def _error_response(
    status: int, code: str, message: str, headers: list[tuple[bytes, bytes]]
) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    lines = [STATUS_LINE[status]]
    lines += [name + b": " + value + b"\r\n" for name, value in headers]
    lines += [
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n\r\n",
        body,
    ]
    return b"".join(lines)


class SlowClientGuard(HttpToolsProtocol):
    """uvicorn's httptools protocol with the read bounds of the module docstring."""

    limits: ClassVar[HttpLimits] = DEFAULT_HTTP_LIMITS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading = _Reading.NOTHING
        self._head_deadline = 0.0
        self._head_bytes = 0
        self._head_begun = False  # a byte of this request arrived: it is owed an answer
        self._body_heard_at = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # --- uvicorn's protocol, observed --------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = _ObservedFlow(transport, self._body_resumed)
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading is _Reading.NOTHING:
            self._start_head()
        if self._reading is _Reading.HEAD:
            self._head_begun = True
        elif self._reading is _Reading.BODY:
            self._body_heard_at = self.loop.time()
        super().data_received(data)
        if self._reading is _Reading.HEAD and not self.transport.is_closing():
            # still no complete head: every byte of this chunk belongs to it
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                limit = self.limits.max_header_bytes
                self._refuse(431, "headers_too_large", f"request head over {limit} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._reading is _Reading.NOTHING:  # a pipelined request right after the last
            self._start_head()
        self._head_begun = True

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.parser.should_upgrade() and self._should_upgrade():
            self._reading = _Reading.NOTHING  # a websocket: its own protocol takes over
            return
        self._reading = _Reading.BODY
        self._body_heard_at = self.loop.time()
        self._ensure_timer(self._body_heard_at + self.limits.body_idle_timeout_s)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading = _Reading.NOTHING

    def handle_websocket_upgrade(self) -> None:
        self._reading = _Reading.NOTHING
        self._stop_timer()
        super().handle_websocket_upgrade()

    # --- the bounds ----------------------------------------------------------------------

    def _start_head(self) -> None:
        self._reading = _Reading.HEAD
        self._head_begun = False
        self._head_bytes = 0
        self._head_deadline = self.loop.time() + self.limits.header_timeout_s
        self._ensure_timer(self._head_deadline)

    def _body_resumed(self) -> None:
        if self._reading is _Reading.BODY:
            self._body_heard_at = self.loop.time()

    def _ensure_timer(self, when: float) -> None:
        """A timer fires at ``when`` or earlier (it re-checks and re-arms when early)."""
        if self._timer is not None and self._timer.when() <= when:
            return
        self._stop_timer()
        self._timer = self.loop.call_at(when, self._check)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        if self._reading is _Reading.HEAD:
            if self.cycle is not None and not self.cycle.response_complete:
                # the app still answers the previous request: this one waits for it
                self._head_deadline = now + self.limits.header_timeout_s
            elif now >= self._head_deadline:
                seconds = self.limits.header_timeout_s
                self._refuse(408, "request_timeout", f"request head not received in {seconds:g} s")
                return
            self._ensure_timer(self._head_deadline)
        elif self._reading is _Reading.BODY:
            if self.flow.read_paused or self.cycle.waiting_for_100_continue:
                self._body_heard_at = now  # we are not reading: the client is not idle
            elif now >= self._body_heard_at + self.limits.body_idle_timeout_s:
                seconds = self.limits.body_idle_timeout_s
                self._refuse(408, "request_timeout", f"request body stalled for {seconds:g} s")
                return
            self._ensure_timer(self._body_heard_at + self.limits.body_idle_timeout_s)

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer ``status`` if no response has started, then close the connection."""
        reading, self._reading = self._reading, _Reading.NOTHING
        self._stop_timer()
        cycle = self.cycle
        if reading is _Reading.HEAD:  # the previous request's response must be complete
            answer = self._head_begun and (cycle is None or cycle.response_complete)
        else:
            answer = not cycle.response_started
        if reading is _Reading.BODY and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() says http.disconnect, its sends drop
            cycle.message_event.set()
        if answer:
            headers = self.server_state.default_headers
            self.transport.write(_error_response(status, code, message, headers))
        self.transport.close()
