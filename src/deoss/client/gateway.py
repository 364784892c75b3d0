"""GatewayClient: the Python client of a gateway's REST API (docs/api.md), for the CLI and scripts.

Every request is signed with the user's key (``SigningAuth``). Uploads stream the file: its
SHA-256 is computed first (the signature covers it), then the bytes go out in chunks, never
whole in memory; downloads stream into any binary sink. Errors, one tree under
``deoss.client.errors.ClientError``, mapped from the gateway's ``{"error": {"code",
"message"}}`` body and its status in one place (``_raise_for``)::

    GatewayError                 status, code, message (status 0: no answer; code
    │                            "unreachable": never sent, "disconnected": cut off)
    ├── GatewayUnavailable       not reachable (connect, reset, timeout), or 503
    ├── BadRequest (400)         ├── Unauthenticated (401)    ├── Forbidden (403)
    ├── NotFound (404)           ├── Conflict (409)           ├── PayloadTooLarge (413)
    ├── RangeNotSatisfiable (416)├── TooManyRequests (429)
    ├── UpstreamFailed (502, 504: the deal failed, or did not finish before the deadline)
    └── InsufficientSpace (507)

Every call rides out a gateway that restarts or is busy: what is safe to try again is tried
again, with backoff and jitter, until the call's deadline (``deoss.client.retry``); an upload
follows the deal it declared instead of uploading again (``put_object``). Each try is signed
afresh (signatures are single-use).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from deoss.client.errors import ClientError
from deoss.client.gateway_types import (
    BucketChange,
    BucketInfo,
    DealStatus,
    FileStatus,
    ObjectDeleted,
    ObjectInfo,
    ObjectPage,
    UploadResult,
)
from deoss.client.retry import RetryPolicy, parse_retry_after
from deoss.client.signing import HEADER_BODY, SigningAuth
from deoss.core.keys import KeyPair

__all__ = [
    "BadRequest",
    "BucketChange",
    "BucketInfo",
    "Conflict",
    "DealStatus",
    "Downloaded",
    "FileStatus",
    "Forbidden",
    "GatewayClient",
    "GatewayError",
    "GatewayUnavailable",
    "InsufficientSpace",
    "NotFound",
    "ObjectDeleted",
    "ObjectInfo",
    "ObjectPage",
    "PayloadTooLarge",
    "Progress",
    "RangeNotSatisfiable",
    "RetryPolicy",
    "TooManyRequests",
    "Unauthenticated",
    "UploadResult",
    "UpstreamFailed",
]

T = TypeVar("T")
Progress = Callable[[int, int], None]  # (bytes done, bytes in all)
Waiting = Callable[[str], None]  # what the client is waiting for, and until when
CHUNK_BYTES = 1024 * 1024
TIMEOUT = httpx.Timeout(60.0)
# A PUT answers once the deal is SUCCESS, a GET streams for as long as the object takes.
TRANSFER_TIMEOUT = httpx.Timeout(60.0, read=1200.0)


# --- errors -------------------------------------------------------------------------------


class GatewayError(ClientError):
    """The gateway refused a request (or could not be reached); ``status`` 0 for the latter."""

    def __init__(
        self, status: int, code: str, message: str, *, retry_after_s: float | None = None
    ) -> None:
        super().__init__(f"{message} (HTTP {status} {code})" if status else message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s  # the gateway's Retry-After, if it sent one


class GatewayUnavailable(GatewayError):
    """The gateway could not be reached, or said it cannot serve now."""


class BadRequest(GatewayError):
    """A malformed parameter, name or body."""


class Unauthenticated(GatewayError):
    """Unsigned, badly signed, expired or replayed request, or a body not matching its hash."""


class Forbidden(GatewayError):
    """The user did not authorize this gateway, or may not act on that resource."""


class NotFound(GatewayError):
    """No such bucket, object, file or deal."""


class Conflict(GatewayError):
    """The name is taken, or the bucket is not empty."""


class PayloadTooLarge(GatewayError):
    """The body is larger than the gateway accepts."""


class RangeNotSatisfiable(GatewayError):
    """The byte range does not fit the object."""


class TooManyRequests(GatewayError):
    """The gateway limits this client's requests; it says when to come back (Retry-After)."""


