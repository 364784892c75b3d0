"""Object -> segments -> fragments, and back.

An object of ``size`` bytes is cut into segments of ``segment_size`` bytes; the last (or only)
segment holds the rest. Each segment is padded with zero bytes to the smallest multiple of k
that holds it (at least k bytes, so an empty object is one segment of k zero bytes), then
erasure-coded into k + m fragments of ``padded_size / k`` bytes. A 1 KiB object with k = 4, m = 8
thus costs 12 fragments of 256 bytes, not 12 of 8 MiB.

Hashes (SHA-256): a segment's hash covers its padded bytes, a fragment's hash its bytes. The fid
is the Merkle root of the segment hashes (``deoss.core.merkle``). Because padding is zeros, the
fid names the padded segments; an object is identified by (fid, size), and two objects that
differ only in trailing zero bytes inside the last segment's padding share a fid and storage.

Everything here streams: one segment (and its fragments) is in memory at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, BinaryIO

import msgspec

from deoss.core.codec import Record
from deoss.core.erasure import ErasureCode, get_code, validate_shards
from deoss.core.errors import HashMismatch, InvalidParameters, NotEnoughFragments
from deoss.core.merkle import compute_fid

__all__ = [
    "DEFAULT_PARAMS",
    "EncodedSegment",
    "LayoutParams",
    "ObjectPlan",
    "SegmentPlan",
    "decode_segment",
    "encode_and_plan",
    "encode_segment",
    "hash_object",
    "iter_encoded_segments",
    "iter_segments",
    "object_slice",
    "pad_segment",
    "plan_object",
    "rebuild_fragment",
    "segment_count",
    "segments_for_range",
    "verify_fragment",
]

MiB = 1024 * 1024
MAX_SEGMENT_SIZE = 1024 * MiB
READ_CHUNK = 4 * MiB

Hash32 = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]


class LayoutParams(Record):
    """Segment size and code. Invalid values raise InvalidParameters at construction."""

    segment_size: int = 32 * MiB
    data_shards: int = 4
    parity_shards: int = 8

    def __post_init__(self) -> None:
        validate_shards(self.data_shards, self.parity_shards)
        s, k = self.segment_size, self.data_shards
        if not isinstance(s, int) or isinstance(s, bool) or not k <= s <= MAX_SEGMENT_SIZE:
            raise InvalidParameters(
                f"segment size must be an integer in {k}..{MAX_SEGMENT_SIZE}, got {s!r}"
            )
        if s % k:
            raise InvalidParameters(f"segment size {s} must be a multiple of k={k}")

    @property
    def total_shards(self) -> int:
        return self.data_shards + self.parity_shards

    def fragment_size(self, segment: SegmentPlan) -> int:
        """Size of each fragment of ``segment``."""
        return segment.padded_size // self.data_shards

    def code(self) -> ErasureCode:
        return get_code(self.data_shards, self.parity_shards)


DEFAULT_PARAMS = LayoutParams()


class SegmentPlan(Record):
    """One segment as declared: its share of the object, its hash and its fragments' hashes."""

    index: int
    size: int
    padded_size: int
    hash: Hash32
    fragment_hashes: list[Hash32]


class ObjectPlan(Record):
    """The full plan of an object: what a deal declares."""

    size: int
    fid: str
    params: LayoutParams
    segments: list[SegmentPlan]


@dataclass(frozen=True)
class EncodedSegment:
    """A segment with its fragments, as produced while reading an object (in-process only)."""

    index: int
    size: int
    data: bytes
    fragments: list[memoryview]
    plan: SegmentPlan


def _check_size(size: int) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidParameters(f"object size must be a non-negative integer, got {size!r}")


