"""Systematic Reed-Solomon k+m erasure code over GF(2^8).

The code is defined by its generator matrix, not by a library, because fragment hashes are
declared on chain and every node must compute the same bytes:

* field GF(2^8) with the reduction polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d);
* a segment of k·F bytes is cut into k data fragments of F bytes (fragment j is bytes
  j·F .. (j+1)·F - 1); they are stored as they are (systematic);
* parity fragment i (k <= i < k+m) is, byte by byte, sum over j of c(i, j) · data_j, with the
  Cauchy coefficient c(i, j) = 1 / (i XOR j).

This is ISA-L's ``gf_gen_cauchy1_matrix``; any k of the k+m fragments determine the segment.

Backends:

* ``IsalBackend`` (the default): pyeclib's ``isa_l_rs_cauchy``. pyeclib frames each fragment
  with an 80-byte liberasurecode header; it is stripped on encode and rebuilt on decode, so
  the stored format carries no library header.
* ``NumpyBackend``: the same matrix computed with numpy table lookups, used automatically when
  pyeclib cannot load, and in tests as an independent oracle. Several times slower
  (docs/benchmarks.md).

zfec is deliberately not a fallback: its generator matrix differs, so its parity fragments would
not match the hashes declared by nodes that use ISA-L (see docs/formats.md).
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Protocol

import numpy as np

from deoss.core.errors import InvalidParameters, NotEnoughFragments

__all__ = [
    "ErasureCode",
    "IsalBackend",
    "NumpyBackend",
    "get_code",
    "validate_shards",
]

log = logging.getLogger(__name__)

MAX_TOTAL_SHARDS = 32  # liberasurecode's limit (the Cauchy matrix itself allows 255)


def validate_shards(k: int, m: int) -> None:
    """Raises InvalidParameters unless 1 <= k, 1 <= m and k + m <= 32."""
    if not isinstance(k, int) or not isinstance(m, int) or isinstance(k, bool):
        raise InvalidParameters("data and parity shard counts must be integers")
    if k < 1:
        raise InvalidParameters(f"data shards k must be at least 1, got {k}")
    if m < 1:
        raise InvalidParameters(f"parity shards m must be at least 1, got {m}")
    if k + m > MAX_TOTAL_SHARDS:
        raise InvalidParameters(f"k + m must be at most {MAX_TOTAL_SHARDS}, got {k + m}")


class ErasureCode(Protocol):
    """A k+m code. Fragments are bytes-like of equal size; indices 0..k-1 are data."""

    k: int
    m: int
    name: str

    def encode(self, segment: bytes | memoryview) -> list[memoryview]:
        """All k+m fragments of a segment whose length is a multiple of k."""
        ...

    def decode(self, fragments: Mapping[int, bytes | memoryview]) -> bytes:
        """The segment from any k fragments."""
        ...

    def reconstruct(self, fragments: Mapping[int, bytes | memoryview], index: int) -> bytes:
        """Fragment ``index`` from any k other fragments."""
        ...


def _check_segment(segment: bytes | memoryview, k: int) -> None:
    size = len(segment)
    if size == 0 or size % k:
        raise InvalidParameters(f"segment size {size} must be a positive multiple of k={k}")


def _check_fragments(
    fragments: Mapping[int, bytes | memoryview], k: int, m: int
) -> tuple[list[int], int]:
    """The k lowest usable indices and the common fragment size."""
    for index in fragments:
        if not isinstance(index, int) or not 0 <= index < k + m:
            raise InvalidParameters(f"fragment index {index!r} outside 0..{k + m - 1}")
    if len(fragments) < k:
        raise NotEnoughFragments(f"{len(fragments)} fragments given, {k} needed")
    sizes = {len(f) for f in fragments.values()}
    if len(sizes) != 1:
        raise InvalidParameters(f"fragments differ in size: {sorted(sizes)}")
    size = sizes.pop()
    if size == 0:
        raise InvalidParameters("fragments are empty")
    return sorted(fragments)[:k], size


# --- GF(2^8) arithmetic, shared by the numpy backend and by tests -------------------------

_POLY = 0x11D


def _tables() -> tuple[list[int], list[int]]:
    exp = [0] * 510
    logt = [0] * 256
    x = 1
    for i in range(255):
        exp[i] = x
        logt[x] = i
        x <<= 1
        if x & 0x100:
            x ^= _POLY
    for i in range(255, 510):
        exp[i] = exp[i - 255]
    return exp, logt


_EXP, _LOG = _tables()


def gf_mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def gf_inv(a: int) -> int:
    if a == 0:
        raise ZeroDivisionError("0 has no inverse in GF(2^8)")
    return _EXP[255 - _LOG[a]]


def generator_row(i: int, k: int) -> list[int]:
    """Row i of the (k+m) x k generator matrix."""
    if i < k:
        return [1 if j == i else 0 for j in range(k)]
    return [gf_inv(i ^ j) for j in range(k)]


def _invert(matrix: list[list[int]]) -> list[list[int]]:
    """Gauss-Jordan inverse of a square matrix over GF(2^8)."""
    n = len(matrix)
    work = [row[:] + [1 if c == r else 0 for c in range(n)] for r, row in enumerate(matrix)]
    for col in range(n):
        pivot = next((r for r in range(col, n) if work[r][col]), None)
        if pivot is None:
            raise InvalidParameters("fragment rows are not independent")
        work[col], work[pivot] = work[pivot], work[col]
        scale = gf_inv(work[col][col])
        work[col] = [gf_mul(scale, v) for v in work[col]]
        for r in range(n):
            factor = work[r][col]
            if r != col and factor:
                work[r] = [v ^ gf_mul(factor, p) for v, p in zip(work[r], work[col], strict=True)]
    return [row[n:] for row in work]


@lru_cache(maxsize=1)
def _mul_table() -> np.ndarray:
    table = np.zeros((256, 256), dtype=np.uint8)
    for a in range(1, 256):
        for b in range(1, 256):
            table[a, b] = _EXP[_LOG[a] + _LOG[b]]
    return table


class NumpyBackend:
    """The code computed with numpy: independent of pyeclib, slower."""

    name = "numpy"

    def __init__(self, k: int, m: int) -> None:
        validate_shards(k, m)
        self.k, self.m = k, m

    def _combine(self, coefficients: Sequence[int], inputs: Sequence[np.ndarray]) -> bytes:
        table = _mul_table()
        out = np.zeros(len(inputs[0]), dtype=np.uint8)
        for c, data in zip(coefficients, inputs, strict=True):
            if c == 1:
                out ^= data
            elif c:
                out ^= table[c][data]
        return out.tobytes()

    def encode(self, segment: bytes | memoryview) -> list[memoryview]:
        _check_segment(segment, self.k)
        size = len(segment) // self.k
        view = memoryview(segment).cast("B")
        data = [view[j * size : (j + 1) * size] for j in range(self.k)]
        arrays = [np.frombuffer(d, dtype=np.uint8) for d in data]
        parity = [
            memoryview(self._combine(generator_row(i, self.k), arrays))
            for i in range(self.k, self.k + self.m)
        ]
        return data + parity

    def _data_fragments(self, fragments: Mapping[int, bytes | memoryview]) -> list[bytes]:
        chosen, _ = _check_fragments(fragments, self.k, self.m)
        if chosen == list(range(self.k)):
            return [bytes(fragments[j]) for j in chosen]
        inverse = _invert([generator_row(i, self.k) for i in chosen])
        arrays = [np.frombuffer(fragments[i], dtype=np.uint8) for i in chosen]
        return [self._combine(row, arrays) for row in inverse]

    def decode(self, fragments: Mapping[int, bytes | memoryview]) -> bytes:
        return b"".join(self._data_fragments(fragments))

    def reconstruct(self, fragments: Mapping[int, bytes | memoryview], index: int) -> bytes:
        if not 0 <= index < self.k + self.m:
            raise InvalidParameters(f"fragment index {index} outside 0..{self.k + self.m - 1}")
        others = {i: f for i, f in fragments.items() if i != index}
        data = self._data_fragments(others)
        if index < self.k:
            return data[index]
        arrays = [np.frombuffer(d, dtype=np.uint8) for d in data]
        return self._combine(generator_row(index, self.k), arrays)


# --- pyeclib / ISA-L -------------------------------------------------------------------------

_HEADER_SIZE = 80
# liberasurecode fragment_header_t: the 59-byte packed metadata, then magic, libec version,
# CRC-32 of the metadata and 9 bytes of padding (all little-endian).
_META = struct.Struct("<IIIQB32sBBI")
_TRAILER = struct.Struct("<III9x")


class IsalBackend:
    """pyeclib's ``isa_l_rs_cauchy`` with the liberasurecode headers stripped and rebuilt."""

    name = "isa_l_rs_cauchy"

    def __init__(self, k: int, m: int) -> None:
        validate_shards(k, m)
        from pyeclib.ec_iface import ECDriver  # imported here: a failure selects the fallback

        self.k, self.m = k, m
        self._driver = ECDriver(k=k, m=m, ec_type="isa_l_rs_cauchy")
        # Learn the constant header fields from the library itself, then check that headers
        # built here are byte-identical to the ones it makes; otherwise refuse to run.
        probe = self._driver.encode(bytes(range(k)) * 3)
        fields = _META.unpack(probe[0][: _META.size])
        magic, version, _ = _TRAILER.unpack(probe[0][_META.size : _HEADER_SIZE])
        self._checksum = fields[4:8]  # checksum type, checksum, mismatch flag, backend id
        self._backend_version = fields[8]
        self._magic, self._libec_version = magic, version
        for index, fragment in enumerate(probe):
            if self._header(index, 3, 3 * k) != bytes(fragment[:_HEADER_SIZE]):
                raise RuntimeError("liberasurecode header layout is not the expected one")

    def _header(self, index: int, size: int, segment_size: int) -> bytes:
        meta = _META.pack(index, size, 0, segment_size, *self._checksum, self._backend_version)
        return meta + _TRAILER.pack(self._magic, self._libec_version, zlib.crc32(meta))

    def encode(self, segment: bytes | memoryview) -> list[memoryview]:
        _check_segment(segment, self.k)
        framed = self._driver.encode(bytes(segment))
        return [memoryview(f)[_HEADER_SIZE:] for f in framed]

    def _framed(self, fragments: Mapping[int, bytes | memoryview]) -> tuple[list[bytes], int]:
        chosen, size = _check_fragments(fragments, self.k, self.m)
        segment_size = size * self.k
        framed = [self._header(i, size, segment_size) + bytes(fragments[i]) for i in chosen]
        return framed, segment_size

    def decode(self, fragments: Mapping[int, bytes | memoryview]) -> bytes:
        chosen, size = _check_fragments(fragments, self.k, self.m)
        if chosen == list(range(self.k)):  # systematic: no arithmetic needed
            return b"".join(bytes(fragments[j]) for j in chosen)
        framed, segment_size = self._framed(fragments)
        segment = bytes(self._driver.decode(framed))
        if len(segment) != segment_size:
            raise NotEnoughFragments(f"decoder returned {len(segment)} bytes, not {segment_size}")
        return segment

    def reconstruct(self, fragments: Mapping[int, bytes | memoryview], index: int) -> bytes:
        if not 0 <= index < self.k + self.m:
            raise InvalidParameters(f"fragment index {index} outside 0..{self.k + self.m - 1}")
        others = {i: f for i, f in fragments.items() if i != index}
        framed, _ = self._framed(others)
        rebuilt = self._driver.reconstruct(framed, [index])
        return bytes(memoryview(rebuilt[0])[_HEADER_SIZE:])


@lru_cache(maxsize=32)
def get_code(k: int, m: int, backend: str | None = None) -> ErasureCode:
    """The code for (k, m): ISA-L through pyeclib when it loads, numpy otherwise.

    ``backend`` forces ``"isa_l_rs_cauchy"`` or ``"numpy"``.
    """
    validate_shards(k, m)
    if backend == NumpyBackend.name:
        return NumpyBackend(k, m)
    if backend not in (None, IsalBackend.name):
        raise InvalidParameters(f"unknown erasure backend {backend!r}")
    try:
        return IsalBackend(k, m)
    except Exception as exc:  # ImportError, a missing shared library, a header mismatch
        if backend is not None:
            raise
        log.warning("pyeclib isa_l_rs_cauchy unavailable (%s); using the numpy backend", exc)
        return NumpyBackend(k, m)
