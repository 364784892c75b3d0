"""The fid rule (DESIGN 4.2) and inclusion proofs."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deoss.core.errors import InvalidParameters, MerkleProofMismatch
from deoss.core.layout import LayoutParams, hash_object
from deoss.core.merkle import (
    MerkleProof,
    compute_fid,
    compute_root,
    prove_inclusion,
    verify_inclusion,
)

VECTORS = Path(__file__).parents[2] / "vectors"
SEGMENTS = json.loads((VECTORS / "fid_segments.json").read_text())
MERKLE = json.loads((VECTORS / "merkle.json").read_text())


def split_root(hashes: list[bytes]) -> bytes:
    """Independent oracle: split at the largest power of two below n (RFC 6962 shape).

    Level-by-level pairing with the odd last node carried up builds the same tree.
    """
    if len(hashes) == 1:
        return hashlib.sha256(b"\x00" + hashes[0]).digest()
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + split_root(hashes[:k]) + split_root(hashes[k:])).digest()


def pattern_segment(k: int) -> bytes:
    return bytes((k + j) % 256 for j in range(256)) * (32 * 1024 * 1024 // 256)


@pytest.mark.parametrize("vector", SEGMENTS["vectors"], ids=lambda v: f"{v['segments']}seg")
def test_shared_fid_vectors_from_segment_hashes(vector: dict[str, Any]) -> None:
    hashes = [bytes.fromhex(h) for h in vector["segment_hashes"]]
    assert vector["fid"] == compute_fid(hashes)


@pytest.mark.slow
def test_shared_fid_vectors_from_content() -> None:
    """The 3-segment vector recomputed from its 96 MiB of content, streamed."""
    vector = next(v for v in SEGMENTS["vectors"] if v["segments"] == 3)
    data = b"".join(pattern_segment(k) for k in range(3))
    assert (vector["fid"], vector["size"]) == hash_object(io.BytesIO(data))


@pytest.mark.parametrize("tree", MERKLE["trees"], ids=lambda t: f"{t['leaves']}leaves")
def test_committed_tree_vectors(tree: dict[str, Any]) -> None:
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(tree["leaves"])]
    assert tree["root"] == compute_root(leaves).hex()
    assert tree["root"] == split_root(leaves).hex()


@pytest.mark.parametrize("obj", MERKLE["objects"], ids=lambda o: f"{o['size']}B")
def test_committed_object_fids(obj: dict[str, Any]) -> None:
    data = bytes((7 * j + 3) % 251 for j in range(obj["size"]))
    params = LayoutParams(segment_size=obj.get("segment_size", 32 * 1024 * 1024))
    assert (obj["fid"], obj["size"]) == hash_object(io.BytesIO(data), params)


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=70))
def test_root_matches_independent_oracle(hashes: list[bytes]) -> None:
    assert split_root(hashes) == compute_root(hashes)


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=40), st.data())
def test_every_inclusion_proof_verifies_and_fails_on_any_change(
    hashes: list[bytes], data: st.DataObject
) -> None:
    root = compute_root(hashes)
    index = data.draw(st.integers(0, len(hashes) - 1))
    proof = prove_inclusion(hashes, index)
    verify_inclusion(root, hashes[index], proof)
    flipped = bytearray(hashes[index])
    flipped[data.draw(st.integers(0, 31))] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(MerkleProofMismatch):
        verify_inclusion(root, bytes(flipped), proof)
    if proof.siblings:
        which = data.draw(st.integers(0, len(proof.siblings) - 1))
        siblings = list(proof.siblings)
        siblings[which] = bytes(32)
        with pytest.raises(MerkleProofMismatch):
            verify_inclusion(
                root,
                hashes[index],
                MerkleProof(index=index, leaf_count=len(hashes), siblings=siblings),
            )
    if len(hashes) > 1:
        other = (index + 1) % len(hashes)
        if hashes[other] != hashes[index]:
            with pytest.raises(MerkleProofMismatch):
                verify_inclusion(
                    root,
                    hashes[index],
                    MerkleProof(index=other, leaf_count=len(hashes), siblings=proof.siblings),
                )


def test_proofs_with_wrong_sibling_count_or_index_are_refused() -> None:
    hashes = [hashlib.sha256(bytes([i])).digest() for i in range(5)]
    root = compute_root(hashes)
    proof = prove_inclusion(hashes, 2)
    too_many = MerkleProof(index=2, leaf_count=5, siblings=[*proof.siblings, bytes(32)])
    too_few = MerkleProof(index=2, leaf_count=5, siblings=proof.siblings[:-1])
    outside = MerkleProof(index=5, leaf_count=5, siblings=proof.siblings)
    for bad, message in ((too_many, "too many"), (too_few, "too few"), (outside, "outside")):
        with pytest.raises(MerkleProofMismatch, match=message):
            verify_inclusion(root, hashes[2], bad)


def test_odd_node_is_carried_not_duplicated() -> None:
    """[a, b, c] and [a, b, c, c] must have different roots (no self-pairing)."""
    a, b, c = (hashlib.sha256(bytes([i])).digest() for i in range(3))
    assert compute_root([a, b, c]) != compute_root([a, b, c, c])


def test_bad_leaves_are_refused() -> None:
    with pytest.raises(InvalidParameters, match="at least one"):
        compute_root([])
    with pytest.raises(InvalidParameters, match="leaf 1 is 31 bytes"):
        compute_root([bytes(32), bytes(31)])
    with pytest.raises(InvalidParameters, match="outside"):
        prove_inclusion([bytes(32)], 1)