def segment_count(size: int, params: LayoutParams) -> int:
    """Number of segments of an object of ``size`` bytes (at least one)."""
    _check_size(size)
    return max(1, -(-size // params.segment_size))


def padded_size(data_size: int, params: LayoutParams) -> int:
    """Padded length of a segment holding ``data_size`` object bytes."""
    k = params.data_shards
    return k * max(1, -(-data_size // k))


def segment_span(index: int, size: int, params: LayoutParams) -> tuple[int, int]:
    """(offset in the object, object bytes held) of segment ``index``."""
    count = segment_count(size, params)
    if not 0 <= index < count:
        raise InvalidParameters(f"segment index {index} outside 0..{count - 1}")
    offset = index * params.segment_size
    return offset, min(params.segment_size, size - offset)


def segments_for_range(start: int, end: int, size: int, params: LayoutParams) -> range:
    """Indices of the segments covering object bytes ``start``..``end`` (inclusive)."""
    _check_size(size)
    if not 0 <= start <= end < size:
        raise InvalidParameters(f"byte range {start}-{end} is outside an object of {size} bytes")
    return range(start // params.segment_size, end // params.segment_size + 1)


def object_slice(segment: bytes, index: int, size: int, params: LayoutParams) -> memoryview:
    """The object's bytes within a padded segment (the padding cut off)."""
    _, held = segment_span(index, size, params)
    return memoryview(segment)[:held]


def _read_full(stream: BinaryIO, n: int) -> bytes:
    """Read up to n bytes, looping over short reads; fewer only at end of stream."""
    first = stream.read(n)
    if not isinstance(first, bytes | bytearray):
        raise InvalidParameters("stream must be opened in binary mode")
    if len(first) == n or not first:
        return bytes(first)
    parts, got = [first], len(first)
    while got < n:
        chunk = stream.read(min(READ_CHUNK, n - got))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def iter_segments(stream: BinaryIO, params: LayoutParams) -> Iterator[tuple[int, bytes]]:
    """Yield (object bytes held, padded segment) for each segment of the stream, in order."""
    s = params.segment_size
    index = 0
    chunk = _read_full(stream, s)
    while True:
        held = len(chunk)
        yield held, pad_segment(chunk, params)
        index += 1
        if held < s:
            return
        chunk = _read_full(stream, s)
        if not chunk:
            return


def hash_object(stream: BinaryIO, params: LayoutParams = DEFAULT_PARAMS) -> tuple[str, int]:
    """(fid, size) of the object in ``stream``, without erasure coding."""
    hashes: list[bytes] = []
    size = 0
    for held, segment in iter_segments(stream, params):
        hashes.append(hashlib.sha256(segment).digest())
        size += held
    return compute_fid(hashes), size


def encode_segment(segment: bytes, params: LayoutParams) -> list[memoryview]:
    """The k + m fragments of a padded segment."""
    if len(segment) % params.data_shards or not 0 < len(segment) <= params.segment_size:
        raise InvalidParameters(
            f"a padded segment must be a multiple of k={params.data_shards} bytes "
            f"between {params.data_shards} and {params.segment_size}, got {len(segment)}"
        )
    return params.code().encode(segment)


def encode_and_plan(index: int, held: int, segment: bytes, params: LayoutParams) -> EncodedSegment:
    """Segment ``index`` (padded, holding ``held`` object bytes) with its fragments and plan."""
    fragments = encode_segment(segment, params)
    plan = SegmentPlan(
        index=index,
        size=held,
        padded_size=len(segment),
        hash=hashlib.sha256(segment).digest(),
        fragment_hashes=[hashlib.sha256(f).digest() for f in fragments],
    )
    return EncodedSegment(index, held, segment, fragments, plan)


def pad_segment(data: bytes, params: LayoutParams) -> bytes:
    """A segment's object bytes, zero-padded to a multiple of k (at least k bytes)."""
    missing = padded_size(len(data), params) - len(data)
    return data + bytes(missing) if missing else data


def iter_encoded_segments(
    stream: BinaryIO, params: LayoutParams = DEFAULT_PARAMS
) -> Iterator[EncodedSegment]:
    """Read the object once, yielding each segment with its fragments and their hashes."""
    for index, (held, segment) in enumerate(iter_segments(stream, params)):
        yield encode_and_plan(index, held, segment, params)


def plan_object(stream: BinaryIO, params: LayoutParams = DEFAULT_PARAMS) -> ObjectPlan:
    """The declaration of an object: size, fid, and every segment and fragment hash."""
    segments = [encoded.plan for encoded in iter_encoded_segments(stream, params)]
    return ObjectPlan(
        size=sum(s.size for s in segments),
        fid=compute_fid([s.hash for s in segments]),
        params=params,
        segments=segments,
    )


def verify_fragment(data: bytes | memoryview, expected_hash: bytes, what: str) -> None:
    """Raises HashMismatch unless sha256(data) == expected_hash."""
    actual = hashlib.sha256(data).digest()
    if actual != expected_hash:
        raise HashMismatch(f"{what}: sha256 {actual.hex()} != declared {expected_hash.hex()}")


def _verified(
    fragments: Mapping[int, bytes | memoryview], segment: SegmentPlan, params: LayoutParams
) -> dict[int, bytes | memoryview]:
    n = params.total_shards
    if len(segment.fragment_hashes) != n:
        raise InvalidParameters(
            f"segment {segment.index} declares {len(segment.fragment_hashes)} fragments, not {n}"
        )
    for index, data in fragments.items():
        if not isinstance(index, int) or not 0 <= index < n:
            raise InvalidParameters(f"fragment index {index!r} outside 0..{n - 1}")
        what = f"segment {segment.index} fragment {index}"
        if len(data) * params.data_shards != segment.padded_size:
            expected = params.fragment_size(segment)
            raise HashMismatch(f"{what}: {len(data)} bytes, expected {expected}")
        verify_fragment(data, segment.fragment_hashes[index], what)
    return dict(fragments)


def decode_segment(
    fragments: Mapping[int, bytes | memoryview], segment: SegmentPlan, params: LayoutParams
) -> bytes:
    """The padded segment from any k of its fragments, each checked against its hash.

    Raises:
        HashMismatch: a fragment is not the declared one (caller should fetch another).
        NotEnoughFragments: fewer than k fragments were given.
    """
    checked = _verified(fragments, segment, params)
    if len(checked) < params.data_shards:
        raise NotEnoughFragments(
            f"segment {segment.index}: {len(checked)} fragments, {params.data_shards} needed"
        )
    return params.code().decode(checked)


def rebuild_fragment(
    fragments: Mapping[int, bytes | memoryview],
    lost_index: int,
    segment: SegmentPlan,
    params: LayoutParams,
) -> bytes:
    """Rebuild one lost fragment from k others; inputs and result are checked by hash."""
    others = {i: f for i, f in _verified(fragments, segment, params).items() if i != lost_index}
    if not 0 <= lost_index < params.total_shards:
        raise InvalidParameters(f"fragment index {lost_index} outside 0..{params.total_shards - 1}")
    if len(others) < params.data_shards:
        raise NotEnoughFragments(
            f"segment {segment.index}: {len(others)} other fragments, {params.data_shards} needed"
        )
    rebuilt = params.code().reconstruct(others, lost_index)
    verify_fragment(
        rebuilt,
        segment.fragment_hashes[lost_index],
        f"rebuilt segment {segment.index} fragment {lost_index}",
    )
    return rebuilt
