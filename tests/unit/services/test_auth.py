"""Signed requests: accepted once within the window, only by the server they are addressed to;
refused unsigned, tampered, stale, far ahead, replayed. The replay memory is per signer, ordered
by time and bounded, and no signer's traffic makes another signer's requests fail."""

from __future__ import annotations

import pytest

from deoss.client.signing import (
    HEADER_ADDRESS,
    HEADER_BODY,
    HEADER_HOST,
    HEADER_RANGE,
    HEADER_SIGNATURE,
    HEADER_TIME,
    sign_request,
)
from deoss.core.keys import KeyPair
from deoss.services.common.auth import (
    AuthError,
    ReplayMemory,
    RequestVerifier,
    host_names,
    url_host_names,
)

KEY = KeyPair.from_seed(b"k" * 32)
OTHER = KeyPair.from_seed(b"o" * 32)
NOW = 1_800_000_000_000
BODY = "ab" * 32
HOST = "127.0.0.1:9100"
HOSTS = host_names("127.0.0.1", 9100)


def signed(
    method: str = "PUT",
    target: str = "/b/o?x=1",
    time_ms: int = NOW,
    *,
    key: KeyPair = KEY,
    host: str = HOST,
    byte_range: str | None = None,
) -> dict[str, str]:
    headers = sign_request(key, method, target, time_ms, BODY, host=host, byte_range=byte_range)
    headers[HEADER_HOST] = host
    if byte_range is not None:
        headers[HEADER_RANGE] = byte_range
    return headers


def check(
    headers: dict[str, str],
    verifier: RequestVerifier | None = None,
    now_ms: int = NOW,
    target: str = "/b/o?x=1",
    method: str = "PUT",
) -> tuple[bytes, str]:
    return (verifier or RequestVerifier()).verify(method, target, headers, now_ms, hosts=HOSTS)


def test_valid_request_returns_signer_and_body_hash() -> None:
    assert (KEY.public_key, BODY) == check(signed())


def test_replay_is_refused() -> None:
    verifier = RequestVerifier()
    headers = signed()
    check(headers, verifier)
    with pytest.raises(AuthError, match="replayed"):
        check(headers, verifier, NOW + 10)


def test_stale_request_is_refused() -> None:
    check(signed(time_ms=NOW - 60_000))
    with pytest.raises(AuthError, match="ms from the server's clock .* too long ago"):
        check(signed(time_ms=NOW - 60_001))


def test_request_dated_far_ahead_is_refused() -> None:
    """Only a small clock skew ahead is allowed: a signature is remembered until its time
    leaves the window, so a far-future date would have to be remembered for that long."""
    check(signed(time_ms=NOW + 10_000))
    for ahead in (10_001, 59_000, 3_600_000):
        with pytest.raises(AuthError, match="ahead of the server's clock"):
            check(signed(time_ms=NOW + ahead))


@pytest.mark.parametrize(
    ("method", "target"), [("GET", "/b/o?x=1"), ("PUT", "/b/o?x=2"), ("PUT", "/b/other?x=1")]
)
def test_request_changed_in_transit_is_refused(method: str, target: str) -> None:
    with pytest.raises(AuthError, match="does not verify"):
        check(signed(), target=target, method=method)


def test_changed_body_hash_or_signer_is_refused() -> None:
    headers = signed()
    with pytest.raises(AuthError, match="does not verify"):
        check({**headers, HEADER_BODY: "cd" * 32})
    with pytest.raises(AuthError, match="does not verify"):
        check({**headers, HEADER_ADDRESS: OTHER.address})


def test_range_is_signed_present_or_absent() -> None:
    """A Range added, removed, changed or emptied after signing changes what the request
    asks for, so the signature no longer verifies."""
    ranged = signed("GET", byte_range="bytes=0-9")
    whole = signed("GET")
    for headers in (
        {**ranged, HEADER_RANGE: "bytes=0-99"},
        {**ranged, HEADER_RANGE: ""},
        {k: v for k, v in ranged.items() if k != HEADER_RANGE},
        {**whole, HEADER_RANGE: "bytes=0-9"},
        {**whole, HEADER_RANGE: ""},
    ):
        with pytest.raises(AuthError, match="does not verify"):
            check(headers, method="GET")
    check(ranged, method="GET")
    check(whole, method="GET")


def test_request_addressed_to_another_server_is_refused() -> None:
    """The Host a request was signed for must be this server's: a request for the miner on
    port 9100 is refused by the one on port 9101 or on another machine, and a Host changed
    to this server's breaks the signature."""
    for elsewhere in ("127.0.0.1:9101", "10.0.0.7:9100", "miner.example:9100"):
        with pytest.raises(AuthError, match="not to this server"):
            check(signed(host=elsewhere))
    moved = {**signed(host="10.0.0.7:9100"), HEADER_HOST: HOST}
    with pytest.raises(AuthError, match="does not verify"):
        check(moved)


def test_unsigned_host_is_refused() -> None:
    headers = {k: v for k, v in signed().items() if k != HEADER_HOST}
    with pytest.raises(AuthError, match="missing header.*host"):
        check(headers)


def test_public_url_names_are_this_servers_too() -> None:
    """Behind a proxy or NAT the request arrives on a local address but is addressed to the
    public name the server is registered under."""
    verifier = RequestVerifier(public_url="https://Gateway.Example.com")
    check(signed(host="gateway.example.com"), verifier)
    check(signed(host="GATEWAY.example.com:443"), verifier)
    with pytest.raises(AuthError, match="not to this server"):
        check(signed(host="gateway.example.com:8443"), verifier)


