"""The gateway's response records: what its routes return and what GatewayClient decodes.

One definition for both sides, so the server and the client cannot drift apart. Plain frozen
dataclasses: FastAPI serialises them, msgspec decodes them (unknown fields are ignored, so a newer
gateway can add fields).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BucketChange",
    "BucketInfo",
    "DealStatus",
    "FileStatus",
    "FragmentStatus",
    "ObjectDeleted",
    "ObjectInfo",
    "ObjectPage",
    "SegmentStatus",
    "UploadResult",
]


@dataclass(frozen=True)
class BucketInfo:
    name: str
    created_at: int  # block height
    object_count: int


@dataclass(frozen=True)
class BucketChange:
    bucket: str
    height: int  # the block the change is in


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    name: str
    fid: str
    size: int
    created_at: int


@dataclass(frozen=True)
class ObjectPage:
    bucket: str
    prefix: str
    objects: list[ObjectInfo]
    next_start_after: str | None  # pass as start_after for the next page; None: last page


@dataclass(frozen=True)
class ObjectDeleted:
    bucket: str
    name: str
    height: int


@dataclass(frozen=True)
class UploadResult:
    bucket: str
    name: str
    fid: str
    size: int
    deal_id: int | None  # None when deduplicated: the fid was stored already
    state: str  # OPEN, ASSIGNED (?wait=false) or SUCCESS
    deduplicated: bool


@dataclass(frozen=True)
class FragmentStatus:
    index: int
    hash: str
    holder: str


@dataclass(frozen=True)
class SegmentStatus:
    index: int
    size: int
    padded_size: int
    hash: str
    fragments: list[FragmentStatus]


@dataclass(frozen=True)
class FileStatus:
    fid: str
    size: int  # the object size of the first declaration
    owners: int
    created_at: int
    reporter: str  # the scheduler that placed it
    tagger: str
    tagged: bool
    tag_deadline: int
    segments: list[SegmentStatus]


@dataclass(frozen=True)
class DealStatus:
    id: int
    state: str
    owner: str
    declarer: str
    bucket: str
    name: str
    size: int
    fid: str
    segments: int
    scheduler: str | None
    attempts: int
    deadline: int
    created_at: int
    reason: str
