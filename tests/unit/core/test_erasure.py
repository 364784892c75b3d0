"""The erasure code: systematic, any k of k+m rebuild, identical bytes on every backend."""

from __future__ import annotations

import itertools
import random

import pytest

from deoss.core.erasure import (
    IsalBackend,
    NumpyBackend,
    generator_row,
    get_code,
    gf_inv,
    gf_mul,
    validate_shards,
)
from deoss.core.errors import InvalidParameters, NotEnoughFragments

BACKENDS = ["isa_l_rs_cauchy", "numpy"]


def sample(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def slow_parity(segment: bytes, k: int, m: int) -> list[bytes]:
    """Pure-Python oracle of the documented matrix: parity i = sum_j 1/(i^j) * data_j."""
    size = len(segment) // k
    data = [segment[j * size : (j + 1) * size] for j in range(k)]
    out = []
    for i in range(k, k + m):
        row = [gf_inv(i ^ j) for j in range(k)]
        out.append(
            bytes(
                _xor_all(gf_mul(c, d[b]) for c, d in zip(row, data, strict=True))
                for b in range(size)
            )
        )
    return out


def _xor_all(values: object) -> int:
    acc = 0
    for v in values:  # type: ignore[attr-defined]
        acc ^= v
    return acc


def test_gf_arithmetic_basics() -> None:
    assert all(1 == gf_mul(a, gf_inv(a)) for a in range(1, 256))
    assert 0 == gf_mul(0, 77)
    assert [1, 0, 0, 0] == generator_row(0, 4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("k", "m"), [(4, 8), (1, 1), (2, 3), (10, 20)])
def test_matches_documented_matrix_and_is_systematic(backend: str, k: int, m: int) -> None:
    segment = sample(k * 37)
    fragments = get_code(k, m, backend).encode(segment)
    assert k + m == len(fragments)
    assert segment == b"".join(bytes(f) for f in fragments[:k])
    assert slow_parity(segment, k, m) == [bytes(f) for f in fragments[k:]]


def test_backends_agree_on_a_large_segment() -> None:
    segment = sample(4 * 1024 * 1024 + 4 * 3)
    isal = get_code(4, 8, "isa_l_rs_cauchy").encode(segment)
    numpy = get_code(4, 8, "numpy").encode(segment)
    assert [bytes(f) for f in isal] == [bytes(f) for f in numpy]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_k_subset_of_twelve_decodes_and_reconstructs(backend: str) -> None:
    """All 495 subsets of 4 of 12 fragments rebuild the segment and every missing fragment."""
    code = get_code(4, 8, backend)
    for seed, size in ((1, 4), (2, 4 * 1000), (3, 4 * 4099)):
        segment = sample(size, seed)
        fragments = [bytes(f) for f in code.encode(segment)]
        for subset in itertools.combinations(range(12), 4):
            given = {i: fragments[i] for i in subset}
            assert segment == code.decode(given)
        for subset in itertools.combinations(range(12), 4):
            lost = next(i for i in range(12) if i not in subset)
            assert fragments[lost] == code.reconstruct({i: fragments[i] for i in subset}, lost)


@pytest.mark.parametrize("backend", BACKENDS)
def test_decode_uses_only_k_fragments_even_when_more_are_given(backend: str) -> None:
    code = get_code(4, 8, backend)
    segment = sample(400)
    fragments = {i: bytes(f) for i, f in enumerate(code.encode(segment))}
    assert segment == code.decode(fragments)


@pytest.mark.parametrize("backend", BACKENDS)
def test_too_few_fragments(backend: str) -> None:
    code = get_code(4, 8, backend)
    fragments = code.encode(sample(40))
    with pytest.raises(NotEnoughFragments, match="3 fragments given, 4 needed"):
        code.decode({0: fragments[0], 5: fragments[5], 9: fragments[9]})
    with pytest.raises(NotEnoughFragments):
        code.reconstruct({i: fragments[i] for i in (0, 1, 2, 3)}, 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_fragment_sets_are_refused(backend: str) -> None:
    code = get_code(4, 8, backend)
    fragments = [bytes(f) for f in code.encode(sample(40))]
    with pytest.raises(InvalidParameters, match="differ in size"):
        code.decode({0: fragments[0], 1: fragments[1], 2: fragments[2], 3: fragments[3][:-1]})
    with pytest.raises(InvalidParameters, match="outside 0..11"):
        code.decode({i: fragments[0] for i in (0, 1, 2, 12)})
    with pytest.raises(InvalidParameters, match="outside 0..11"):
        code.reconstruct({i: fragments[i] for i in range(4)}, 12)
    with pytest.raises(InvalidParameters, match="multiple of k=4"):
        code.encode(b"12345")
    with pytest.raises(InvalidParameters, match="positive multiple"):
        code.encode(b"")


@pytest.mark.parametrize(
    ("k", "m", "message"),
    [(0, 8, "at least 1"), (4, 0, "at least 1"), (20, 13, "at most 32"), ("4", 8, "integers")],
)
def test_bad_shard_counts(k: object, m: object, message: str) -> None:
    with pytest.raises(InvalidParameters, match=message):
        validate_shards(k, m)  # type: ignore[arg-type]


def test_default_backend_is_isal_and_fallback_is_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """When pyeclib cannot load, get_code falls back to the byte-identical numpy backend."""
    assert isinstance(get_code(4, 8), IsalBackend)

    def broken(self: IsalBackend, k: int, m: int) -> None:
        raise ImportError("liberasurecode.so: cannot open shared object file")

    monkeypatch.setattr(IsalBackend, "__init__", broken)
    get_code.cache_clear()
    try:
        assert isinstance(get_code(4, 8), NumpyBackend)
        with pytest.raises(ImportError):
            get_code(4, 8, "isa_l_rs_cauchy")
        with pytest.raises(InvalidParameters, match="unknown erasure backend"):
            get_code(4, 8, "zfec")
    finally:
        get_code.cache_clear()
