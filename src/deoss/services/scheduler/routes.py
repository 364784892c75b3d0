"""The scheduler's HTTP interface (docs/services.md, "Scheduler"): parse, call the service, shape.

Every request is signed (401 otherwise); who may do what is the service's check (``service``
for segments, ``retag`` for tags on request).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from deoss.client.scheduler_types import DealProgress, SegmentPlacement
from deoss.services.common.app import SignerDep
from deoss.services.common.auth import AuthError
from deoss.services.common.errors import PayloadTooLarge
from deoss.services.common.params import Uint32, Uint63
from deoss.services.common.signing import Signer, iter_body, iter_checked_body
from deoss.services.scheduler.retag import FragmentMismatch
from deoss.services.scheduler.service import SchedulerService

__all__ = ["router"]

router = APIRouter()


def get_service(request: Request) -> SchedulerService:
    service: SchedulerService = request.app.state.service
    return service


ServiceDep = Annotated[SchedulerService, Depends(get_service)]
DealId = Annotated[Uint63, Path()]
SegmentIndex = Annotated[Uint32, Path()]
FragmentHash = Annotated[str, Path(pattern="^[0-9a-f]{64}$")]
Fid = Annotated[str, Query(pattern="^[0-9a-f]{64}$")]
OrderId = Annotated[Uint63 | None, Query()]


async def read_body(request: Request, signer: Signer, max_bytes: int) -> bytes:
    """The whole body (at most ``max_bytes``), checked against its signed SHA-256."""
    chunks = [chunk async for chunk in iter_checked_body(request, signer, max_bytes)]
    return b"".join(chunks)  # one copy (a growing bytearray then bytes() made two)


async def read_fragment(request: Request, signer: Signer, size: int) -> bytes:
    """The body, which must be exactly the ``size`` bytes its signed SHA-256 names (else 422)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) != size:
        raise FragmentMismatch(f"the fragment is {size} bytes, Content-Length says {declared}")
    try:
        return await read_body(request, signer, size)
    except (AuthError, PayloadTooLarge) as exc:
        raise FragmentMismatch(f"the body is not the {size}-byte fragment: {exc}") from exc


@router.put("/deals/{deal_id}/segments/{index}")
async def put_segment(
    deal_id: DealId, index: SegmentIndex, request: Request, service: ServiceDep, signer: SignerDep
) -> SegmentPlacement:
    """Accept one padded segment of a deal assigned to this scheduler and place its fragments."""
    admission = await service.admit_segment(deal_id, index, signer)
    # not hashed here: the signed hash is the declared one (admit_segment), and place_segment
    # checks the bytes against it before anything is sent (one SHA-256 pass, not two)
    data = b"".join([chunk async for chunk in iter_body(request, admission.plan.padded_size)])
    return await service.place_segment(admission, data)


@router.get("/deals/{deal_id}")
async def get_deal(deal_id: DealId, service: ServiceDep, _: SignerDep) -> DealProgress:
    """What this scheduler did for a deal: segments placed, report submitted."""
    return await service.deal_progress(deal_id)


@router.put("/tags/{fragment_hash}", response_class=Response)
async def put_tags(
    fragment_hash: FragmentHash,
    fid: Fid,
    request: Request,
    service: ServiceDep,
    signer: SignerDep,
    order: OrderId = None,
) -> Response:
    """The PoDR² tags of a fragment (its bytes are the body), for the fragment's holder or the
    claimer of its restoral order."""
    admitted = await service.retagger.admit(fid, bytes.fromhex(fragment_hash), order, signer)
    data = await read_fragment(request, signer, admitted.size)
    tags = await service.retagger.tag(admitted, data)
    return Response(content=tags, media_type="application/octet-stream")
