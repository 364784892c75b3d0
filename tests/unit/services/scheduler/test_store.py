"""DealStore keeps a deal's padded segments and gives back any of their fragments, checked."""

from __future__ import annotations

import os
from pathlib import Path

from deoss.services.scheduler.store import DealStore
from tests.unit.services.scheduler.harness import PARAMS, encode_object

LAYOUT = PARAMS.layout


def test_every_fragment_comes_back_from_the_kept_segment(tmp_path: Path) -> None:
    store = DealStore(tmp_path, LAYOUT)
    segments = encode_object(os.urandom(LAYOUT.segment_size + 100))
    for segment in segments:
        store.save_segment(7, segment.plan, segment.data)
    for segment in segments:
        for index, fragment in enumerate(segment.fragments):
            assert bytes(fragment) == store.read_fragment(7, segment.plan, index)
    store.drop(7)
    assert store.read_fragment(7, segments[0].plan, 0) is None


def test_a_damaged_or_missing_segment_gives_no_fragment(tmp_path: Path) -> None:
    store = DealStore(tmp_path, LAYOUT)
    first, second = encode_object(os.urandom(2 * LAYOUT.segment_size))
    assert store.read_fragment(1, first.plan, 0) is None  # never kept
    store.save_segment(1, first.plan, first.data)
    path = tmp_path / "1" / "segments" / "0"
    damaged = bytearray(path.read_bytes())
    damaged[-1] ^= 1  # in the last data fragment: it and every parity fragment are wrong
    path.write_bytes(bytes(damaged))
    assert store.read_fragment(1, first.plan, 0) == bytes(first.fragments[0])
    assert all(store.read_fragment(1, first.plan, i) is None for i in range(3, 12))
    path.write_bytes(bytes(damaged[:-1]))  # truncated
    assert all(store.read_fragment(1, first.plan, i) is None for i in range(12))
    store.save_segment(1, second.plan, first.data)  # kept under the wrong plan
    assert all(store.read_fragment(1, second.plan, i) is None for i in range(12))
