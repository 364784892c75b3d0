"""GatewayClient's retry policy against a scripted gateway (httpx.MockTransport): what is tried
again and what is not, backoff, Retry-After, the deadline, and uploads that follow the deal a
lost try declared instead of uploading again."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest

from deoss.client.gateway import (
    Conflict,
    GatewayClient,
    GatewayUnavailable,
    NotFound,
    UpstreamFailed,
)
from deoss.client.retry import RetryPolicy, parse_retry_after
from deoss.client.signing import HEADER_SIGNATURE, HEADER_TIME
from tests.unit.chain.harness import key

pytestmark = pytest.mark.anyio

Step = Callable[[httpx.Request], httpx.Response]
FID = "ab" * 32


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def cut_off(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError("server disconnected without a response", request=request)


def answer(status: int, body: object = None, **headers: str) -> Step:
    return lambda request: httpx.Response(status, json=body, headers=headers)


def error(status: int, code: str, message: str, **headers: str) -> Step:
    return answer(status, {"error": {"code": code, "message": message}}, **headers)


def declared(deal_id: int) -> Step:
    return answer(202, upload(deal_id, "ASSIGNED"))


def deal(deal_id: int, state: str, reason: str = "") -> Step:
    return answer(
        200,
        {
            "id": deal_id,
            "state": state,
            "owner": "o",
            "declarer": "g",
            "bucket": "b",
            "name": "n",
            "size": 5,
            "fid": FID,
            "segments": 1,
            "scheduler": None,
            "attempts": 1,
            "deadline": 9,
            "created_at": 1,
            "reason": reason,
        },
    )


def upload(deal_id: int | None, state: str) -> dict[str, object]:
    return {
        "bucket": "b",
        "name": "n",
        "fid": FID,
        "size": 5,
        "deal_id": deal_id,
        "state": state,
        "deduplicated": deal_id is None,
    }


@dataclass
class Gateway:
    """Answers each request with the next step scripted for its method and path."""

    script: dict[str, list[Step]]
    seen: list[httpx.Request] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        self.bodies.append(await request.aread())
        steps = self.script[f"{request.method} {request.url.path}"]
        return steps.pop(0)(request)

    def count(self, method: str) -> int:
        return sum(1 for r in self.seen if r.method == method)


@dataclass
class Clock:
    """A clock that only moves when the client sleeps; every pause is recorded."""

    now: float = 0.0
    pauses: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


@dataclass
class Setup:
    gateway: Gateway
    clock: Clock
    waits: list[str]

    def client(self, policy: RetryPolicy | None = None) -> GatewayClient:
        return GatewayClient(
            "http://gw",
            key("alice"),
            transport=httpx.MockTransport(self.gateway.handle),
            retry=policy or RetryPolicy(deadline_s=60),
            on_wait=self.waits.append,
            sleep=self.clock.sleep,
            clock=self.clock,
            rng=random.Random(7),
        )


def setup(**script: list[Step]) -> Setup:
    # GET__deals__4 -> "GET /deals/4"
    steps = {f"{k.split('__')[0]} /{'/'.join(k.split('__')[1:])}": v for k, v in script.items()}
    return Setup(Gateway(steps), Clock(), [])


async def test_refused_and_503_are_retried_with_backoff_and_fresh_signatures() -> None:
    """Connection refused, then 503, then the answer: three tries, each signed afresh, after
    pauses of half to all of the doubling backoff, each one announced."""
    s = setup(
        GET__buckets=[refused, error(503, "chain_unavailable", "chain down"), answer(200, [])]
    )
    async with s.client(RetryPolicy(deadline_s=60, first_backoff_s=1, max_backoff_s=8)) as c:
        assert [] == await c.list_buckets()
    assert 3 == len(s.gateway.seen)
    signatures = {r.headers[HEADER_SIGNATURE] for r in s.gateway.seen}
    assert 3 == len(signatures) and 3 == len({r.headers[HEADER_TIME] for r in s.gateway.seen})
    assert 2 == len(s.clock.pauses)
    assert 0.5 <= s.clock.pauses[0] <= 1 and 1 <= s.clock.pauses[1] <= 2
    assert 2 == len(s.waits) and "trying again in" in s.waits[0] and "chain down" in s.waits[1]


async def test_429_waits_as_long_as_retry_after_says() -> None:
    s = setup(
        GET__buckets=[error(429, "busy", "slow down", **{"retry-after": "7"}), answer(200, [])]
    )
    async with s.client() as c:
        assert [] == await c.list_buckets()
    assert 1 == len(s.clock.pauses) and 7 <= s.clock.pauses[0]


async def test_a_retry_after_past_the_deadline_fails_at_once() -> None:
    s = setup(GET__buckets=[error(503, "busy", "later", **{"retry-after": "120"})])
    async with s.client(RetryPolicy(deadline_s=60)) as c:
        with pytest.raises(GatewayUnavailable, match="later"):
            await c.list_buckets()
    assert [] == s.clock.pauses


async def test_refusals_are_not_retried() -> None:
    s = setup(GET__buckets=[error(404, "not_found", "no such thing")])
    async with s.client() as c:
        with pytest.raises(NotFound):
            await c.list_buckets()
    assert (1, []) == (len(s.gateway.seen), s.clock.pauses)


async def test_the_deadline_bounds_the_retries() -> None:
    """A gateway that never comes back: the call fails with the last error once the next
    pause would pass the deadline, never waiting more than the deadline in all."""
    s = setup(GET__buckets=[refused] * 100)
    async with s.client(RetryPolicy(deadline_s=30, first_backoff_s=1, max_backoff_s=4)) as c:
        with pytest.raises(GatewayUnavailable) as failure:
            await c.list_buckets()
    assert "unreachable" == failure.value.code
    assert sum(s.clock.pauses) <= 30 and len(s.gateway.seen) >= 8
    assert max(s.clock.pauses) <= 4


async def test_a_delete_cut_off_is_not_sent_again_but_a_refused_one_is() -> None:
    """A DELETE that may have been acted on is not repeated; one never sent is."""
    deleted = answer(200, {"bucket": "b", "name": "n", "height": 3})
    s = setup(DELETE__objects__b__n=[cut_off, refused, deleted])
    async with s.client() as c:
        with pytest.raises(GatewayUnavailable, match="dropped"):
            await c.delete_object("b", "n")
        assert 3 == (await c.delete_object("b", "n")).height
    assert 3 == len(s.gateway.seen)


async def test_put_answers_once_declared_and_follows_the_deal() -> None:
    """One PUT with ?wait=false; the deal is polled until SUCCESS; no waits reported."""
    s = setup(
        PUT__objects__b__n=[declared(4)],
        GET__deals__4=[deal(4, "ASSIGNED"), deal(4, "ASSIGNED"), deal(4, "SUCCESS")],
    )
    async with s.client() as c:
        result = await c.put_bytes("b", "n", b"hello")
    assert (4, "SUCCESS", FID) == (result.deal_id, result.state, result.fid)
    (put,) = [r for r in s.gateway.seen if r.method == "PUT"]
    assert "false" == put.url.params["wait"]
    assert [] == s.waits


async def test_put_cut_off_after_declaring_follows_that_deal_instead_of_uploading_again() -> None:
    """The first try is cut off; sent again, the name is taken by the deal it declared: that
    deal is followed to SUCCESS and nothing more is uploaded."""
    in_progress = error(409, "conflict", "deal 9 for this name is in progress (chain: X)")
    s = setup(
        PUT__objects__b__n=[cut_off, in_progress],
        GET__deals__9=[deal(9, "ASSIGNED"), deal(9, "SUCCESS")],
    )
    async with s.client() as c:
        result = await c.put_bytes("b", "n", b"hello")
    assert (9, "SUCCESS") == (result.deal_id, result.state)
    assert [b"hello", b"hello"] == [
        b for r, b in zip(s.gateway.seen, s.gateway.bodies, strict=True) if r.method == "PUT"
    ]
    assert any("deal 9" in w for w in s.waits)


async def test_put_whose_deal_failed_after_the_gateway_went_away_is_sent_again() -> None:
    """The gateway dies while delivering (its deal then FAILS): the client notices the outage
    while following the deal, and uploads again once it failed."""
    s = setup(
        PUT__objects__b__n=[declared(1), refused, declared(2)],
        GET__deals__1=[deal(1, "ASSIGNED"), refused, deal(1, "ASSIGNED"), deal(1, "FAILED", "x")],
        GET__deals__2=[deal(2, "SUCCESS")],
    )
    async with s.client() as c:
        result = await c.put_bytes("b", "n", b"hello")
    assert (2, 3) == (result.deal_id, s.gateway.count("PUT"))
    assert any("deal 1 failed (x)" in w for w in s.waits)


async def test_a_deal_that_fails_while_the_gateway_stayed_up_is_final() -> None:
    s = setup(PUT__objects__b__n=[declared(1)], GET__deals__1=[deal(1, "FAILED", "no miners")])
    async with s.client() as c:
        with pytest.raises(UpstreamFailed, match="deal 1 failed: no miners"):
            await c.put_bytes("b", "n", b"hello")
    assert 1 == s.gateway.count("PUT")


async def test_put_lost_after_the_object_was_stored_finds_it() -> None:
    """Cut off, then the name holds an object of the same size: that is the upload's result."""
    exists = error(409, "conflict", "object 'n' exists in bucket 'b'; delete it first")
    stored = lambda request: httpx.Response(  # noqa: E731
        200, headers={"x-deoss-fid": FID, "content-length": "5"}
    )
    s = setup(PUT__objects__b__n=[error(504, "timeout", "slow chain"), exists])
    s.gateway.script["HEAD /objects/b/n"] = [stored]
    async with s.client() as c:
        result = await c.put_bytes("b", "n", b"hello")
    assert (FID, "SUCCESS", None) == (result.fid, result.state, result.deal_id)