def test_host_names() -> None:
    """Default ports may be left out; loopback addresses answer to every loopback name at
    their port; IPv6 hosts are bracketed."""
    assert {"miner", "miner:80"} == host_names("miner", 80)
    assert {"miner"} == host_names("miner", None)
    assert {"miner:443"} == host_names("miner", 443, "http")
    assert {"10.0.0.1:9100"} == host_names("10.0.0.1", 9100)
    loopback = {"127.0.0.1:9100", "localhost:9100", "[::1]:9100"}
    assert loopback == host_names("127.0.0.1", 9100) == host_names("::1", 9100)
    assert {"[2001:db8::1]:9100"} == host_names("2001:db8::1", 9100)
    assert {"gw.example", "gw.example:443"} == url_host_names("https://gw.example/")
    with pytest.raises(ValueError, match="names no host"):
        url_host_names("not a url")


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
        check(headers)


def test_header_names_are_case_insensitive() -> None:
    check({k.upper(): v for k, v in signed().items()})


def test_a_forged_signature_is_not_remembered() -> None:
    """A signature that does not verify costs the server nothing durable."""
    verifier = RequestVerifier()
    forged = {**signed(), HEADER_SIGNATURE: "00" * 64}
    for _ in range(10):
        with pytest.raises(AuthError, match="does not verify"):
            check(forged, verifier)
    assert 0 == len(verifier.memory)


def test_old_signatures_are_forgotten_after_the_window() -> None:
    verifier = RequestVerifier(window_ms=1000)
    for i in range(100):
        check(signed("GET", f"/{i}", NOW + i * 100), verifier, NOW + i * 100, f"/{i}", "GET")
    assert len(verifier.memory) <= 11


def test_entries_are_forgotten_in_time_order_not_arrival_order() -> None:
    """A signature dated ahead does not hold back those dated before it."""
    memory = ReplayMemory(window_ms=1000)
    memory.remember(KEY.public_key, b"\x01" * 64, NOW + 900, NOW)
    for i in range(50):
        memory.remember(KEY.public_key, bytes([2, i]) * 32, NOW, NOW)
    memory.remember(KEY.public_key, b"\x03" * 64, NOW + 1001, NOW + 1001)
    assert 2 == len(memory)


def test_one_signer_over_its_budget_is_refused_alone() -> None:
    memory = ReplayMemory(max_per_signer=5)
    for i in range(5):
        memory.remember(KEY.public_key, bytes([i]) * 64, NOW, NOW)
    with pytest.raises(AuthError, match="too many signed requests from this signer"):
        memory.remember(KEY.public_key, b"\xff" * 64, NOW, NOW)
    memory.remember(OTHER.public_key, b"\xff" * 64, NOW, NOW)
    assert (5, 1) == (memory.held_by(KEY.public_key), memory.held_by(OTHER.public_key))


def test_a_flood_of_keys_neither_locks_others_out_nor_opens_a_replay() -> None:
    """Fresh keys cost nothing, so the memory of all signers is bounded: past the bound the
    oldest signature is forgotten and every request dated at or before it is refused from
    then on, so the forgotten one cannot be replayed, while a request signed after the flood
    (any signer's) is still accepted."""
    verifier = RequestVerifier(max_remembered=100)
    honest = signed("GET", "/first", NOW - 5_000)
    check(honest, verifier, NOW, "/first", "GET")
    for i in range(300):
        flooder = KeyPair.from_seed(i.to_bytes(32, "big"))
        check(signed(time_ms=NOW + i, key=flooder), verifier, NOW + i)
    assert 100 == len(verifier.memory)
    with pytest.raises(AuthError, match="oldest this server still remembers"):
        check(honest, verifier, NOW + 300, "/first", "GET")
    later = NOW + 301
    assert KEY.public_key == check(signed(time_ms=later), verifier, later)[0]
    assert OTHER.public_key == check(signed(time_ms=later, key=OTHER), verifier, later)[0]


def test_a_clock_going_back_does_not_bring_back_a_forgotten_signature() -> None:
    verifier = RequestVerifier(window_ms=1000)
    headers = signed(time_ms=NOW)
    check(headers, verifier, NOW)
    check(signed(time_ms=NOW + 2000, target="/x"), verifier, NOW + 2000, "/x")  # NOW's forgotten
    with pytest.raises(AuthError, match="too long ago"):
        check(headers, verifier, NOW + 500)


def test_identical_requests_signed_in_one_millisecond_are_both_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SigningAuth never reuses a millisecond, so two identical requests (ranged reads of one
    fragment, a hedged retry) get distinct signatures instead of a replay refusal; it signs
    the Host and Range the request is sent with."""
    import httpx

    from deoss.client import signing

    monkeypatch.setattr(signing, "now_ms", lambda: NOW)
    auth = signing.SigningAuth(KEY)
    verifier = RequestVerifier()
    hosts = host_names("miner", None)
    for _ in range(3):
        request = httpx.Request("GET", "http://miner/fragments/ab", headers={"range": "bytes=0-1"})
        headers = dict(next(auth.auth_flow(request)).headers)
        signer, _ = verifier.verify("GET", "/fragments/ab", headers, NOW, hosts=hosts)
        assert KEY.public_key == signer
