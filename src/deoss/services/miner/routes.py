"""The miner's HTTP routes (docs/services.md, "Miner"): parse, call one service function, shape
the response. Every route but /healthz and /metrics needs a signed request (401 otherwise)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from deoss.client.miner_types import FragmentRequest, MirrorRequest, ReadReason
from deoss.services.common.app import SignerDep
from deoss.services.common.errors import BadRequest
from deoss.services.common.params import Uint16, Uint32, Uint63
from deoss.services.common.ranges import UnsatisfiableRange, parse_range
from deoss.services.common.signing import Signer, iter_body, iter_checked_body
from deoss.services.miner.service import BodyOpener, MinerService

__all__ = ["router"]

router = APIRouter()


def get_miner(request: Request) -> MinerService:
    service: MinerService = request.app.state.miner
    return service


MinerDep = Annotated[MinerService, Depends(get_miner)]


class ReceiptPublic(BaseModel):
    miner: str
    signature: str


class MirrorKept(BaseModel):
    """A mirror copy of another fragment's tags kept (``blocks`` tags of 48 bytes)."""

    fragment_hash: str
    blocks: int


class TagsPublic(BaseModel):
    """Tags stored, and the miner's confirmation for ``files.tagged`` (signature, hex, over
    ``chain.modules.tags.tags_message`` of the fragment at segment/fragment under tag key
    ``key_id``)."""

    fragment_hash: str
    blocks: int
    segment: int
    fragment: int
    key_id: str
    miner: str
    signature: str


def parse_hash(text: str, what: str = "fragment hash") -> bytes:
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise BadRequest(f"{what} must be 64 lowercase hex digits, got {text!r}")
    return bytes.fromhex(text)


def content_length(request: Request) -> int | None:
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if not declared.isdigit():
        raise BadRequest(f"Content-Length {declared!r} is not a number")
    return int(declared)


def read_reason(
    reason: Annotated[str, Query(max_length=16)] = "",
    fid: Annotated[str, Query(max_length=64)] = "",
    owner: Annotated[str, Query(max_length=128)] = "",
    order: Annotated[Uint63 | None, Query()] = None,
) -> ReadReason:
    """The reason a read names (signed with the rest of the query; the miner checks it)."""
    if fid:
        parse_hash(fid, "fid")
    return ReadReason(kind=reason, fid=fid, owner=owner, order=order)


ReasonDep = Annotated[ReadReason, Depends(read_reason)]


def body_opener(request: Request, signer: Signer) -> BodyOpener:
    def open_body(max_bytes: int) -> AsyncIterator[bytes]:
        return iter_checked_body(request, signer, max_bytes)

    return open_body


@router.put("/fragments/{fragment_hash}", response_model=ReceiptPublic)
async def put_fragment(
    fragment_hash: str,
    request: Request,
    miner: MinerDep,
    signer: SignerDep,
    deal: Annotated[Uint63, Query()],
    attempt: Annotated[Uint32, Query(ge=1)],
    segment: Annotated[Uint32, Query()],
    fragment: Annotated[Uint16, Query()],
) -> ReceiptPublic:
    """Accept a fragment from the scheduler its deal is assigned to, for the assignment
    ``attempt``; answer a receipt signed for that deal and assignment."""
    wanted = FragmentRequest(
        fragment_hash=parse_hash(fragment_hash),
        deal_id=deal,
        attempt=attempt,
        segment=segment,
        fragment=fragment,
        declared_length=content_length(request),
    )
    receipt = await miner.accept_fragment(wanted, signer, partial(iter_body, request))
    return ReceiptPublic(miner=receipt.miner, signature=receipt.signature.hex())


@router.put("/tags/{fragment_hash}", response_model=TagsPublic)
async def put_tags(
    fragment_hash: str,
    request: Request,
    miner: MinerDep,
    signer: SignerDep,
    fid: Annotated[str, Query()],
    segment: Annotated[Uint32 | None, Query()] = None,
    fragment: Annotated[Uint16 | None, Query()] = None,
) -> TagsPublic:
    """Store the PoDR² tags of a fragment held for ``fid`` (at ``segment``/``fragment`` when
    given), from the file's tagger; answer the miner's signed tag confirmation."""
    raw = parse_hash(fragment_hash)
    parse_hash(fid, "fid")
    if (segment is None) != (fragment is None):
        raise BadRequest("segment and fragment go together")
    position = None if segment is None or fragment is None else (segment, fragment)
    stored = await miner.store_tags(
        raw, fid, signer, body_opener(request, signer), content_length(request), position
    )
    return TagsPublic(
        fragment_hash=fragment_hash,
        blocks=stored.blocks,
        segment=stored.segment,
        fragment=stored.fragment,
        key_id=stored.key_id.hex(),
        miner=stored.miner,
        signature=stored.signature.hex(),
    )


