"""Properties of the layout over random parameters and contents."""

from __future__ import annotations

import hashlib
import io
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deoss.core.layout import (
    DEFAULT_PARAMS,
    LayoutParams,
    decode_segment,
    hash_object,
    iter_encoded_segments,
    object_slice,
    plan_object,
    rebuild_fragment,
)
from tests.strategies import layout_params


@given(layout_params(), st.binary(max_size=3000), st.data())
def test_any_k_fragments_of_each_segment_rebuild_the_object(
    params: LayoutParams, data: bytes, draw: st.DataObject
) -> None:
    out = bytearray()
    for encoded in iter_encoded_segments(io.BytesIO(data), params):
        chosen = draw.draw(
            st.lists(
                st.integers(0, params.total_shards - 1),
                min_size=params.data_shards,
                max_size=params.data_shards,
                unique=True,
            )
        )
        fragments = {i: encoded.fragments[i] for i in chosen}
        segment = decode_segment(fragments, encoded.plan, params)
        out += object_slice(segment, encoded.index, len(data), params)
        lost = draw.draw(st.integers(0, params.total_shards - 1))
        donors = {i: f for i, f in fragments.items() if i != lost}
        if len(donors) == params.data_shards:
            rebuilt = rebuild_fragment(donors, lost, encoded.plan, params)
            assert bytes(encoded.fragments[lost]) == rebuilt
    assert data == bytes(out)


@given(layout_params(), st.binary(max_size=3000))
def test_plan_and_fid_agree(params: LayoutParams, data: bytes) -> None:
    plan = plan_object(io.BytesIO(data), params)
    assert (plan.fid, plan.size) == hash_object(io.BytesIO(data), params)
    assert [
        hashlib.sha256(
            data[s.index * params.segment_size : s.index * params.segment_size + s.size]
            + bytes(s.padded_size - s.size)
        ).digest()
        for s in plan.segments
    ] == [s.hash for s in plan.segments]
    assert all(s.padded_size % params.data_shards == 0 for s in plan.segments)
    assert all(s.padded_size - s.size < params.data_shards or s.size == 0 for s in plan.segments)


@given(layout_params(), st.binary(min_size=1, max_size=500))
def test_trailing_zero_padding_is_the_only_way_two_objects_share_a_fid(
    params: LayoutParams, data: bytes
) -> None:
    """(fid, size) identifies content: an object and the same object plus one zero byte share
    a fid only when that byte falls inside the last segment's padding."""
    fid_a, size_a = hash_object(io.BytesIO(data), params)
    fid_b, size_b = hash_object(io.BytesIO(data + b"\0"), params)
    same_padded = len(data) % params.data_shards != 0
    assert same_padded == (fid_a == fid_b)
    assert size_a + 1 == size_b


_RNG = random.Random(2026)
RANDOM_SIZES = sorted(_RNG.randrange(100 * 1024 * 1024) for _ in range(3))


@pytest.mark.slow
@pytest.mark.parametrize("size", RANDOM_SIZES)
def test_random_sizes_up_to_100_mib_round_trip_streamed(size: int) -> None:
    """Objects of random size up to 100 MiB, default layout, rebuilt from random k fragments."""
    from tests.unit.core.test_layout import PatternStream, round_trip

    expected = hashlib.sha256()
    source = PatternStream(size, size)
    while chunk := source.read(8 * 1024 * 1024):
        expected.update(chunk)
    _, got_size, digest = round_trip(PatternStream(size, size), DEFAULT_PARAMS, seed=size)
    assert (size, expected.hexdigest()) == (got_size, digest)
