"""PoDR²: tags, challenges, aggregated proofs and their verification."""

from __future__ import annotations

import hashlib
import json
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from deoss.core import codec
from deoss.core.errors import BadProof, InvalidKey, InvalidParameters
from deoss.core.podr2 import (
    DST_BLOCK,
    ORDER,
    SECTOR_BYTES,
    TAG_BYTES,
    ChallengeItem,
    FragmentRef,
    PodrParams,
    Proof,
    TagKey,
    TagPublicKey,
    block_count,
    block_span,
    check_tags,
    derive_challenge,
    prove,
    verify_proof,
)

S = 4  # sectors per block in most tests: small keeps tagging fast
PARAMS = PodrParams(sectors_per_block=S, blocks_per_fragment=3, fragments_per_challenge=4)
SEED_A, SEED_B = b"\xaa" * 32, b"\xbb" * 32
VECTORS = json.loads((Path(__file__).parents[2] / "vectors" / "podr2.json").read_text())


class Holder:
    """A miner's view: fragments and their tags, read one challenged block at a time."""

    def __init__(self, key: TagKey, fragments: list[bytes]) -> None:
        self.data = {hashlib.sha256(f).digest(): f for f in fragments}
        self.tags = {h: key.tag_fragment(f, h) for h, f in self.data.items()}
        self.reads: list[tuple[bytes, int]] = []

    def refs(self) -> list[FragmentRef]:
        return [FragmentRef(hash=h, size=len(f)) for h, f in self.data.items()]

    def read(self, fragment_hash: bytes, index: int) -> tuple[bytes, bytes]:
        self.reads.append((fragment_hash, index))
        fragment = self.data[fragment_hash]
        offset, length = block_span(index, len(fragment), S)
        tag = self.tags[fragment_hash][index * TAG_BYTES : (index + 1) * TAG_BYTES]
        return fragment[offset : offset + length], tag


@pytest.fixture(scope="module")
def key() -> TagKey:
    return TagKey.from_secret((123456789).to_bytes(32, "little"), S)


@pytest.fixture(scope="module")
def holder(key: TagKey) -> Holder:
    rng = random.Random(4)
    sizes = [1, 100, 124, 125, 500, 997]  # around the 124-byte block size, and several blocks
    return Holder(key, [rng.randbytes(n) for n in sizes])


# py_ecc annotates hash_to_G1's hash_function as a hash object, but calls it to make one: the
# constructor hashlib.sha256 is what it takes at run time.
PY_ECC_SHA256: Any = hashlib.sha256


def test_honest_proof_verifies_and_reads_only_challenged_blocks(
    key: TagKey, holder: Holder
) -> None:
    items = derive_challenge(SEED_A, holder.refs(), PARAMS)
    holder.reads.clear()
    proof = prove(items, holder.read, S)
    verify_proof(key.public, items, proof)
    challenged = [(item.fragment_hash, i) for item in items for i in item.indices]
    assert challenged == holder.reads


def test_proof_is_constant_size_whatever_the_number_of_fragments(
    key: TagKey, holder: Holder
) -> None:
    one = derive_challenge(SEED_A, holder.refs()[:1], PARAMS)
    many = derive_challenge(SEED_A, holder.refs(), PARAMS)
    sizes = {len(codec.encode(prove(items, holder.read, S))) for items in (one, many)}
    assert {TAG_BYTES + 32 * S + 5} == sizes  # sigma, mu and 5 bytes of MessagePack framing


def test_changed_byte_in_any_challenged_block_fails(key: TagKey, holder: Holder) -> None:
    items = derive_challenge(SEED_A, holder.refs(), PARAMS)
    for item in items:
        for index in item.indices:

            def tampered(
                h: bytes, i: int, target: tuple[bytes, int] = (item.fragment_hash, index)
            ) -> tuple[bytes, bytes]:
                block, tag = holder.read(h, i)
                if (h, i) == target:
                    block = bytes([block[0] ^ 1]) + block[1:]
                return block, tag

            with pytest.raises(BadProof):
                verify_proof(key.public, items, prove(items, tampered, S))


