"""GatewayClient: the Python client of a gateway's REST API (docs/api.md), for the CLI and scripts.

Every request is signed with the user's key (``SigningAuth``). Uploads stream the file: its
SHA-256 is computed first (the signature covers it), then the bytes go out in chunks, never
whole in memory; downloads stream into any binary sink. Errors, one tree under
``deoss.client.errors.ClientError``, mapped from the gateway's ``{"error": {"code",
"message"}}`` body and its status in one place (``_raise_for``)::

    GatewayError                 status, code, message
    ├── GatewayUnavailable       not reachable (connect, reset, timeout), or 503
    ├── BadRequest (400)         ├── Unauthenticated (401)    ├── Forbidden (403)
    ├── NotFound (404)           ├── Conflict (409)           ├── PayloadTooLarge (413)
    ├── RangeNotSatisfiable (416)├── UpstreamFailed (502, 504: the deal failed or timed out)
    └── InsufficientSpace (507)
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator, Callable, Iterator
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
from deoss.core.keys import KeyPair
from deoss.services.common.auth import HEADER_BODY
from deoss.services.common.signing import SigningAuth

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
    "Unauthenticated",
    "UploadResult",
    "UpstreamFailed",
]

T = TypeVar("T")
Progress = Callable[[int, int], None]  # (bytes done, bytes in all)
CHUNK_BYTES = 1024 * 1024
TIMEOUT = httpx.Timeout(60.0)
# A PUT answers once the deal is SUCCESS, a GET streams for as long as the object takes.
TRANSFER_TIMEOUT = httpx.Timeout(60.0, read=1200.0)


# --- errors -------------------------------------------------------------------------------


class GatewayError(ClientError):
    """The gateway refused a request (or could not be reached); ``status`` 0 for the latter."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} (HTTP {status} {code})" if status else message)
        self.status = status
        self.code = code
        self.message = message


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
    502: UpstreamFailed,
    503: GatewayUnavailable,
    504: UpstreamFailed,
    507: InsufficientSpace,
}


@contextmanager
def _transport_errors(url: str) -> Iterator[None]:
    try:
        yield
    except httpx.TransportError as exc:
        raise GatewayUnavailable(
            0, "unreachable", f"gateway at {url} is unreachable: {exc!r}"
        ) from exc


def _error_of(response: httpx.Response, content: bytes) -> GatewayError:
    code, message = f"http_{response.status_code}", response.reason_phrase
    try:
        error = msgspec.json.decode(content)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (msgspec.DecodeError, KeyError, TypeError):
        if content:
            message = content[:200].decode("utf-8", "replace")
    return STATUS_ERRORS.get(response.status_code, GatewayError)(
        response.status_code, code, message
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


class GatewayClient:
    """An async client of one gateway, acting as ``key``'s user. Use ``async with``."""

    def __init__(
        self,
        url: str,
        key: KeyPair,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout = TIMEOUT,
    ) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self._http = httpx.AsyncClient(
            base_url=self.url, auth=SigningAuth(key), transport=transport, timeout=timeout
        )

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _json(self, method: str, path: str, type_: type[T], **kwargs: Any) -> T:
        with _transport_errors(self.url):
            response = await self._http.request(method, path, **kwargs)
        await _raise_for(response)
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
        with _transport_errors(self.url):
            response = await self._http.head(self.object_path(bucket, name))
        await _raise_for(response)
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
        """Upload a file, streamed; returns once the deal is SUCCESS (declared if not ``wait``)."""
        sha256, size = await asyncio.to_thread(sha256_file, path)

        async def chunks() -> AsyncIterator[bytes]:
            sent = 0
            with open(path, "rb") as handle:
                while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
                    sent += len(chunk)
                    if progress is not None:
                        progress(sent, size)
                    yield chunk

        return await self._put(bucket, name, chunks(), sha256, size, wait)

    async def put_bytes(
        self, bucket: str, name: str, data: bytes, *, wait: bool = True
    ) -> UploadResult:
        """Upload a small object held in memory."""

        async def chunks() -> AsyncIterator[bytes]:
            yield data

        return await self._put(
            bucket, name, chunks(), hashlib.sha256(data).hexdigest(), len(data), wait
        )

    async def _put(
        self, bucket: str, name: str, body: AsyncIterator[bytes], sha256: str, size: int, wait: bool
    ) -> UploadResult:
        return await self._json(
            "PUT",
            self.object_path(bucket, name),
            UploadResult,
            content=body,
            params={} if wait else {"wait": "false"},
            headers={HEADER_BODY: sha256, "content-length": str(size)},
            timeout=TRANSFER_TIMEOUT,
        )

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
        headers = {"range": f"bytes={byte_range}"} if byte_range else {}
        written = 0
        with _transport_errors(self.url):
            async with self._http.stream(
                "GET", path, params=params, headers=headers, timeout=TRANSFER_TIMEOUT
            ) as response:
                await _raise_for(response)
                length = int(response.headers.get("content-length", "0"))
                async for chunk in response.aiter_bytes():
                    sink.write(chunk)
                    written += len(chunk)
                    if progress is not None:
                        progress(written, length)
        if written != length:
            raise GatewayUnavailable(
                0, "truncated", f"the gateway sent {written} of {length} bytes; try again"
            )
        return Downloaded(
            fid=response.headers.get("x-deoss-fid", ""),
            size=_total_size(response),
            written=written,
            content_range=response.headers.get("content-range"),
        )

    # --- files and deals --------------------------------------------------------------------

    async def file_status(self, fid: str) -> FileStatus:
        return await self._json("GET", f"/files/{quote(fid, safe='')}/status", FileStatus)

    async def deal_status(self, deal_id: int) -> DealStatus:
        return await self._json("GET", f"/deals/{deal_id}", DealStatus)