@router.get("/tags/{fragment_hash}", response_model=None)
async def get_tags(
    fragment_hash: str,
    miner: MinerDep,
    signer: SignerDep,
    reason: ReasonDep,
    key: Annotated[str, Query()],
) -> Response:
    """The PoDR² tags stored for a held fragment under tag key ``key`` (its id, hex; 48 bytes
    per block), for a reason the chain confirms (``?reason=``, as for fragments)."""
    raw = parse_hash(fragment_hash)
    tags = await miner.read_tags(signer, raw, parse_hash(key, "key id"), reason)
    return Response(tags, media_type="application/octet-stream")


@router.put("/mirror-tags/{fragment_hash}", response_model=MirrorKept)
async def put_mirror_tags(
    fragment_hash: str,
    request: Request,
    miner: MinerDep,
    signer: SignerDep,
    fid: Annotated[str, Query()],
    segment: Annotated[Uint32, Query()],
    fragment: Annotated[Uint16, Query()],
) -> MirrorKept:
    """Keep a mirror copy of the tags of another fragment of a segment this miner holds a
    fragment of, from the file's tagger (served to a restorer when the tagger is gone)."""
    parse_hash(fid, "fid")
    wanted = MirrorRequest(
        fragment_hash=parse_hash(fragment_hash),
        fid=fid,
        segment=segment,
        fragment=fragment,
        declared_length=content_length(request),
    )
    blocks = await miner.store_mirror(wanted, signer, body_opener(request, signer))
    return MirrorKept(fragment_hash=fragment_hash, blocks=blocks)


@router.get("/mirror-tags/{fragment_hash}", response_model=None)
async def get_mirror_tags(
    fragment_hash: str,
    miner: MinerDep,
    signer: SignerDep,
    key: Annotated[str, Query()],
    order: Annotated[Uint63 | None, Query()] = None,
) -> Response:
    """A mirror copy kept here of a fragment's tags under tag key ``key``, for the claimer of
    restoral order ``order`` for that fragment, or for the fragment's holder."""
    tags = await miner.read_mirror(
        signer, parse_hash(fragment_hash), parse_hash(key, "key id"), order
    )
    return Response(tags, media_type="application/octet-stream")


@router.get("/fragments/{fragment_hash}", response_model=None)
async def get_fragment(
    fragment_hash: str,
    request: Request,
    miner: MinerDep,
    signer: SignerDep,
    reason: ReasonDep,
) -> Response:
    """The fragment's bytes (or one range of them), for the reason the signed query names and
    the chain confirms: ``reason=download&fid=[&owner=]`` (an owner of the file, or a gateway
    it authorized), ``reason=restoral&order=`` (the claimer of an order of this segment),
    ``reason=tagging&fid=`` (the file's tagger). 403 otherwise, before any byte is read."""
    raw = parse_hash(fragment_hash)
    await miner.authorize_reader(signer, raw, reason)
    opened = await miner.open_fragment(raw)
    try:
        span = parse_range(request.headers.get("range"), opened.size)
    except UnsatisfiableRange:
        opened.close()
        raise  # the common handler answers 416 with its Content-Range
    start, end = (span.start, span.end) if span is not None else (0, opened.size - 1)
    try:  # the bytes are charged before any is sent; a refusal reads nothing
        miner.read_limiter.charge(signer.public_key, reason.kind, nbytes=end - start + 1)
    except BaseException:
        opened.close()
        raise
    headers = {"accept-ranges": "bytes", "content-length": str(end - start + 1)}
    if span is not None:
        headers["content-range"] = f"bytes {start}-{end}/{opened.size}"
    return StreamingResponse(
        opened.iter_range(start, end - start + 1),
        status_code=206 if span is not None else 200,
        media_type="application/octet-stream",
        headers=headers,
    )
