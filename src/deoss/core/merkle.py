"""The fid rule and Merkle inclusion proofs over segment hashes.

fid = Merkle root of the segment hashes, with domain separation::

    leaf(h)    = sha256(0x00 || h)
    node(l, r) = sha256(0x01 || l || r)

Levels are built left to right; an odd last node is carried up to the next level unchanged
(it is not hashed with itself, which would let two different lists share a root). A list of one
hash has root leaf(h). The fid is the lowercase hex of the root. docs/formats.md has vectors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Annotated

import msgspec

from deoss.core.codec import Record
from deoss.core.errors import InvalidParameters, MerkleProofMismatch

__all__ = [
    "HASH_SIZE",
    "MerkleProof",
    "compute_fid",
    "compute_root",
    "prove_inclusion",
    "verify_inclusion",
]

HASH_SIZE = 32
Hash32 = Annotated[bytes, msgspec.Meta(min_length=HASH_SIZE, max_length=HASH_SIZE)]

_LEAF = b"\x00"
_NODE = b"\x01"


def _leaf(h: bytes) -> bytes:
    return hashlib.sha256(_LEAF + h).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


def _check_leaves(hashes: Sequence[bytes]) -> None:
    if not hashes:
        raise InvalidParameters("a Merkle tree needs at least one leaf")
    for index, h in enumerate(hashes):
        if len(h) != HASH_SIZE:
            raise InvalidParameters(f"leaf {index} is {len(h)} bytes, expected {HASH_SIZE}")


def _next_level(level: list[bytes]) -> list[bytes]:
    paired = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        paired.append(level[-1])
    return paired


def compute_root(hashes: Sequence[bytes]) -> bytes:
    """Root of the tree over ``hashes`` (each 32 bytes).

    Raises:
        InvalidParameters: empty list or a hash of the wrong size.
    """
    _check_leaves(hashes)
    level = [_leaf(h) for h in hashes]
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def compute_fid(segment_hashes: Sequence[bytes]) -> str:
    """The fid (lowercase hex root) of an object with these segment hashes."""
    return compute_root(segment_hashes).hex()


class MerkleProof(Record):
    """Inclusion proof of leaf ``index`` among ``leaf_count`` leaves.

    ``siblings`` lists the sibling of the path node at each level where it has one, bottom up;
    levels where the path node is an odd last node (carried up) contribute nothing.
    """

    index: int
    leaf_count: int
    siblings: list[Hash32]


def prove_inclusion(hashes: Sequence[bytes], index: int) -> MerkleProof:
    """Inclusion proof for ``hashes[index]``."""
    _check_leaves(hashes)
    if not 0 <= index < len(hashes):
        raise InvalidParameters(f"leaf index {index} outside 0..{len(hashes) - 1}")
    siblings: list[bytes] = []
    level = [_leaf(h) for h in hashes]
    position = index
    while len(level) > 1:
        partner = position ^ 1
        if partner < len(level):
            siblings.append(level[partner])
        level = _next_level(level)
        position //= 2
    return MerkleProof(index=index, leaf_count=len(hashes), siblings=siblings)


def verify_inclusion(root: bytes, leaf_hash: bytes, proof: MerkleProof) -> None:
    """Check that ``leaf_hash`` sits at ``proof.index`` under ``root``.

    Raises:
        MerkleProofMismatch: the proof is malformed or does not lead to the root.
    """
    if len(leaf_hash) != HASH_SIZE or len(root) != HASH_SIZE:
        raise MerkleProofMismatch("root and leaf must be 32-byte hashes")
    if not 0 <= proof.index < proof.leaf_count:
        raise MerkleProofMismatch(f"index {proof.index} outside 0..{proof.leaf_count - 1}")
    node = _leaf(leaf_hash)
    position, width, used = proof.index, proof.leaf_count, 0
    while width > 1:
        partner = position ^ 1
        if partner < width:
            if used == len(proof.siblings):
                raise MerkleProofMismatch("proof has too few siblings")
            sibling = proof.siblings[used]
            used += 1
            node = _node(sibling, node) if position & 1 else _node(node, sibling)
        position //= 2
        width = (width + 1) // 2
    if used != len(proof.siblings):
        raise MerkleProofMismatch("proof has too many siblings")
    if node != root:
        raise MerkleProofMismatch("proof does not lead to the root")