def test_dropped_block_fails(key: TagKey, holder: Holder) -> None:
    items = derive_challenge(SEED_A, holder.refs(), PARAMS)
    target = next(item for item in items if len(item.indices) > 1)
    shorter = ChallengeItem(
        fragment_hash=target.fragment_hash,
        indices=target.indices[1:],
        coefficients=target.coefficients[16:],
    )
    partial = [shorter if item is target else item for item in items]
    with pytest.raises(BadProof):
        verify_proof(key.public, items, prove(partial, holder.read, S))
    with pytest.raises(BadProof):  # dropping a whole fragment
        verify_proof(key.public, items, prove(items[1:], holder.read, S))


def test_wrong_key_fails(holder: Holder) -> None:
    items = derive_challenge(SEED_A, holder.refs(), PARAMS)
    proof = prove(items, holder.read, S)
    other = TagKey.generate(S, os.urandom)
    with pytest.raises(BadProof):
        verify_proof(other.public, items, proof)


def test_wrong_seed_and_replayed_proof_fail(key: TagKey, holder: Holder) -> None:
    """A proof for one round's challenge says nothing about another round's."""
    old_round = derive_challenge(SEED_A, holder.refs(), PARAMS)
    new_round = derive_challenge(SEED_B, holder.refs(), PARAMS)
    assert old_round != new_round
    replayed = prove(old_round, holder.read, S)
    with pytest.raises(BadProof):
        verify_proof(key.public, new_round, replayed)


def test_tags_of_another_fragment_do_not_prove_this_one(key: TagKey) -> None:
    """Data stored under a different name (hash) than the challenged one fails."""
    rng = random.Random(11)
    real, other = rng.randbytes(300), rng.randbytes(300)
    miner = Holder(key, [other])
    other_hash = hashlib.sha256(other).digest()
    real_ref = FragmentRef(hash=hashlib.sha256(real).digest(), size=300)
    items = derive_challenge(SEED_A, [real_ref], PARAMS)
    proof = prove(items, lambda _h, i: miner.read(other_hash, i), S)
    with pytest.raises(BadProof):
        verify_proof(key.public, items, proof)


@pytest.mark.parametrize(
    ("proof", "error", "message"),
    [
        (Proof(sigma=b"\x00" * 48, mu=bytes(32 * S)), BadProof, "not a G1 point"),
        (Proof(sigma=b"\xc0" + bytes(47), mu=bytes(32 * (S - 1))), BadProof, "mu has"),
        (
            Proof(sigma=b"\xc0" + bytes(47), mu=ORDER.to_bytes(32, "little") * S),
            BadProof,
            "not a list of scalars",
        ),
        (Proof(sigma=b"\xc0" + bytes(47), mu=bytes(32 * S)), BadProof, "does not verify"),
    ],
)
def test_malformed_proofs_are_refused(
    key: TagKey, holder: Holder, proof: Proof, error: type[Exception], message: str
) -> None:
    items = derive_challenge(SEED_A, holder.refs(), PARAMS)
    with pytest.raises(error, match=message):
        verify_proof(key.public, items, proof)


def test_empty_and_mismatched_challenges_are_refused(key: TagKey, holder: Holder) -> None:
    proof = prove(derive_challenge(SEED_A, holder.refs(), PARAMS), holder.read, S)
    with pytest.raises(BadProof, match="empty"):
        verify_proof(key.public, [], proof)
    bad = ChallengeItem(fragment_hash=bytes(32), indices=[0, 1], coefficients=bytes(16))
    with pytest.raises(BadProof, match="mismatched"):
        verify_proof(key.public, [bad], proof)


def test_threaded_tagging_equals_serial(key: TagKey) -> None:
    fragment = random.Random(3).randbytes(124 * 40 + 7)
    digest = hashlib.sha256(fragment).digest()
    with ThreadPoolExecutor(2) as pool:
        threaded = key.tag_fragment(fragment, digest, pool, blocks_per_task=3)
    assert key.tag_fragment(fragment, digest) == threaded
    assert block_count(len(fragment), S) * TAG_BYTES == len(threaded)