class UpstreamFailed(GatewayError):
    """The deal failed, timed out, or a scheduler or the chain refused the gateway."""


class InsufficientSpace(GatewayError):
    """The user's space is missing, frozen or too small (deoss space buy)."""


STATUS_ERRORS: dict[int, type[GatewayError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    416: RangeNotSatisfiable,
    429: TooManyRequests,
    502: UpstreamFailed,
    503: GatewayUnavailable,
    504: UpstreamFailed,
    507: InsufficientSpace,
}


@contextmanager
def _transport_errors(url: str) -> Iterator[None]:
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise GatewayUnavailable(
            0, "unreachable", f"gateway at {url} is unreachable: {exc!r}"
        ) from exc
    except httpx.TransportError as exc:  # sent, at least in part: it may have been acted on
        raise GatewayUnavailable(
            0, "disconnected", f"gateway at {url} dropped the request: {exc!r}"
        ) from exc


def is_transient(error: GatewayError, *, repeatable: bool) -> bool:
    """Whether trying ``error``'s request again may succeed: always when it never reached the
    gateway or was turned away for load (429); for a ``repeatable`` request also when it was
    cut off or answered 502/503/504 (it may have been acted on; see deoss.client.retry)."""
    if error.code == "unreachable" or error.status == 429:
        return True
    return repeatable and (error.code == "disconnected" or error.status in (502, 503, 504))


def _error_of(response: httpx.Response, content: bytes) -> GatewayError:
    code, message = f"http_{response.status_code}", response.reason_phrase
    try:
        error = msgspec.json.decode(content)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (msgspec.DecodeError, KeyError, TypeError):
        if content:
            message = content[:200].decode("utf-8", "replace")
    retry_after = parse_retry_after(response.headers.get("retry-after"), time.time())
    return STATUS_ERRORS.get(response.status_code, GatewayError)(
        response.status_code, code, message, retry_after_s=retry_after
    )


async def _raise_for(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise _error_of(response, await response.aread())


# --- what the gateway answers -------------------------------------------------------------


class Downloaded(msgspec.Struct, frozen=True):
    """What a download wrote: the object's fid and size, and the range (if one was asked)."""

    fid: str
    size: int
    written: int
    content_range: str | None


def _total_size(response: httpx.Response) -> int:
    content_range = response.headers.get("content-range")
    if content_range and "/" in content_range:
        return int(content_range.rpartition("/")[2])
    return int(response.headers.get("content-length", "0"))


def sha256_file(path: Path) -> tuple[str, int]:
    """(SHA-256 hex, size) of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


# --- the client ---------------------------------------------------------------------------

# The chain's refusal of a second declaration for a name whose deal is still in progress.
DEAL_IN_PROGRESS = re.compile(r"deal (\d+) for this name is in progress")
BodyOpener = Callable[[], AsyncIterator[bytes]]


class _Tries:
    """The tries of one call: its deadline, how many retries so far, the pauses between."""

    def __init__(self, client: GatewayClient) -> None:
        self._client = client
        self._ends_at = client._clock() + client.retry.deadline_s
        self.retries = 0

    def left_s(self) -> float:
        return self._ends_at - self._client._clock()

    async def pause(self, error: GatewayError, doing: str) -> None:
        """Wait before trying ``doing`` again, or raise ``error`` when no try is left."""
        policy = self._client.retry
        delay = policy.backoff_s(self.retries, self._client._rng)
        if error.retry_after_s is not None:
            delay = max(delay, error.retry_after_s)
        left = self.left_s()
        if not policy.may_retry(self.retries) or delay > left:
            raise error
        self.retries += 1
        self._client._report(
            f"{doing}: {error.message}; trying again in {delay:.1f} s (giving up in {left:.0f} s)"
        )
        await self._client._sleep(delay)


class GatewayClient:
    """An async client of one gateway, acting as ``key``'s user. Use ``async with``.

    ``retry`` says how each call rides out failures (``deoss.client.retry``); ``on_wait``
    hears, in words, every wait that is not routine (a retry, a deal followed after a drop).
    """

    def __init__(
        self,
        url: str,
        key: KeyPair,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout = TIMEOUT,
        retry: RetryPolicy | None = None,
        on_wait: Waiting | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.retry = retry or RetryPolicy()
        self._on_wait = on_wait
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._http = httpx.AsyncClient(
            base_url=self.url, auth=SigningAuth(key), transport=transport, timeout=timeout
        )

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def _report(self, message: str) -> None:
        if self._on_wait is not None:
            self._on_wait(message)

    async def _send_once(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with _transport_errors(self.url):
            response = await self._http.request(method, path, **kwargs)
        await _raise_for(response)
        return response

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request, tried again while its failure is transient (GET and HEAD are
        repeatable; other methods are tried again only when they never got through)."""
        tries = _Tries(self)
        while True:
            try:
                return await self._send_once(method, path, **kwargs)
            except GatewayError as exc:
                if not is_transient(exc, repeatable=method in ("GET", "HEAD")):
                    raise
                await tries.pause(exc, f"{method} {path}")

    async def _json(self, method: str, path: str, type_: type[T], **kwargs: Any) -> T:
        response = await self._send(method, path, **kwargs)
        return msgspec.json.decode(response.content, type=type_)

    # --- buckets ----------------------------------------------------------------------------

    async def list_buckets(self) -> list[BucketInfo]:
        return await self._json("GET", "/buckets", list[BucketInfo])

    async def create_bucket(self, bucket: str) -> BucketChange:
        return await self._json("PUT", f"/buckets/{quote(bucket, safe='')}", BucketChange)

    async def delete_bucket(self, bucket: str) -> BucketChange:
        return await self._json("DELETE", f"/buckets/{quote(bucket, safe='')}", BucketChange)

    # --- objects ----------------------------------------------------------------------------

    @staticmethod
    def object_path(bucket: str, name: str) -> str:
        # Slashes in the name are escaped too, so dot segments are never collapsed in transit.
        return f"/objects/{quote(bucket, safe='')}/{quote(name, safe='')}"

    async def list_objects(
        self, bucket: str, *, prefix: str = "", start_after: str = "", limit: int = 100
    ) -> ObjectPage:
        params = {"prefix": prefix, "start_after": start_after, "limit": str(limit)}
        path = f"/objects/{quote(bucket, safe='')}"
        return await self._json("GET", path, ObjectPage, params=params)

    async def iter_objects(
        self, bucket: str, *, prefix: str = "", page_size: int = 1000
    ) -> AsyncIterator[ObjectInfo]:
        """Every object of the bucket (with ``prefix``), page after page."""
        start_after = ""
        while True:
            page = await self.list_objects(
                bucket, prefix=prefix, start_after=start_after, limit=page_size
            )
            for info in page.objects:
                yield info
            if page.next_start_after is None:
                return
            start_after = page.next_start_after

    async def head_object(self, bucket: str, name: str) -> ObjectInfo:
        response = await self._send("HEAD", self.object_path(bucket, name))
        return ObjectInfo(
            bucket=bucket,
            name=name,
            fid=response.headers["x-deoss-fid"],
            size=int(response.headers["content-length"]),
            created_at=int(response.headers.get("x-deoss-created-at", "0")),
        )

    async def delete_object(self, bucket: str, name: str) -> ObjectDeleted:
        return await self._json("DELETE", self.object_path(bucket, name), ObjectDeleted)

    async def put_object(
        self,
        bucket: str,
        name: str,
        path: Path,
        *,
        wait: bool = True,
        progress: Progress | None = None,
    ) -> UploadResult:
        """Upload a file, streamed; returns once the deal is SUCCESS (declared if not ``wait``).

        The gateway answers as soon as the deal is declared (``?wait=false``), and the deal is
        then followed (``GET /deals/{id}``) until SUCCESS. A try cut off before that answer is
        sent again (the file is read again); if the lost try had declared a deal, the gateway
        refuses the name with that deal's id and the deal is followed instead. A deal that
        FAILS after the gateway went away (a restarted gateway forgets the deliveries it had
        in memory) is uploaded again; one that FAILS otherwise is final (UpstreamFailed). All
        of it within ``retry.deadline_s``.
        """
        sha256, size = await asyncio.to_thread(sha256_file, path)

        async def chunks() -> AsyncIterator[bytes]:
            sent = 0
            with open(path, "rb") as handle:
                while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
                    sent += len(chunk)
                    if progress is not None:
                        progress(sent, size)
                    yield chunk

        return await self._put(bucket, name, chunks, sha256, size, wait)

    async def put_bytes(
        self, bucket: str, name: str, data: bytes, *, wait: bool = True
    ) -> UploadResult:
        """Upload a small object held in memory."""

        async def chunks() -> AsyncIterator[bytes]:
            yield data

        return await self._put(
            bucket, name, chunks, hashlib.sha256(data).hexdigest(), len(data), wait
        )

    async def _put(
        self, bucket: str, name: str, body: BodyOpener, sha256: str, size: int, wait: bool
    ) -> UploadResult:
        tries = _Tries(self)
        target = f"upload of {bucket}/{name}"
        maybe_declared = False  # a lost try may have declared a deal we were not told of
        while True:
            try:
                response = await self._send_once(
                    "PUT",
                    self.object_path(bucket, name),
                    content=body(),
                    params={"wait": "false"},
                    headers={HEADER_BODY: sha256, "content-length": str(size)},
                    timeout=TRANSFER_TIMEOUT,
                )
            except Conflict as exc:
                if not maybe_declared:
                    raise
                found = await self._find_lost_upload(bucket, name, size, exc)
                if isinstance(found, UploadResult):
                    return found
                deal_id = found
                if not wait:
                    deal = await self.deal_status(deal_id)
                    return UploadResult(bucket, name, deal.fid, size, deal_id, deal.state, False)
            except GatewayError as exc:
                if not is_transient(exc, repeatable=True):
                    raise
                maybe_declared = maybe_declared or exc.code == "disconnected" or exc.status >= 500
                await tries.pause(exc, target)
                continue
            else:
                answer = msgspec.json.decode(response.content, type=UploadResult)
                if answer.deal_id is None or answer.state == "SUCCESS" or not wait:
                    return answer
                deal_id = answer.deal_id
            done = await self._follow_deal(bucket, name, deal_id, tries, disrupted=maybe_declared)
            if done is not None:
                return done
            maybe_declared = False

    async def _find_lost_upload(
        self, bucket: str, name: str, size: int, conflict: Conflict
    ) -> UploadResult | int:
        """After a try was lost, the name is taken: by the deal that try declared (its id), or
        by the object it stored (its result). Anything else stays a Conflict."""
        in_progress = DEAL_IN_PROGRESS.search(conflict.message)
        if in_progress is not None:
            self._report(f"a deal for {bucket}/{name} is in progress; following it")
            return int(in_progress.group(1))
        try:
            info = await self.head_object(bucket, name)
        except NotFound:
            raise conflict from None
        if info.size != size:
            raise conflict
        return UploadResult(bucket, name, info.fid, info.size, None, "SUCCESS", False)

    async def _follow_deal(
        self, bucket: str, name: str, deal_id: int, tries: _Tries, *, disrupted: bool
    ) -> UploadResult | None:
        """Poll a deal until SUCCESS (the result). A FAILED deal raises UpstreamFailed, unless
        the gateway went away while it ran (``disrupted``): then None, upload again."""
        polls, last_state = 0, ""
        while True:
            try:
                deal = await self.deal_status(deal_id, retry=False)
            except GatewayError as exc:
                if not is_transient(exc, repeatable=True):
                    raise
                disrupted = True
                await tries.pause(exc, f"waiting for deal {deal_id} of {bucket}/{name}")
                continue
            if deal.state == "SUCCESS":
                return UploadResult(bucket, name, deal.fid, deal.size, deal.id, deal.state, False)
            if deal.state == "FAILED":
                if not disrupted:
                    raise UpstreamFailed(
                        502, "deal_failed", f"deal {deal_id} failed: {deal.reason}"
                    )
                self._report(
                    f"deal {deal_id} failed ({deal.reason}) after the gateway went away; "
                    f"uploading {bucket}/{name} again"
                )
                return None
            if disrupted and deal.state != last_state:
                self._report(f"waiting for deal {deal_id} of {bucket}/{name}: {deal.state}")
            last_state = deal.state
            delay = self.retry.deal_poll_s(polls)
            polls += 1
            if delay > tries.left_s():
                raise UpstreamFailed(
                    504,
                    "deadline",
                    f"deal {deal_id} of {bucket}/{name} is still {deal.state} at the deadline "
                    f"({self.retry.deadline_s:g} s); follow it with GET /deals/{deal_id}",
                )
            await self._sleep(delay)

    async def download_object(
        self,
        bucket: str,
        name: str,
        sink: BinaryIO,
        *,
        byte_range: str | None = None,
        progress: Progress | None = None,
    ) -> Downloaded:
        """Stream an object (or ``byte_range``, e.g. "0-99", "100-", "-50") into ``sink``."""
        return await self._download(self.object_path(bucket, name), {}, sink, byte_range, progress)

    async def download_file(
        self,
        fid: str,
        sink: BinaryIO,
        *,
        size: int | None = None,
        byte_range: str | None = None,
        progress: Progress | None = None,
    ) -> Downloaded:
        """Stream a stored file by fid (cut to ``size`` bytes if given) into ``sink``."""
        params = {} if size is None else {"size": str(size)}
        return await self._download(
            f"/files/{quote(fid, safe='')}", params, sink, byte_range, progress
        )

    async def read_object(self, bucket: str, name: str, *, byte_range: str | None = None) -> bytes:
        """A small object's bytes, in memory."""
        sink = io.BytesIO()
        await self.download_object(bucket, name, sink, byte_range=byte_range)
        return sink.getvalue()

    async def _download(
        self,
        path: str,
        params: dict[str, str],
        sink: BinaryIO,
        byte_range: str | None,
        progress: Progress | None,
    ) -> Downloaded:
        """Tried again while nothing was written to ``sink`` (which may not rewind)."""
        tries = _Tries(self)
        while True:
            written = [0]
            try:
                return await self._download_once(path, params, sink, byte_range, progress, written)
            except GatewayError as exc:
                if written[0] or not is_transient(exc, repeatable=True):
                    raise
                await tries.pause(exc, f"GET {path}")

    async def _download_once(
        self,
        path: str,
        params: dict[str, str],
        sink: BinaryIO,
        byte_range: str | None,
        progress: Progress | None,
        written: list[int],
    ) -> Downloaded:
        headers = {"range": f"bytes={byte_range}"} if byte_range else {}
        with _transport_errors(self.url):
            async with self._http.stream(
                "GET", path, params=params, headers=headers, timeout=TRANSFER_TIMEOUT
            ) as response:
                await _raise_for(response)
                length = int(response.headers.get("content-length", "0"))
                async for chunk in response.aiter_bytes():
                    sink.write(chunk)
                    written[0] += len(chunk)
                    if progress is not None:
                        progress(written[0], length)
        if written[0] != length:
            raise GatewayUnavailable(
                0, "truncated", f"the gateway sent {written[0]} of {length} bytes; try again"
            )
        return Downloaded(
            fid=response.headers.get("x-deoss-fid", ""),
            size=_total_size(response),
            written=written[0],
            content_range=response.headers.get("content-range"),
        )

    # --- files and deals --------------------------------------------------------------------

    async def file_status(self, fid: str) -> FileStatus:
        return await self._json("GET", f"/files/{quote(fid, safe='')}/status", FileStatus)

    async def deal_status(self, deal_id: int, *, retry: bool = True) -> DealStatus:
        path = f"/deals/{deal_id}"
        if retry:
            return await self._json("GET", path, DealStatus)
        response = await self._send_once("GET", path)
        return msgspec.json.decode(response.content, type=DealStatus)
