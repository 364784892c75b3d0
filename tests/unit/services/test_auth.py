"""Signed requests: accepted once within the window; refused unsigned, tampered, stale, replayed."""

from __future__ import annotations

import pytest

from deoss.core.keys import KeyPair
from deoss.services.common.auth import (
    HEADER_ADDRESS,
    HEADER_BODY,
    HEADER_SIGNATURE,
    HEADER_TIME,
    AuthError,
    RequestVerifier,
    sign_request,
)

KEY = KeyPair.from_seed(b"k" * 32)
NOW = 1_800_000_000_000
BODY = "ab" * 32


def signed(method: str = "PUT", target: str = "/b/o?x=1", time_ms: int = NOW) -> dict[str, str]:
    return sign_request(KEY, method, target, time_ms, BODY)


def test_valid_request_returns_signer_and_body_hash() -> None:
    assert (KEY.public_key, BODY) == RequestVerifier().verify("PUT", "/b/o?x=1", signed(), NOW)


def test_replay_is_refused() -> None:
    verifier = RequestVerifier()
    headers = signed()
    verifier.verify("PUT", "/b/o?x=1", headers, NOW)
    with pytest.raises(AuthError, match="replayed"):
        verifier.verify("PUT", "/b/o?x=1", headers, NOW + 10)


@pytest.mark.parametrize("skew", [-60_001, 60_001])
def test_stale_or_future_request_is_refused(skew: int) -> None:
    with pytest.raises(AuthError, match="ms from"):
        RequestVerifier().verify("PUT", "/b/o?x=1", signed(time_ms=NOW + skew), NOW)


@pytest.mark.parametrize(
    ("method", "target"), [("GET", "/b/o?x=1"), ("PUT", "/b/o?x=2"), ("PUT", "/b/other?x=1")]
)
def test_request_changed_in_transit_is_refused(method: str, target: str) -> None:
    with pytest.raises(AuthError, match="does not verify"):
        RequestVerifier().verify(method, target, signed(), NOW)


def test_changed_body_hash_or_signer_is_refused() -> None:
    headers = signed()
    with pytest.raises(AuthError, match="does not verify"):
        RequestVerifier().verify("PUT", "/b/o?x=1", {**headers, HEADER_BODY: "cd" * 32}, NOW)
    other = KeyPair.from_seed(b"o" * 32).address
    with pytest.raises(AuthError, match="does not verify"):
        RequestVerifier().verify("PUT", "/b/o?x=1", {**headers, HEADER_ADDRESS: other}, NOW)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({HEADER_SIGNATURE: None}, "missing header"),
        ({HEADER_TIME: "soon"}, "malformed"),
        ({HEADER_ADDRESS: "deoss1bad"}, "malformed"),
        ({HEADER_SIGNATURE: "zz"}, "malformed"),
        ({HEADER_BODY: "AB" * 32}, "lowercase hex"),
    ],
)
def test_malformed_headers_are_refused(change: dict[str, str | None], message: str) -> None:
    headers = {k: v for k, v in {**signed(), **change}.items() if v is not None}
    with pytest.raises(AuthError, match=message):
        RequestVerifier().verify("PUT", "/b/o?x=1", headers, NOW)


def test_header_names_are_case_insensitive() -> None:
    headers = {k.upper(): v for k, v in signed().items()}
    RequestVerifier().verify("PUT", "/b/o?x=1", headers, NOW)


def test_old_signatures_are_forgotten_after_the_window() -> None:
    verifier = RequestVerifier(window_ms=1000)
    for i in range(100):
        verifier.verify(
            "GET", f"/{i}", sign_request(KEY, "GET", f"/{i}", NOW + i * 100), NOW + i * 100
        )
    assert len(verifier._seen) <= 11


def test_identical_requests_signed_in_one_millisecond_are_both_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SigningAuth never reuses a millisecond, so two identical requests (ranged reads of one
    fragment, a hedged retry) get distinct signatures instead of a replay refusal."""
    import httpx

    from deoss.services.common import signing

    monkeypatch.setattr(signing, "now_ms", lambda: NOW)
    auth = signing.SigningAuth(KEY)
    verifier = RequestVerifier()
    for _ in range(3):
        request = httpx.Request("GET", "http://miner/fragments/ab", headers={"range": "bytes=0-1"})
        signed_request = next(auth.auth_flow(request))
        headers = dict(signed_request.headers)
        assert KEY.public_key == verifier.verify("GET", "/fragments/ab", headers, NOW)[0]