def test_tagging_refuses_a_wrong_fragment_hash(key: TagKey) -> None:
    with pytest.raises(InvalidParameters, match="SHA-256"):
        key.tag_fragment(b"data", bytes(32))


def test_tags_match_committed_vector() -> None:
    """DSTs, sector encoding and block naming are frozen by this vector."""
    vector = VECTORS["tags"]
    key = TagKey.from_secret(bytes.fromhex(vector["secret"]), vector["sectors_per_block"])
    fragment = bytes(range(256)) * vector["fragment_repeat"]
    assert vector["public_key"] == codec.encode(key.public).hex()
    assert vector["tags"] == key.tag_fragment(fragment, hashlib.sha256(fragment).digest()).hex()


def test_challenge_matches_committed_vector() -> None:
    vector = VECTORS["challenge"]
    refs = [FragmentRef(hash=bytes([i]) * 32, size=10_000 * (i + 1)) for i in range(10)]
    items = derive_challenge(bytes.fromhex(vector["seed"]), refs, PodrParams(**vector["params"]))
    assert vector["items"] == codec.encode(items).hex()


def test_secret_round_trip_and_repr(key: TagKey) -> None:
    again = TagKey.from_secret(key.export_secret(), S)
    assert key.public == again.public
    assert key.export_secret().hex() not in repr(key)
    assert "123456789" not in repr(key)


def test_proof_of_possession(key: TagKey) -> None:
    key.public.verify_possession()
    other = TagKey.generate(S, os.urandom).public
    stolen = TagPublicKey(v=other.v, sectors_per_block=S, pop=key.public.pop)
    with pytest.raises(BadProof, match="possession"):
        stolen.verify_possession()
    with pytest.raises(InvalidKey, match="G2 point"):
        TagPublicKey(v=b"\x01" * 96, sectors_per_block=S, pop=key.public.pop).verify_possession()
    with pytest.raises(InvalidKey, match="valid G1"):
        TagPublicKey(v=key.public.v, sectors_per_block=S, pop=bytes(48)).verify_possession()


@pytest.mark.parametrize(
    ("secret", "message"),
    [(bytes(32), "zero"), (b"\xff" * 32, "below the group order"), (b"\x01" * 31, "32 bytes")],
)
def test_bad_secrets_are_refused(secret: bytes, message: str) -> None:
    with pytest.raises(InvalidKey, match=message):
        TagKey.from_secret(secret, S)


def test_challenge_is_deterministic_distinct_and_in_range() -> None:
    refs = [FragmentRef(hash=bytes([i]) * 32, size=124 * (i + 1)) for i in range(20)]
    items = derive_challenge(SEED_A, refs, PARAMS)
    assert items == derive_challenge(SEED_A, list(reversed(refs)), PARAMS)
    assert PARAMS.fragments_per_challenge == len(items)
    sizes = {r.hash: r.size for r in refs}
    for item in items:
        n = block_count(sizes[item.fragment_hash], S)
        assert len(set(item.indices)) == len(item.indices) == min(n, 3)
        assert all(0 <= i < n for i in item.indices)
        assert all(nu > 0 for nu in item.nus())
    assert [i.fragment_hash for i in items] == sorted(i.fragment_hash for i in items)
    assert items != derive_challenge(SEED_B, refs, PARAMS)


def test_small_holdings_get_more_blocks_per_fragment() -> None:
    """With fewer fragments than the sample size, the block budget is spread over them."""
    refs = [FragmentRef(hash=bytes([1]) * 32, size=124 * 100)]
    (item,) = derive_challenge(SEED_A, refs, PARAMS)
    assert PARAMS.fragments_per_challenge * PARAMS.blocks_per_fragment == len(item.indices)
    assert [] == derive_challenge(SEED_A, [], PARAMS)


def test_bad_challenge_inputs() -> None:
    with pytest.raises(InvalidParameters, match="32 bytes"):
        derive_challenge(b"short", [], PARAMS)
    for field in ("sectors_per_block", "blocks_per_fragment", "fragments_per_challenge"):
        with pytest.raises(InvalidParameters, match=field):
            PodrParams(**{field: 0})


