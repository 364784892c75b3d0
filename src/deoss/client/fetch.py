"""Reading what a peer sends when its size is known: fragments and tags between services.
(``request_ok``: a request whose answer matters by its status only, its body not read;
``fetch_small``: one whose answer is a short document, read to a cap.)

Peers (miners, schedulers) are not trusted. ``fetch_exact`` streams the answer and stops as soon
as it holds one byte more than expected, so a peer that streams gigabytes costs the reader at
most one network read past the expected size, never its memory. Invariants:

* The body is read as it comes off the wire: ``identity`` encoding is asked for and an answer
  encoded otherwise is refused unread, so no compressed chunk expands in memory.
* A body of another length than expected or not hashing to the SHA-256 asked for
  (``PeerBadAnswer``), a status other than 200 (``PeerRefused``, its first
  ``ERROR_TEXT_BYTES`` quoted), a transport error or a deadline passed (``PeerUnreachable``)
  all raise a ``deoss.client.errors.PeerError``, with what was fetched and why in the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from deoss.client.errors import PeerBadAnswer, PeerRefused, PeerUnreachable

__all__ = [
    "ERROR_TEXT_BYTES",
    "HASH_IN_THREAD_BYTES",
    "fetch_answer",
    "fetch_exact",
    "fetch_small",
    "request_ok",
    "sha256_digest",
]

ERROR_TEXT_BYTES = 300  # of an error answer, quoted in the error
HASH_IN_THREAD_BYTES = 256 * 1024  # larger bodies are hashed off the event loop


async def fetch_exact(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    size: int,
    sha256: bytes | None = None,
    what: str | None = None,
    timeout_s: float | None = None,
    **options: Any,
) -> bytes:
    """The body of a 200 answer to ``method url``: exactly ``size`` bytes, hashing to
    ``sha256`` when given. ``options`` go to ``http.stream`` (params, content, timeout).

    Raises:
        PeerRefused: another status. PeerBadAnswer: not those bytes. PeerUnreachable: a
            transport error, or no answer within ``timeout_s`` (None: the client's timeouts
            only). ``what`` names the request in the message (default: method and URL).
    """
    what = what or f"{method} {url}"
    async with _exchange(http, method, url, what, timeout_s, options) as response:
        if response.status_code != 200:
            raise await _status_error(response, what)
        data = await _read_exact(response, size, what)
    if sha256 is not None and await sha256_digest(data) != sha256:
        raise PeerBadAnswer(f"{what}: the bytes do not hash to {sha256.hex()}")
    return bytes(data)


async def request_ok(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    what: str | None = None,
    timeout_s: float | None = None,
    **options: Any,
) -> None:
    """Send ``method url`` and check that the answer is 2xx, without reading its body.

    Raises:
        PeerRefused: another status (the first ``ERROR_TEXT_BYTES`` of the body quoted).
        PeerUnreachable: a transport error, or no answer within ``timeout_s``.
    """
    what = what or f"{method} {url}"
    async with _exchange(http, method, url, what, timeout_s, options) as response:
        if not 200 <= response.status_code < 300:
            raise await _status_error(response, what)


async def fetch_small(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    max_bytes: int,
    what: str | None = None,
    timeout_s: float | None = None,
    status: int | None = None,
    **options: Any,
) -> bytes:
    """The body of a 2xx answer (``status`` when given) that is at most ``max_bytes`` long (a
    JSON answer, say); the read stops one chunk past the cap.

    Raises:
        PeerRefused: another status. PeerBadAnswer: a longer body. PeerUnreachable: a
            transport error, or no answer in time.
    """
    what = what or f"{method} {url}"
    async with _exchange(http, method, url, what, timeout_s, options) as response:
        if not (
            200 <= response.status_code < 300 if status is None else response.status_code == status
        ):
            raise await _status_error(response, what)
        data = bytearray()
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > max_bytes:
                raise PeerBadAnswer(f"{what}: an answer longer than {max_bytes} bytes")
    return bytes(data)


async def fetch_answer(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    max_bytes: int,
    what: str | None = None,
    timeout_s: float | None = None,
    **options: Any,
) -> tuple[int, bytes]:
    """The status and body of the answer to ``method url``, whatever the status, for a caller
    that acts on it. The body is read to ``max_bytes``: a longer 2xx answer is refused, a
    longer error answer is cut there (it is only quoted).

    Raises:
        PeerBadAnswer: a 2xx body longer than ``max_bytes``. PeerUnreachable: a transport
            error, or no answer in time.
    """
    what = what or f"{method} {url}"
    async with _exchange(http, method, url, what, timeout_s, options) as response:
        status = response.status_code
        data = bytearray()
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > max_bytes:
                if 200 <= status < 300:
                    raise PeerBadAnswer(f"{what}: an answer longer than {max_bytes} bytes")
                break
    return status, bytes(data[:max_bytes])


@contextlib.asynccontextmanager
async def _exchange(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    what: str,
    timeout_s: float | None,
    options: dict[str, Any],
) -> AsyncIterator[httpx.Response]:
    """The streamed answer; closing it drops whatever was not read (the connection too)."""
    headers = {**options.pop("headers", {}), "accept-encoding": "identity"}
    try:
        async with asyncio.timeout(timeout_s):
            async with http.stream(method, url, headers=headers, **options) as response:
                yield response
    except TimeoutError as exc:
        if timeout_s is None:
            raise
        raise PeerUnreachable(f"{what}: no answer in {timeout_s:g} s") from exc
    except httpx.HTTPError as exc:
        raise PeerUnreachable(f"{what}: {type(exc).__name__}: {exc}") from exc


async def _status_error(response: httpx.Response, what: str) -> PeerRefused:
    text = await _read_at_most(response, ERROR_TEXT_BYTES)
    status = response.status_code
    return PeerRefused(f"{what}: HTTP {status} {text.decode('utf-8', 'replace')!r}", status)


async def _read_exact(response: httpx.Response, size: int, what: str) -> bytearray:
    encoding = response.headers.get("content-encoding", "identity")
    if encoding.strip().lower() not in ("", "identity"):
        raise PeerBadAnswer(f"{what}: encoded as {encoding[:40]!r}, identity was asked for")
    declared = response.headers.get("content-length")
    if declared is not None and declared != str(size):
        raise PeerBadAnswer(f"{what}: Content-Length {declared[:40]!r}, {size} bytes expected")
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > size:  # stop reading now: the rest is never taken off the wire
            raise PeerBadAnswer(f"{what}: longer than the {size} bytes expected")
    if len(data) != size:
        raise PeerBadAnswer(f"{what}: {len(data)} bytes, {size} expected")
    return data


async def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk[: limit - len(data)]
        if len(data) >= limit:
            break
    return bytes(data)


async def sha256_digest(data: bytes | bytearray) -> bytes:
    """SHA-256 of ``data``, computed in a thread when it is large."""
    if len(data) > HASH_IN_THREAD_BYTES:
        return await asyncio.to_thread(_sha256, data)
    return _sha256(data)


def _sha256(data: bytes | bytearray) -> bytes:
    return hashlib.sha256(data).digest()
