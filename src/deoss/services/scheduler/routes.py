"""The scheduler's HTTP interface (docs/services.md, "Scheduler"): parse, call the service, shape.

Every request is signed (401 otherwise); who may do what is the service's check.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel

from deoss.services.common.signing import Signer, iter_checked_body, verify_request
from deoss.services.scheduler.service import SchedulerService

__all__ = ["DealProgressPublic", "SegmentPlaced", "router"]

router = APIRouter()


def get_service(request: Request) -> SchedulerService:
    service: SchedulerService = request.app.state.service
    return service


ServiceDep = Annotated[SchedulerService, Depends(get_service)]
DealId = Annotated[int, Path(ge=0, lt=2**63)]
SegmentIndex = Annotated[int, Path(ge=0, lt=2**32)]


class SegmentPlaced(BaseModel):
    segment: int
    miners: list[str]


class DealProgressPublic(BaseModel):
    deal: int
    state: str
    segments: int
    placed: list[int]
    reported: bool
    error: str


async def read_body(request: Request, signer: Signer, max_bytes: int) -> bytes:
    """The whole body (at most ``max_bytes``), checked against its signed SHA-256."""
    body = bytearray()
    async for chunk in iter_checked_body(request, signer, max_bytes):
        body += chunk
    return bytes(body)


@router.put("/deals/{deal_id}/segments/{index}")
async def put_segment(
    deal_id: DealId, index: SegmentIndex, request: Request, service: ServiceDep
) -> SegmentPlaced:
    """Accept one padded segment of a deal assigned to this scheduler and place its fragments."""
    signer = verify_request(request, service.verifier)
    admission = await service.admit_segment(deal_id, index, signer)
    data = await read_body(request, signer, admission.plan.padded_size)
    placed = await service.place_segment(admission, data)
    return SegmentPlaced(segment=placed.segment, miners=placed.miners)


@router.get("/deals/{deal_id}")
async def get_deal(deal_id: DealId, request: Request, service: ServiceDep) -> DealProgressPublic:
    """What this scheduler did for a deal: segments placed, report submitted."""
    verify_request(request, service.verifier)
    progress = await service.deal_progress(deal_id)
    return DealProgressPublic(
        deal=progress.deal,
        state=progress.state,
        segments=progress.segments,
        placed=progress.placed,
        reported=progress.reported,
        error=progress.error,
    )
