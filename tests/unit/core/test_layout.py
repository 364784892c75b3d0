"""Object -> segments -> fragments -> object, streamed, with hashes checked on the way back."""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Iterator

import pytest

from deoss.core.errors import HashMismatch, InvalidParameters, NotEnoughFragments
from deoss.core.layout import (
    DEFAULT_PARAMS,
    LayoutParams,
    decode_segment,
    hash_object,
    iter_encoded_segments,
    object_slice,
    plan_object,
    rebuild_fragment,
    segment_count,
    segments_for_range,
)
from deoss.core.merkle import compute_fid

SMALL = LayoutParams(segment_size=4096, data_shards=4, parity_shards=8)
MiB = 1024 * 1024


class PatternStream(io.RawIOBase):
    """A deterministic pseudo-random object of any size, produced on the fly (no big buffers).

    Byte p is byte p % 1 MiB of block p // 1 MiB, each block drawn from its own seed, so the
    content does not depend on how it is read.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.position = size, seed, 0
        self.block_index, self.block = -1, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        index, offset = divmod(self.position, MiB)
        if index != self.block_index:
            self.block_index, self.block = (
                index,
                random.Random(self.seed * 7919 + index).randbytes(MiB),
            )
        # Short reads on purpose (at most to the end of a block): the layout must loop.
        n = min(len(buffer), self.size - self.position, MiB - offset)
        buffer[:n] = self.block[offset : offset + n]
        self.position += n
        return n


def round_trip(stream: io.RawIOBase, params: LayoutParams, seed: int) -> tuple[str, int, str]:
    """Encode the stream, decode each segment from a random k of its fragments, and return
    (fid, size, sha256 of the rebuilt object)."""
    rng = random.Random(seed)
    rebuilt = hashlib.sha256()
    hashes = []
    size = 0
    for encoded in iter_encoded_segments(stream, params):  # type: ignore[arg-type]
        chosen = rng.sample(range(params.total_shards), params.data_shards)
        segment = decode_segment(
            {i: bytes(encoded.fragments[i]) for i in chosen}, encoded.plan, params
        )
        assert encoded.data == segment
        rebuilt.update(object_slice(segment, encoded.index, encoded.plan.size + size, params))
        hashes.append(encoded.plan.hash)
        size += encoded.size
    return compute_fid(hashes), size, rebuilt.hexdigest()


def boundary_sizes(params: LayoutParams) -> Iterator[int]:
    s, k = params.segment_size, params.data_shards
    yield from (0, 1, k - 1, k, k + 1)
    for n in (1, 2, 3):
        yield from (n * s - 1, n * s, n * s + 1, n * s + k - 1, n * s + k + 1)


@pytest.mark.parametrize("size", sorted(set(boundary_sizes(SMALL))))
def test_round_trip_around_every_boundary(size: int) -> None:
    data = random.Random(size).randbytes(size)
    fid, got_size, digest = round_trip(io.BytesIO(data), SMALL, seed=size)  # type: ignore[arg-type]
    assert (size, hashlib.sha256(data).hexdigest()) == (got_size, digest)
    assert (fid, size) == hash_object(io.BytesIO(data), SMALL)


@pytest.mark.parametrize("size", [0, 1, 1024, 32 * MiB - 1, 32 * MiB, 32 * MiB + 1])
def test_round_trip_default_layout(size: int) -> None:
    data = random.Random(size).randbytes(size)
    _, got_size, digest = round_trip(io.BytesIO(data), DEFAULT_PARAMS, seed=7)  # type: ignore[arg-type]
    assert (size, hashlib.sha256(data).hexdigest()) == (got_size, digest)


@pytest.mark.slow
def test_round_trip_100_mib_streamed() -> None:
    size = 100 * MiB + 12345
    expected = hashlib.sha256()
    source = PatternStream(size, seed=99)
    while chunk := source.read(8 * MiB):
        expected.update(chunk)
    _, got_size, digest = round_trip(PatternStream(size, seed=99), DEFAULT_PARAMS, seed=3)
    assert (size, expected.hexdigest()) == (got_size, digest)


def test_small_object_costs_kilobytes() -> None:
    """DESIGN 4.1: a 1 KiB object is not padded to a 32 MiB segment."""
    plan = plan_object(io.BytesIO(b"x" * 1024))
    assert [1024] == [s.padded_size for s in plan.segments]
    assert 256 == DEFAULT_PARAMS.fragment_size(plan.segments[0])
    assert 3 * 1024 == sum(DEFAULT_PARAMS.fragment_size(s) * 12 for s in plan.segments)


def test_empty_object_is_one_segment_of_k_zero_bytes() -> None:
    plan = plan_object(io.BytesIO(b""))
    assert (0, 1) == (plan.size, len(plan.segments))
    assert (0, 4, hashlib.sha256(bytes(4)).digest()) == (
        plan.segments[0].size,
        plan.segments[0].padded_size,
        plan.segments[0].hash,
    )


def test_plan_lists_every_fragment_hash() -> None:
    data = random.Random(5).randbytes(3 * 4096 + 100)
    plan = plan_object(io.BytesIO(data), SMALL)
    assert (len(data), 4) == (plan.size, len(plan.segments))
    assert [4096, 4096, 4096, 100] == [s.size for s in plan.segments]
    assert [4096, 4096, 4096, 100] == [s.padded_size for s in plan.segments]
    encoded_segments = list(iter_encoded_segments(io.BytesIO(data), SMALL))
    for encoded, segment in zip(encoded_segments, plan.segments, strict=True):
        assert [hashlib.sha256(f).digest() for f in encoded.fragments] == segment.fragment_hashes


def test_changed_byte_in_any_fragment_is_detected() -> None:
    data = random.Random(8).randbytes(1000)
    encoded = next(iter_encoded_segments(io.BytesIO(data), SMALL))
    for index in range(SMALL.total_shards):
        fragments = {i: bytes(f) for i, f in enumerate(encoded.fragments)}
        for position in (0, len(fragments[index]) // 2, len(fragments[index]) - 1):
            corrupt = bytearray(fragments[index])
            corrupt[position] ^= 0x01
            fragments[index] = bytes(corrupt)
            with pytest.raises(HashMismatch, match=f"fragment {index}"):
                decode_segment(fragments, encoded.plan, SMALL)
            with pytest.raises(HashMismatch, match=f"fragment {index}"):
                rebuild_fragment(fragments, (index + 1) % 12, encoded.plan, SMALL)


def test_truncated_fragment_is_detected() -> None:
    encoded = next(iter_encoded_segments(io.BytesIO(b"abcdefgh" * 50), SMALL))
    fragments = {i: bytes(encoded.fragments[i]) for i in (0, 1, 2, 3)}
    fragments[2] = fragments[2][:-1]
    with pytest.raises(HashMismatch, match="bytes, expected"):
        decode_segment(fragments, encoded.plan, SMALL)


def test_rebuild_each_lost_fragment_from_k_others() -> None:
    data = random.Random(9).randbytes(4096)
    encoded = next(iter_encoded_segments(io.BytesIO(data), SMALL))
    rng = random.Random(1)
    for lost in range(12):
        donors = rng.sample([i for i in range(12) if i != lost], 4)
        rebuilt = rebuild_fragment(
            {i: encoded.fragments[i] for i in donors}, lost, encoded.plan, SMALL
        )
        assert bytes(encoded.fragments[lost]) == rebuilt


def test_rebuild_and_decode_need_k_fragments() -> None:
    encoded = next(iter_encoded_segments(io.BytesIO(b"z" * 400), SMALL))
    three = {i: encoded.fragments[i] for i in (1, 6, 9)}
    with pytest.raises(NotEnoughFragments, match="3 fragments, 4 needed"):
        decode_segment(three, encoded.plan, SMALL)
    with pytest.raises(NotEnoughFragments, match="3 other fragments"):
        rebuild_fragment({**three, 0: encoded.fragments[0]}, 0, encoded.plan, SMALL)
    with pytest.raises(InvalidParameters, match="outside 0..11"):
        rebuild_fragment(dict(enumerate(encoded.fragments)), 12, encoded.plan, SMALL)


def test_segments_for_range() -> None:
    size = 3 * 4096 + 10
    assert range(1) == segments_for_range(0, 0, size, SMALL)
    assert range(2) == segments_for_range(4095, 4096, size, SMALL)
    assert range(3, 4) == segments_for_range(size - 1, size - 1, size, SMALL)
    assert range(4) == segments_for_range(0, size - 1, size, SMALL)
    for start, end in ((-1, 5), (5, 4), (0, size)):
        with pytest.raises(InvalidParameters, match="outside an object"):
            segments_for_range(start, end, size, SMALL)


def test_segment_count() -> None:
    assert [1, 1, 1, 2, 2] == [segment_count(n, SMALL) for n in (0, 1, 4096, 4097, 8192)]
    with pytest.raises(InvalidParameters, match="non-negative"):
        segment_count(-1, SMALL)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"segment_size": 4097}, "multiple of k=4"),
        ({"segment_size": 2}, "integer in 4.."),
        ({"segment_size": 2 * 1024 * MiB}, "integer in 4.."),
        ({"data_shards": 0}, "at least 1"),
        ({"parity_shards": 0}, "at least 1"),
        ({"data_shards": 30, "segment_size": 30 * 1024}, "at most 32"),
    ],
)
def test_bad_parameters_raise_clear_errors(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(InvalidParameters, match=message):
        LayoutParams(**kwargs)


def test_text_stream_is_refused() -> None:
    with pytest.raises(InvalidParameters, match="binary mode"):
        hash_object(io.StringIO("text"))  # type: ignore[arg-type]