async def test_a_conflict_on_the_first_try_is_final() -> None:
    in_progress = error(409, "conflict", "deal 9 for this name is in progress (chain: X)")
    s = setup(PUT__objects__b__n=[in_progress])
    async with s.client() as c:
        with pytest.raises(Conflict):
            await c.put_bytes("b", "n", b"hello")
    assert 1 == len(s.gateway.seen)


async def test_a_deal_still_in_progress_at_the_deadline_is_a_504() -> None:
    s = setup(PUT__objects__b__n=[declared(3)], GET__deals__3=[deal(3, "ASSIGNED")] * 1000)
    async with s.client(RetryPolicy(deadline_s=5)) as c:
        with pytest.raises(UpstreamFailed, match="still ASSIGNED at the deadline") as failure:
            await c.put_bytes("b", "n", b"hello")
    assert 504 == failure.value.status and s.clock.now <= 5


async def test_a_download_is_retried_until_its_first_byte() -> None:
    body = lambda request: httpx.Response(  # noqa: E731
        200, content=b"hello", headers={"x-deoss-fid": FID}
    )
    s = setup(GET__objects__b__n=[refused, error(503, "not_enough_fragments", "miners"), body])
    async with s.client() as c:
        sink = io.BytesIO()
        done = await c.download_object("b", "n", sink)
    assert (b"hello", FID, 2) == (sink.getvalue(), done.fid, len(s.clock.pauses))


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert 5.0 == parse_retry_after("5", 0)
    assert 30.0 == parse_retry_after("Thu, 01 Jan 1970 00:01:00 GMT", 30.0)
    assert (None, None) == (parse_retry_after("soon", 0), parse_retry_after(None, 0))


def test_backoff_doubles_within_its_bounds() -> None:
    policy = RetryPolicy(first_backoff_s=0.5, max_backoff_s=8)
    rng = random.Random(1)
    for retry, ceiling in [(0, 0.5), (1, 1), (2, 2), (3, 4), (4, 8), (9, 8), (500, 8)]:
        assert ceiling / 2 <= policy.backoff_s(retry, rng) <= ceiling
    assert json.dumps(policy.deal_poll_s(100)) == json.dumps(policy.deal_poll_max_s)
