"""PoDR²: publicly verifiable proofs of data possession (Shacham–Waters over BLS12-381).

Notation (G1, G2 of BLS12-381, generator g2, group order r, pairing e):

* Tag key: secret x in Z_r; public v = x·g2. Sector bases u_1..u_s are hash-to-curve points
  derived from the key id (sha256 of v), so nobody knows discrete logs between them.
  A proof of possession pop = x·H_pop(v) makes the key unusable for rogue-key tricks.
* A fragment is cut into blocks of s sectors of 31 bytes (the last block zero-padded); sector j
  of block i is the little-endian integer m_ij < 2^248 < r.
* Tag of block i: sigma_i = x·(H(fragment hash || i) + sum_j m_ij·u_j), where H is RFC 9380
  hash-to-G1 (SSWU, random oracle) with this module's domain tag and i as 8 bytes big-endian.
* Challenge: from a 32-byte seed, a sample of fragments, block indices in each and 128-bit
  coefficients nu (``derive_challenge``); everything is derived with SHA-256, so the chain and
  the miner compute the same challenge.
* Proof over all challenged blocks of one tag key: sigma = sum nu·sigma_i (48 bytes) and
  mu_j = sum nu·m_ij mod r (s scalars of 32 bytes).
* Check: e(sigma, g2) == e(sum nu·H(f || i) + sum_j mu_j·u_j, v).

``TagKey`` is the enclave boundary: it is the only holder of x and never prints it.
Tagging runs its per-block multi-scalar multiplications on an executor supplied by the caller
(arkworks releases the GIL there, so a thread pool scales over cores).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated

import msgspec
from py_arkworks_bls12381 import GT, G1Point, G2Point, Scalar

from deoss.core.codec import Record
from deoss.core.errors import BadProof, BadTag, InvalidKey, InvalidParameters

if TYPE_CHECKING:  # only named in annotations: core starts no threads or processes
    from concurrent.futures import Executor

__all__ = [
    "SECTOR_BYTES",
    "TAG_BYTES",
    "ChallengeItem",
    "FragmentRef",
    "PodrParams",
    "Proof",
    "TagKey",
    "TagPublicKey",
    "block_count",
    "block_span",
    "check_tag_points",
    "check_tags",
    "derive_challenge",
    "prove",
    "verify_proof",
]

SECTOR_BYTES = 31
TAG_BYTES = 48
SCALAR_BYTES = 32
G2_BYTES = 96
MAX_SECTORS = 4096
ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001

_SUITE = b"BLS12381G1_XMD:SHA-256_SSWU_RO_"
DST_BLOCK = b"DEOSS-PODR2-V1-BLOCK-" + _SUITE
DST_BASE = b"DEOSS-PODR2-V1-BASE-" + _SUITE
DST_POP = b"DEOSS-PODR2-V1-POP-" + _SUITE

Hash32 = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]


class PodrParams(Record):
    """Sectors per block and the size of a challenge (genesis parameters; docs/podr2.md)."""

    sectors_per_block: int = 512
    blocks_per_fragment: int = 1
    fragments_per_challenge: int = 64

    def __post_init__(self) -> None:
        for name, value, top in (
            ("sectors_per_block", self.sectors_per_block, MAX_SECTORS),
            ("blocks_per_fragment", self.blocks_per_fragment, 1024),
            ("fragments_per_challenge", self.fragments_per_challenge, 4096),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
                raise InvalidParameters(f"{name} must be an integer in 1..{top}, got {value!r}")

    @property
    def block_bytes(self) -> int:
        return self.sectors_per_block * SECTOR_BYTES


def block_count(fragment_size: int, sectors_per_block: int) -> int:
    """Number of tagged blocks of a fragment (at least one)."""
    if fragment_size < 0:
        raise InvalidParameters(f"fragment size must be non-negative, got {fragment_size}")
    return max(1, -(-fragment_size // (sectors_per_block * SECTOR_BYTES)))


def block_span(index: int, fragment_size: int, sectors_per_block: int) -> tuple[int, int]:
    """(offset, length) of block ``index`` in the fragment; what a prover reads from disk."""
    size = sectors_per_block * SECTOR_BYTES
    if not 0 <= index < block_count(fragment_size, sectors_per_block):
        raise InvalidParameters(f"block {index} outside a fragment of {fragment_size} bytes")
    offset = index * size
    return offset, max(0, min(size, fragment_size - offset))


# --- points ------------------------------------------------------------------------------


def _block_point(fragment_hash: bytes, index: int) -> G1Point:
    return G1Point.hash_to_curve(fragment_hash + index.to_bytes(8, "big"), DST_BLOCK)


@lru_cache(maxsize=64)
def _bases(key_id: bytes, sectors: int) -> tuple[G1Point, ...]:
    return tuple(
        G1Point.hash_to_curve(key_id + j.to_bytes(4, "big"), DST_BASE) for j in range(sectors)
    )


def _sector_scalars(block: bytes, sectors: int) -> list[Scalar]:
    padded = block.ljust(sectors * SECTOR_BYTES, b"\0")
    return [
        Scalar.from_le_bytes(padded[j * SECTOR_BYTES : (j + 1) * SECTOR_BYTES] + b"\0")
        for j in range(sectors)
    ]


def _sector_ints(block: bytes, sectors: int) -> list[int]:
    padded = block.ljust(sectors * SECTOR_BYTES, b"\0")
    return [
        int.from_bytes(padded[j * SECTOR_BYTES : (j + 1) * SECTOR_BYTES], "little")
        for j in range(sectors)
    ]


# --- keys --------------------------------------------------------------------------------


class TagPublicKey(Record):
    """What a scheduler registers on chain: v = x·g2, s, and the proof of possession."""

    v: Annotated[bytes, msgspec.Meta(min_length=G2_BYTES, max_length=G2_BYTES)]
    sectors_per_block: int
    pop: Annotated[bytes, msgspec.Meta(min_length=TAG_BYTES, max_length=TAG_BYTES)]

    @property
    def key_id(self) -> bytes:
        return hashlib.sha256(b"deoss-podr2-key" + self.v).digest()

    def point(self) -> G2Point:
        """v as a checked point, or InvalidKey."""
        return _public_point(self.v)

    def verify_possession(self) -> None:
        """Check the proof of possession.

        Raises:
            InvalidKey: v or pop is not a valid point, or s is out of range.
            BadProof: pop does not verify for v.
        """
        if not 1 <= self.sectors_per_block <= MAX_SECTORS:
            raise InvalidKey(f"sectors_per_block {self.sectors_per_block} out of range")
        v = self.point()
        try:
            pop = G1Point.from_compressed_bytes(self.pop)
        except Exception as exc:  # the binding raises bare exceptions on bad points
            raise InvalidKey("proof of possession is not a valid G1 point") from exc
        h = G1Point.hash_to_curve(self.v, DST_POP)
        if not GT.pairing_check([pop, h], [-G2Point(), v]):
            raise BadProof("proof of possession does not verify for this key")


@lru_cache(maxsize=64)
def _public_point(v: bytes) -> G2Point:
    try:
        point = G2Point.from_compressed_bytes(v)
    except Exception as exc:
        raise InvalidKey("tag public key is not a valid G2 point") from exc
    if point == G2Point.identity():
        raise InvalidKey("tag public key is the identity")
    return point


@dataclass(frozen=True, eq=False)
class TagKey:
    """The tag secret and everything computed from it: the enclave boundary."""

    _secret: Scalar = field(repr=False)
    sectors_per_block: int
    public: TagPublicKey
    _scaled_bases: tuple[G1Point, ...] = field(repr=False)

    @classmethod
    def from_secret(cls, secret: bytes, sectors_per_block: int) -> TagKey:
        """Rebuild a key from its 32-byte little-endian secret."""
        if len(secret) != SCALAR_BYTES:
            raise InvalidKey(f"tag secret must be {SCALAR_BYTES} bytes, got {len(secret)}")
        if not 1 <= sectors_per_block <= MAX_SECTORS:
            raise InvalidParameters(f"sectors_per_block must be in 1..{MAX_SECTORS}")
        try:
            x = Scalar.from_le_bytes(secret)
        except Exception as exc:
            raise InvalidKey("tag secret is not a scalar below the group order") from exc
        if x.is_zero():
            raise InvalidKey("tag secret is zero")
        v = (G2Point() * x).to_compressed_bytes()
        pop = (G1Point.hash_to_curve(v, DST_POP) * x).to_compressed_bytes()
        public = TagPublicKey(v=v, sectors_per_block=sectors_per_block, pop=pop)
        scaled = tuple(u * x for u in _bases(public.key_id, sectors_per_block))
        return cls(x, sectors_per_block, public, scaled)

    @classmethod
    def generate(cls, sectors_per_block: int, random_bytes: Callable[[int], bytes]) -> TagKey:
        """A fresh key from ``random_bytes(n)``, the caller's cryptographic random source (say
        ``nacl.utils.random``): core draws no randomness of its own."""
        wide = int.from_bytes(random_bytes(64), "little") % (ORDER - 1) + 1
        return cls.from_secret(wide.to_bytes(SCALAR_BYTES, "little"), sectors_per_block)

    def export_secret(self) -> bytes:
        """The 32-byte secret, for sealing to disk by the owner of this key."""
        return bytes(self._secret.to_le_bytes())

    def tag_blocks(self, blocks: bytes, fragment_hash: bytes, first: int) -> bytes:
        """The tags of consecutive blocks ``first``, ``first + 1``, ... of a fragment, given
        their bytes (the fragment's last block may be short): a piece of ``tag_fragment`` for a
        worker that holds the key. ``fragment_hash`` is not checked here."""
        s, size = self.sectors_per_block, self.sectors_per_block * SECTOR_BYTES
        bases = [G1Point(), *self._scaled_bases]
        out = bytearray()
        for i in range(block_count(len(blocks), s)):  # an empty fragment has one (empty) block
            bases[0] = _block_point(fragment_hash, first + i)
            scalars = [self._secret, *_sector_scalars(blocks[i * size : (i + 1) * size], s)]
            out += G1Point.multiexp_unchecked(bases, scalars).to_compressed_bytes()
        return bytes(out)

    def _tag_blocks(self, fragment: bytes, fragment_hash: bytes, first: int, end: int) -> bytes:
        size = self.sectors_per_block * SECTOR_BYTES
        return self.tag_blocks(fragment[first * size : end * size], fragment_hash, first)

    def tag_fragment(
        self,
        fragment: bytes | memoryview,
        fragment_hash: bytes,
        executor: Executor | None = None,
        blocks_per_task: int = 16,
    ) -> bytes:
        """The tags of every block of a fragment, concatenated (48 bytes each).

        ``fragment_hash`` must be sha256(fragment): it is checked, since a tag bound to the wrong
        name would make an honest miner fail its challenges.
        """
        data = bytes(fragment)
        if hashlib.sha256(data).digest() != fragment_hash:
            raise InvalidParameters("fragment_hash is not the SHA-256 of the fragment")
        n = block_count(len(data), self.sectors_per_block)
        if executor is None or n <= blocks_per_task:
            return self._tag_blocks(data, fragment_hash, 0, n)
        starts = range(0, n, blocks_per_task)
        parts = executor.map(
            lambda a: self._tag_blocks(data, fragment_hash, a, min(n, a + blocks_per_task)),
            starts,
        )
        return b"".join(parts)


# --- challenges --------------------------------------------------------------------------


class FragmentRef(Record):
    """A fragment a miner holds, as the chain knows it: its hash and size."""

    hash: Hash32
    size: int


COEFFICIENT_BYTES = 16


class ChallengeItem(Record):
    """The challenged blocks of one fragment and their coefficients.

    ``coefficients`` holds one 16-byte big-endian ν per index (MessagePack integers stop at
    64 bits, so they travel as bytes).
    """

    fragment_hash: Hash32
    indices: list[int]
    coefficients: bytes

    def nus(self) -> list[int]:
        """The coefficients as integers; raises BadProof if they do not match the indices."""
        raw = self.coefficients
        if len(raw) != COEFFICIENT_BYTES * len(self.indices):
            raise BadProof("challenge item has mismatched indices and coefficients")
        return [
            int.from_bytes(raw[i : i + COEFFICIENT_BYTES], "big")
            for i in range(0, len(raw), COEFFICIENT_BYTES)
        ]


def _prf(seed: bytes, label: bytes, *parts: bytes) -> bytes:
    return hashlib.sha256(b"deoss-podr2-challenge" + seed + label + b"".join(parts)).digest()


def _coefficient(seed: bytes, fragment_hash: bytes, index: int) -> bytes:
    word = _prf(seed, b"coef", fragment_hash, index.to_bytes(8, "big"))[:COEFFICIENT_BYTES]
    return word if any(word) else (1).to_bytes(COEFFICIENT_BYTES, "big")  # ν = 0 would skip it


def derive_challenge(
    seed: bytes, fragments: Sequence[FragmentRef], params: PodrParams
) -> list[ChallengeItem]:
    """The challenge for a set of fragments, derived deterministically from ``seed``.

    A sample of ``fragments_per_challenge`` distinct fragments (all of them if fewer), ordered
    by hash; in each, distinct block indices. When fewer fragments are sampled than the target,
    each gets more blocks so the total stays near fragments_per_challenge × blocks_per_fragment.
    """
    if len(seed) != 32:
        raise InvalidParameters(f"challenge seed must be 32 bytes, got {len(seed)}")
    unique = {f.hash: f for f in fragments}
    ranked = sorted(unique.values(), key=lambda f: _prf(seed, b"sample", f.hash))
    sample = sorted(ranked[: params.fragments_per_challenge], key=lambda f: f.hash)
    if not sample:
        return []
    budget = params.fragments_per_challenge * params.blocks_per_fragment
    per_fragment = max(params.blocks_per_fragment, budget // len(sample))
    items = []
    for ref in sample:
        n = block_count(ref.size, params.sectors_per_block)
        wanted = min(n, per_fragment)
        chosen: set[int] = set()
        counter = 0
        while len(chosen) < wanted:
            word = _prf(seed, b"block", ref.hash, counter.to_bytes(8, "big"))
            chosen.add(int.from_bytes(word[:8], "big") % n)
            counter += 1
        indices = sorted(chosen)
        coefficients = b"".join(_coefficient(seed, ref.hash, i) for i in indices)
        items.append(
            ChallengeItem(fragment_hash=ref.hash, indices=indices, coefficients=coefficients)
        )
    return items


# --- proofs ------------------------------------------------------------------------------


class Proof(Record):
    """Aggregated proof over all challenged blocks of one tag key: 48 + 32·s bytes."""

    sigma: Annotated[bytes, msgspec.Meta(min_length=TAG_BYTES, max_length=TAG_BYTES)]
    mu: bytes


BlockReader = Callable[[bytes, int], tuple[bytes, bytes]]
"""(fragment hash, block index) -> (block bytes, its 48-byte tag)."""


def prove(items: Sequence[ChallengeItem], read: BlockReader, sectors_per_block: int) -> Proof:
    """Build the proof, reading only the challenged blocks and their tags through ``read``.

    Raises:
        BadTag: a tag read is not 48 bytes or not a point (it names the fragment and block).
        InvalidParameters: a block read is longer than ``sectors_per_block`` sectors.
    """
    s = sectors_per_block
    mu = [0] * s
    tags: list[G1Point] = []
    nus: list[Scalar] = []
    for item in items:
        for index, nu in zip(item.indices, item.nus(), strict=True):
            block, tag = read(item.fragment_hash, index)
            if len(block) > s * SECTOR_BYTES:
                raise InvalidParameters(f"block {index}: {len(block)} bytes, more than a block")
            if len(tag) != TAG_BYTES:
                raise BadTag(
                    f"tag of block {index}: {len(tag)} bytes, not {TAG_BYTES}",
                    fragment_hash=item.fragment_hash,
                    index=index,
                )
            for j, m in enumerate(_sector_ints(block, s)):
                if m:
                    mu[j] += nu * m
            try:
                tags.append(G1Point.from_compressed_bytes_unchecked(tag))
            except Exception as exc:
                raise BadTag(
                    f"stored tag of block {index} is not a G1 point",
                    fragment_hash=item.fragment_hash,
                    index=index,
                ) from exc
            nus.append(Scalar(nu))
    sigma = G1Point.multiexp_unchecked(tags, nus) if tags else G1Point.identity()
    mu_bytes = b"".join((value % ORDER).to_bytes(SCALAR_BYTES, "little") for value in mu)
    return Proof(sigma=sigma.to_compressed_bytes(), mu=mu_bytes)


def verify_proof(public: TagPublicKey, items: Sequence[ChallengeItem], proof: Proof) -> None:
    """Check a proof against the challenge it answers.

    Raises:
        BadProof: the proof is malformed or does not verify.
        InvalidKey: the public key is not valid.
    """
    s = public.sectors_per_block
    if len(proof.mu) != s * SCALAR_BYTES:
        raise BadProof(f"mu has {len(proof.mu)} bytes, expected {s * SCALAR_BYTES}")
    if not items:
        raise BadProof("empty challenge: nothing to verify")
    try:
        sigma = G1Point.from_compressed_bytes(proof.sigma)
        mu = [Scalar.from_le_bytes(proof.mu[j * 32 : (j + 1) * 32]) for j in range(s)]
    except Exception as exc:
        raise BadProof("sigma is not a G1 point or mu is not a list of scalars") from exc
    points: list[G1Point] = []
    scalars: list[Scalar] = []
    for item in items:
        for index, nu in zip(item.indices, item.nus(), strict=True):
            points.append(_block_point(item.fragment_hash, index))
            scalars.append(Scalar(nu))
    points.extend(_bases(public.key_id, s))
    scalars.extend(mu)
    aggregate = G1Point.multiexp_unchecked(points, scalars)
    if not GT.pairing_check([sigma, aggregate], [-G2Point(), public.point()]):
        raise BadProof("proof does not verify against the challenge")


def check_tag_points(tags: bytes, count: int) -> None:
    """Check that ``tags`` are ``count`` tags, each a point of the group G1 (subgroup
    checked). This is all that can be checked of tags without their fragment's bytes (a miner
    keeping a mirror copy of another fragment's tags): whether they are the tags of that
    fragment only ``check_tags`` tells.

    Raises:
        BadProof: the wrong length, or a tag that is not a point of G1.
    """
    if len(tags) != count * TAG_BYTES:
        raise BadProof(f"{len(tags)} bytes of tags for {count} blocks of {TAG_BYTES} bytes")
    for index in range(count):
        try:
            G1Point.from_compressed_bytes(tags[index * TAG_BYTES : (index + 1) * TAG_BYTES])
        except Exception as exc:
            raise BadProof(f"the tag of block {index} is not a point of the group G1") from exc


def check_tags(
    public: TagPublicKey, fragment_hash: bytes, data: bytes, tags: bytes, seed: bytes
) -> None:
    """Check every tag of one fragment at once, as a proof over all its blocks.

    Every tag is first decoded with the subgroup check; the coefficients then come from
    ``seed``, which the caller must draw at random after it has the tags (small-exponent batch
    verification: a single wrong tag passes with probability about 2^-128, which holds only for
    tags in the group). Costs one proof and one verification over ``block_count`` blocks (about
    0.3 s for an 8 MiB fragment, the subgroup checks 0.03 s of it), far less than tagging the
    fragment again.

    Raises:
        BadProof: the tags have the wrong length or do not all verify.
    """
    s = public.sectors_per_block
    count = block_count(len(data), s)
    # the subgroup check matters: a tag plus a point of small order (3, say) passes the
    # batch below whenever its coefficient is a multiple of that order, and then spoils
    # every later proof whose coefficient is not
    check_tag_points(tags, count)
    indices = list(range(count))
    item = ChallengeItem(
        fragment_hash=fragment_hash,
        indices=indices,
        coefficients=b"".join(_coefficient(seed, fragment_hash, i) for i in indices),
    )

    def read(_: bytes, index: int) -> tuple[bytes, bytes]:
        offset, length = block_span(index, len(data), s)
        return data[offset : offset + length], tags[index * TAG_BYTES : (index + 1) * TAG_BYTES]

    try:
        proof = prove([item], read, s)
    except InvalidParameters as exc:
        raise BadProof(f"tags are malformed: {exc}") from exc
    verify_proof(public, [item], proof)
