"""The gateway's REST routes (docs/api.md): parse the request, call one ``Gateway`` method, shape
the answer. Every route depends on ``signed_user``: the request must be signed by the user
(401 otherwise) and the user must have authorized this gateway on chain (403 otherwise).

The signature covers the path as sent (percent-encoded, from the ASGI ``raw_path``), so object
names with spaces or other escaped characters verify exactly as the client signed them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from deoss.services.common.app import SignerDep
from deoss.services.common.params import Uint63
from deoss.services.common.signing import Signer, iter_body
from deoss.services.gateway.download import Download
from deoss.services.gateway.service import (
    BucketChange,
    BucketInfo,
    DealStatus,
    FileStatus,
    Gateway,
    ObjectDeleted,
    ObjectPage,
    UploadResult,
)

__all__ = ["router"]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    meaning = {
        400: "a malformed parameter, name or body",
        401: "unsigned, badly signed, expired or replayed request; or a body that does not "
        "match its signed SHA-256",
        403: "the user has not authorized this gateway, or the chain refused the owner",
        404: "no such bucket, object, file or deal",
        409: "the name is taken, or the bucket is not empty",
        413: "the body is larger than its Content-Length or the gateway's limit",
        416: "a Range that is malformed, multiple, or outside the object",
        429: "too many uploads in progress on this gateway, or of this user; nothing was read "
        "or declared: try again after the Retry-After seconds",
        502: "the deal failed, or a scheduler refused the data",
        503: "the chain node or too many miners are unreachable",
        504: "the deal did not finish in time",
        507: "the user's space is missing, frozen or too small (a body without a length is "
        "cut off once past the free space)",
    }
    return {s: {"model": ErrorBody, "description": meaning[s]} for s in (401, 403, *statuses)}


BYTES = {"content": {"application/octet-stream": {}}, "description": "the object's bytes"}

router = APIRouter()


def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


async def signed_user(signer: SignerDep, gateway: GatewayDep) -> Signer:
    """The verified signer of the request, who must have authorized this gateway."""
    await gateway.require_authorized(signer.address)
    return signer


UserDep = Annotated[Signer, Depends(signed_user)]
RangeHeader = Annotated[str | None, Header(alias="range", description="bytes=START-END")]


def _object_headers(fid: str, size: int) -> dict[str, str]:
    return {
        "content-length": str(size),
        "accept-ranges": "bytes",
        "etag": f'"{fid}"',
        "x-deoss-fid": fid,
    }


def _stream(download: Download) -> StreamingResponse:
    headers = _object_headers(download.fid, download.length)
    status = 200
    if download.byte_range is not None:
        status = 206
        span = download.byte_range
        headers["content-range"] = f"bytes {span.start}-{span.end}/{download.size}"
    return StreamingResponse(
        download.body, status_code=status, headers=headers, media_type="application/octet-stream"
    )


# --- buckets ------------------------------------------------------------------------------


@router.get("/buckets", tags=["buckets"], responses=_errors())
async def list_buckets(user: UserDep, gateway: GatewayDep) -> list[BucketInfo]:
    """The user's buckets."""
    return await gateway.list_buckets(user)


@router.put("/buckets/{bucket}", status_code=201, tags=["buckets"], responses=_errors(400, 409))
async def create_bucket(bucket: str, user: UserDep, gateway: GatewayDep) -> BucketChange:
    """Create a bucket for the user (on chain: buckets.create)."""
    return await gateway.create_bucket(user, bucket)


@router.delete("/buckets/{bucket}", tags=["buckets"], responses=_errors(404, 409))
async def delete_bucket(bucket: str, user: UserDep, gateway: GatewayDep) -> BucketChange:
    """Delete an empty bucket (on chain: buckets.delete)."""
    return await gateway.delete_bucket(user, bucket)


# --- objects ------------------------------------------------------------------------------