def test_block_span() -> None:
    assert (0, 124) == block_span(0, 500, S)
    assert (496, 4) == block_span(4, 500, S)
    assert (0, 0) == block_span(0, 0, S)
    with pytest.raises(InvalidParameters):
        block_span(5, 500, S)
    assert SECTOR_BYTES * S == PodrParams(sectors_per_block=S).block_bytes


# --- cross-checks against py_ecc (a slow, independent implementation) ------------------------


def test_hash_to_curve_matches_py_ecc() -> None:
    from py_arkworks_bls12381 import G1Point
    from py_ecc.bls.hash_to_curve import hash_to_G1
    from py_ecc.bls.point_compression import compress_G1

    for message in (b"", b"abc", bytes(32) + (7).to_bytes(8, "big")):
        expected = compress_G1(hash_to_G1(message, DST_BLOCK, PY_ECC_SHA256)).to_bytes(48, "big")
        assert expected == G1Point.hash_to_curve(message, DST_BLOCK).to_compressed_bytes()


def test_public_key_and_tag_equation_hold_in_py_ecc() -> None:
    """v = x·g2, and e(σ, g2) = e(H(name||0) + Σ m_j·u_j, v) computed by py_ecc."""
    from py_ecc.bls.point_compression import compress_G2, decompress_G1
    from py_ecc.bls.typing import G1Compressed
    from py_ecc.optimized_bls12_381.optimized_curve import G2, add, multiply
    from py_ecc.optimized_bls12_381.optimized_pairing import pairing

    x = 987654321
    key = TagKey.from_secret(x.to_bytes(32, "little"), 2)
    z1, z2 = compress_G2(multiply(G2, x))
    assert z1.to_bytes(48, "big") + z2.to_bytes(48, "big") == key.public.v

    block = bytes(range(1, 63))  # one block of two 31-byte sectors
    name = hashlib.sha256(block).digest()
    sigma = decompress_G1(G1Compressed(int.from_bytes(key.tag_fragment(block, name), "big")))
    from py_ecc.bls.hash_to_curve import hash_to_G1

    from deoss.core.podr2 import DST_BASE

    point = hash_to_G1(name + (0).to_bytes(8, "big"), DST_BLOCK, PY_ECC_SHA256)
    for j in range(2):
        base = hash_to_G1(key.public.key_id + j.to_bytes(4, "big"), DST_BASE, PY_ECC_SHA256)
        m = int.from_bytes(block[31 * j : 31 * (j + 1)], "little")
        point = add(point, multiply(base, m))
    assert pairing(G2, sigma) == pairing(multiply(G2, x), point)


def test_check_tags_accepts_honest_tags_and_catches_any_single_wrong_one(key: TagKey) -> None:
    """All blocks checked at once: one tag swapped, one byte of data changed, tags of another
    fragment, the wrong key, a wrong length or bytes that are no point all fail."""
    rng = random.Random(9)
    data = rng.randbytes(997)  # 9 blocks of 124 bytes at s = 4
    digest = hashlib.sha256(data).digest()
    tags = key.tag_fragment(data, digest)
    check_tags(key.public, digest, data, tags, SEED_A)
    check_tags(key.public, digest, data, tags, SEED_B)
    swapped = tags[TAG_BYTES : 2 * TAG_BYTES] + tags[:TAG_BYTES] + tags[2 * TAG_BYTES :]
    changed = bytearray(data)
    changed[500] ^= 1
    other = rng.randbytes(997)
    other_tags = key.tag_fragment(other, hashlib.sha256(other).digest())
    wrong_key = TagKey.from_secret((987654321).to_bytes(32, "little"), S)
    for public, block_data, block_tags in [
        (key.public, data, swapped),
        (key.public, bytes(changed), tags),
        (key.public, data, other_tags),
        (wrong_key.public, data, tags),
    ]:
        with pytest.raises(BadProof):
            check_tags(public, digest, block_data, block_tags, SEED_A)
    with pytest.raises(BadProof, match="bytes of tags"):
        check_tags(key.public, digest, data, tags[:-1], SEED_A)
    with pytest.raises(BadProof):
        check_tags(key.public, digest, data, b"\xff" * len(tags), SEED_A)
