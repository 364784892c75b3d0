"""Wire records of the scheduler's HTTP API, shared by its routes (``deoss.services.scheduler.
routes``, as response models), its service (which makes them) and its client
(``deoss.client.scheduler``, which reads them)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DealProgress", "SegmentPlacement"]


@dataclass(frozen=True)
class SegmentPlacement:
    """``PUT /deals/{deal}/segments/{index}``: the segment placed, and the miners (addresses)
    holding its fragments, in fragment order."""

    segment: int
    miners: list[str]


@dataclass(frozen=True)
class DealProgress:
    """``GET /deals/{deal}``: what the scheduler did for a deal so far."""

    deal: int
    state: str
    segments: int
    placed: list[int]
    reported: bool
    error: str