@router.get("/objects/{bucket}", tags=["objects"], responses=_errors(400, 404))
async def list_objects(
    bucket: str,
    user: UserDep,
    gateway: GatewayDep,
    prefix: str = "",
    start_after: str = "",
    limit: Annotated[Uint63, Query(ge=1, le=1000)] = 100,
) -> ObjectPage:
    """Objects of a bucket in name order; pass ``next_start_after`` back for the next page."""
    return await gateway.list_objects(user, bucket, prefix, start_after, limit)


@router.put(
    "/objects/{bucket}/{name:path}",
    status_code=201,
    tags=["objects"],
    responses={
        202: {"model": UploadResult, "description": "declared (?wait=false); delivery goes on"},
        **_errors(400, 404, 409, 413, 429, 502, 504, 507),
    },
)
async def put_object(
    bucket: str,
    name: str,
    request: Request,
    response: Response,
    user: UserDep,
    gateway: GatewayDep,
    wait: bool = True,
) -> UploadResult:
    """Store the body as ``bucket/name``: 201 once the deal is SUCCESS (or deduplicated)."""
    length = request.headers.get("content-length")
    declared = int(length) if length is not None and length.isdigit() else None
    limit = gateway.settings.max_object_bytes
    # checked against the signed SHA-256 while spooled (put_object), before anything is declared
    body = iter_body(request, limit if declared is None else min(limit, declared))
    result = await gateway.put_object(user, bucket, name, body, declared, wait=wait)
    if result.state != "SUCCESS":
        response.status_code = 202
    return result


@router.get(
    "/objects/{bucket}/{name:path}",
    tags=["objects"],
    response_class=StreamingResponse,
    responses={200: BYTES, 206: BYTES, **_errors(404, 416, 503)},
)
async def get_object(
    bucket: str, name: str, user: UserDep, gateway: GatewayDep, range_header: RangeHeader = None
) -> StreamingResponse:
    """The object's bytes; a single ``Range: bytes=a-b`` answers 206 with Content-Range."""
    return _stream(await gateway.open_object(user, bucket, name, range_header))


@router.head("/objects/{bucket}/{name:path}", tags=["objects"], responses=_errors(404))
async def head_object(bucket: str, name: str, user: UserDep, gateway: GatewayDep) -> Response:
    """Size (Content-Length), fid (ETag, X-Deoss-Fid) and creation height of an object."""
    info = await gateway.stat_object(user, bucket, name)
    headers = _object_headers(info.fid, info.size)
    headers["x-deoss-created-at"] = str(info.created_at)
    return Response(status_code=200, headers=headers)


@router.delete("/objects/{bucket}/{name:path}", tags=["objects"], responses=_errors(404))
async def delete_object(
    bucket: str, name: str, user: UserDep, gateway: GatewayDep
) -> ObjectDeleted:
    """Delete an object (on chain: files.delete); its file goes with its last object."""
    return await gateway.delete_object(user, bucket, name)


# --- files and deals ----------------------------------------------------------------------


@router.get(
    "/files/{fid}",
    tags=["files"],
    response_class=StreamingResponse,
    responses={200: BYTES, 206: BYTES, **_errors(400, 403, 404, 416, 503)},
)
async def get_file(
    fid: str,
    user: UserDep,
    gateway: GatewayDep,
    size: Annotated[Uint63 | None, Query()] = None,
    range_header: RangeHeader = None,
) -> StreamingResponse:
    """A stored file by fid, cut to ``size`` bytes (default: the size first declared)."""
    return _stream(await gateway.open_file(user, fid, size, range_header))


@router.get("/files/{fid}/status", tags=["files"], responses=_errors(400, 404))
async def file_status(fid: str, user: UserDep, gateway: GatewayDep) -> FileStatus:
    """Segments, fragment holders, the placing scheduler and whether the file is tagged."""
    return await gateway.file_status(fid)


@router.get("/deals/{deal_id}", tags=["deals"], responses=_errors(400, 404))
async def deal_status(deal_id: Uint63, user: UserDep, gateway: GatewayDep) -> DealStatus:
    """A deal's state (OPEN, ASSIGNED, SUCCESS, FAILED), scheduler, attempts and reason."""
    return await gateway.deal_status(deal_id)
