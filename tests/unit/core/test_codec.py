"""Canonical encoding: one byte string per record, and one error type for bad bytes."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from deoss.core import codec
from deoss.core.codec import Record
from deoss.core.errors import DecodeError
from deoss.core.layout import LayoutParams, SegmentPlan
from deoss.core.merkle import MerkleProof
from deoss.core.podr2 import ChallengeItem, Proof

VECTORS = json.loads((Path(__file__).parents[2] / "vectors" / "codec.json").read_text())
TYPES: dict[str, type[Record]] = {
    "LayoutParams": LayoutParams,
    "SegmentPlan": SegmentPlan,
    "MerkleProof": MerkleProof,
    "ChallengeItem": ChallengeItem,
    "Proof": Proof,
}


class Sample(Record):
    name: str
    amount: int
    blob: bytes
    tags: dict[str, int] = {}


def build(name: str) -> Record:
    if name == "LayoutParams":
        return LayoutParams()
    if name == "SegmentPlan":
        return SegmentPlan(
            index=3,
            size=1000,
            padded_size=1000,
            hash=bytes(range(32)),
            fragment_hashes=[bytes([i]) * 32 for i in range(3)],
        )
    if name == "MerkleProof":
        return MerkleProof(index=5, leaf_count=7, siblings=[b"\xaa" * 32, b"\xbb" * 32])
    if name == "ChallengeItem":
        return ChallengeItem(
            fragment_hash=b"\x01" * 32, indices=[0, 7], coefficients=b"\x01" * 16 + b"\xff" * 16
        )
    return Proof(sigma=b"\x11" * 48, mu=b"\x22" * 64)


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["type"])
def test_encoding_matches_committed_vector(vector: dict[str, str]) -> None:
    """The bytes of each record are frozen: a change here is a change of the wire format."""
    record = build(vector["type"])
    assert vector["hex"] == codec.encode(record).hex()
    assert record == codec.decode(bytes.fromhex(vector["hex"]), TYPES[vector["type"]])


def test_dict_keys_encode_sorted_whatever_the_insertion_order() -> None:
    a = Sample(name="x", amount=1, blob=b"", tags={"b": 2, "a": 1})
    b = Sample(name="x", amount=1, blob=b"", tags={"a": 1, "b": 2})
    assert codec.encode(a) == codec.encode(b)


def test_non_canonical_integer_is_refused() -> None:
    """A uint64-encoded small integer decodes in msgpack, but is not our one encoding."""
    good = codec.encode(Sample(name="x", amount=1, blob=b""))
    padded = msgspec.msgpack.encode(["x", 1, b"", {}]).replace(
        b"\x01", b"\xcf" + b"\0" * 7 + b"\x01"
    )
    assert good != padded
    with pytest.raises(DecodeError, match="canonical"):
        codec.decode(padded, Sample)


def test_unsorted_map_is_refused() -> None:
    raw = msgspec.msgpack.encode(["x", 1, b"", {"b": 2, "a": 1}])
    with pytest.raises(DecodeError, match="canonical"):
        codec.decode(raw, Sample)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xc1", "malformed"),
        (b"", "malformed"),
        (msgspec.msgpack.encode(["x", "one", b"", {}]), "Expected `int`"),
        (msgspec.msgpack.encode(["x", 1]), "Expected `array` of at least length 3"),
        (msgspec.msgpack.encode(["x", 1, b"", {}, 5]), "at most length 4"),
        (msgspec.msgpack.encode(["x", 1.5, b"", {}]), "Expected `int`"),
        (msgspec.msgpack.encode({"name": "x"}), "Expected `array`"),
    ],
)
def test_bad_bytes_raise_decode_error_with_reason(raw: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        codec.decode(raw, Sample)


def test_record_checks_surface_as_decode_error() -> None:
    """Values refused by a record's own checks are decode errors, not a different type."""
    raw = codec.encode(LayoutParams()).replace(b"\x04", b"\x05", 1)
    with pytest.raises(DecodeError, match="multiple of k=5"):
        codec.decode(raw, LayoutParams)


def test_wrong_length_hash_is_refused() -> None:
    raw = msgspec.msgpack.encode([b"\x01" * 31, [0], b"\x01" * 16])
    with pytest.raises(DecodeError, match="length"):
        codec.decode(raw, ChallengeItem)


def test_oversized_input_is_refused_before_parsing() -> None:
    with pytest.raises(DecodeError, match="exceed the limit"):
        codec.decode(b"\x00" * (codec.MAX_RECORD_BYTES + 1), Sample)


def test_record_hash_is_sha256_of_canonical_bytes() -> None:
    import hashlib

    record = LayoutParams()
    assert hashlib.sha256(codec.encode(record)).digest() == codec.record_hash(record)
