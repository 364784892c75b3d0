"""The gateway's bounds on uploads: uploads in flight per user and per gateway (429 with
Retry-After, nothing read or declared), a body without a length cut off at the user's free
space (507, spool file removed), planning bounded per upload and per gateway, a stripe at a
time, and the settings of these limits."""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st
from msgspec.structs import replace

from deoss.chain.modules.deals import DealCounts
from deoss.chain.modules.space import Lease
from deoss.chain.query import QueryArgs
from deoss.client.signing import HEADER_BODY, SigningAuth
from deoss.core.layout import LayoutParams, SegmentPlan, encode_and_plan, pad_segment
from deoss.services.common.config import ConfigError
from deoss.services.common.signing import Signer
from deoss.services.gateway import spooling
from deoss.services.gateway.settings import load_settings
from deoss.services.gateway.spooling import PLANNING_DEPTH, SegmentPlanner, plan_spooled_segment
from deoss.services.gateway.upload import RETRY_AFTER_S
from tests.unit.chain.harness import key
from tests.unit.services.gateway.network import GATEWAY_URL, Net, running_network

anyio = pytest.mark.anyio


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition was not met in time"
        await asyncio.sleep(0.01)


def signed_client(net: Net, user: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=GATEWAY_URL, transport=net.app_transport, auth=SigningAuth(key(user))
    )


async def put(
    net: Net, user: str, target: str, body: bytes | AsyncIterator[bytes], sha256: bytes
) -> httpx.Response:
    """A PUT signed by ``user``; an iterator body goes chunked (no Content-Length)."""
    async with signed_client(net, user) as client:
        return await client.put(target, content=body, headers={HEADER_BODY: sha256.hex()})


class HeldUpload:
    """A chunked upload whose body stops after its first KiB until ``release``: in flight for
    as long as the test wants."""

    def __init__(self, net: Net, user: str, target: str, size: int = 5000) -> None:
        self.data = (bytes(range(256)) * (size // 256 + 1))[:size]
        self.go = asyncio.Event()
        sha256 = hashlib.sha256(self.data).digest()
        self.task = asyncio.create_task(put(net, user, target, self.body(), sha256))

    async def body(self) -> AsyncIterator[bytes]:
        yield self.data[:1024]
        await self.go.wait()
        yield self.data[1024:]

    async def release(self) -> httpx.Response:
        self.go.set()
        return await self.task


async def deal_count(net: Net) -> int:
    """Deals declared so far, whatever their state."""
    counts = await net.chain.query("/deals/counts", QueryArgs(), DealCounts)
    return counts.open + counts.assigned + counts.success + counts.failed


def assert_busy(response: httpx.Response, why: str) -> None:
    assert (429, "too_many_requests") == (response.status_code, response.json()["error"]["code"])
    assert str(RETRY_AFTER_S) == response.headers["retry-after"]
    assert why in response.json()["error"]["message"]


@anyio
async def test_uploads_beyond_the_users_limit_are_429_and_change_nothing(tmp_path: Path) -> None:
    """alice may have one upload in flight: her second is refused at once with Retry-After
    (no body read, no spool file, no deal); bob is not held back; once her first is done,
    she may upload again."""
    async with running_network(tmp_path, max_uploads_per_user=1) as net:
        held = HeldUpload(net, "alice", "/objects/photos/first")
        await until(lambda: len(net.spool_files) == 1)  # admitted, its body being spooled
        second = b"second object"
        refused = await put(net, "alice", "/objects/photos/second", second, b"\0" * 32)
        assert_busy(refused, "limit per user")
        assert (1, 0) == (len(net.spool_files), await deal_count(net))
        bobs = await put(net, "bob", "/objects/bobs/x", b"bob", hashlib.sha256(b"bob").digest())
        assert 201 == bobs.status_code
        assert 201 == (await held.release()).status_code
        again = await put(
            net, "alice", "/objects/photos/second", second, hashlib.sha256(second).digest()
        )
        assert (201, "SUCCESS") == (again.status_code, again.json()["state"])
        assert (3, [], 0) == (await deal_count(net), net.spool_files, len(net.gateway.upload_slots))


@anyio
async def test_uploads_beyond_the_gateways_limit_are_429(tmp_path: Path) -> None:
    """One upload in flight on the whole gateway: another user's is refused too."""
    async with running_network(tmp_path, max_uploads=1, max_uploads_per_user=1) as net:
        held = HeldUpload(net, "alice", "/objects/photos/first")
        await until(lambda: len(net.spool_files) == 1)
        data = b"bob's"
        refused = await put(net, "bob", "/objects/bobs/x", data, hashlib.sha256(data).digest())
        assert_busy(refused, "this gateway has 1 uploads in progress")
        assert (1, 0) == (len(net.spool_files), await deal_count(net))
        assert 201 == (await held.release()).status_code
        accepted = await put(net, "bob", "/objects/bobs/x", data, hashlib.sha256(data).digest())
        assert 201 == accepted.status_code


@anyio
async def test_the_slot_is_given_back_however_the_upload_ends(tmp_path: Path) -> None:
    """With one upload allowed per user, refusals of every kind, a deduplicated upload and a
    delivery in the background each give the slot back (the last once the deal is done)."""
    async with running_network(tmp_path, max_uploads_per_user=1) as net:
        data = b"payload"
        sha = hashlib.sha256(data).digest()
        assert 401 == (await put(net, "alice", "/objects/photos/a", data, b"\1" * 32)).status_code
        too_big = b"z" * (net.settings.max_object_bytes + 1)
        assert 413 == (await put(net, "alice", "/objects/photos/a", too_big, sha)).status_code
        assert 404 == (await put(net, "alice", "/objects/nope/a", data, sha)).status_code
        assert 201 == (await put(net, "alice", "/objects/photos/a", data, sha)).status_code
        assert 409 == (await put(net, "alice", "/objects/photos/a", data, sha)).status_code
        deduplicated = await put(net, "alice", "/objects/photos/b", data, sha)
        assert (201, True) == (deduplicated.status_code, deduplicated.json()["deduplicated"])
        later = b"later"
        sha_later = hashlib.sha256(later).digest()
        early = await put(net, "alice", "/objects/photos/c?wait=false", later, sha_later)
        assert 202 == early.status_code
        await until(lambda: len(net.gateway.upload_slots) == 0)  # the delivery ended
        last = await put(net, "alice", "/objects/photos/d", b"d", hashlib.sha256(b"d").digest())
        assert 201 == last.status_code
        assert ([], 0) == (net.spool_files, len(net.gateway.upload_slots))


@anyio
async def test_a_chunked_body_past_the_free_space_is_507_and_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body without a length is cut off at the first chunk past the user's free space: 507,
    the rest is not read, the spool file is removed, nothing is declared. (The lease is the
    chain's, with all but FREE bytes marked used: filling 1 GiB would take too long here.)"""
    free = 10_000
    async with running_network(tmp_path) as net:
        gateway = net.gateway
        read_lease = gateway._lease

        async def nearly_full(user: Signer) -> Lease | None:
            lease = await read_lease(user)
            assert lease is not None
            return replace(lease, used_bytes=lease.total_bytes - free)

        monkeypatch.setattr(gateway, "_lease", nearly_full)
        data = bytes(range(256)) * 200  # 51,200 bytes: under max_object_bytes, over the space
        pulled = 0

        async def chunked() -> AsyncIterator[bytes]:
            nonlocal pulled
            for at in range(0, len(data), 1000):
                pulled += 1000
                yield data[at : at + 1000]

        sha = hashlib.sha256(data).digest()
        response = await put(net, "alice", "/objects/photos/big", chunked(), sha)
        assert (507, "insufficient_space") == (
            response.status_code,
            response.json()["error"]["code"],
        )
        assert f"larger than the {free} bytes of space free" in response.json()["error"]["message"]
        assert pulled < len(data)  # stopped early, not read to its end
        assert ([], 0, 0) == (net.spool_files, await deal_count(net), len(gateway.upload_slots))
        fits = data[:free]
        response = await put(
            net, "alice", "/objects/photos/fits", fits, hashlib.sha256(fits).digest()
        )
        assert 201 == response.status_code  # exactly the free space is accepted


@anyio
async def test_planning_is_bounded_per_upload_and_per_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three uploads of many segments spooled at once with one planning slot: never more than
    one segment is coded at a time, each upload never has more than PLANNING_DEPTH segments
    waiting or in planning, and the plans are those of the files."""
    layout = LayoutParams(segment_size=64, data_shards=4, parity_shards=2)
    coding = 0
    most = 0
    real_plan = spooling.plan_spooled_segment

    def counted_plan(path: Path, index: int, held: int, params: LayoutParams) -> SegmentPlan:
        nonlocal coding, most
        coding += 1
        most = max(most, coding)
        try:
            time.sleep(0.002)  # long enough for the others to try to start one too
            return real_plan(path, index, held, params)
        finally:
            coding -= 1

    monkeypatch.setattr(spooling, "plan_spooled_segment", counted_plan)
    slots = asyncio.Semaphore(1)
    depths: list[int] = []

    async def spool(seed: int) -> list[SegmentPlan]:
        data = bytes((seed * 31 + j) % 251 for j in range(64 * 20 + 7))
        path = tmp_path / f"spool-{seed}"
        planner = SegmentPlanner(path, layout, slots)
        with open(path, "wb") as handle:
            for at in range(0, len(data), 200):
                handle.write(data[at : at + 200])
                handle.flush()
                await planner.written(handle.tell())
                depths.append(len(planner._planning))
        plans = await planner.finish(len(data))
        assert [p.index for p in plans] == list(range(21))
        return plans

    results = await asyncio.gather(*(spool(seed) for seed in range(3)))
    assert 1 == most
    assert max(depths) <= PLANNING_DEPTH
    assert 3 == len({tuple(p.hash for p in plans) for plans in results})


@examples(max_examples=60, deadline=None)
@given(
    st.integers(min_value=1, max_value=6),
    st.integers(min_value=1, max_value=4),
    st.integers(min_value=0, max_value=3),
    st.binary(max_size=500),
    st.integers(min_value=1, max_value=40),
)
def test_planning_a_stripe_at_a_time_is_planning_the_segment(
    k: int, m: int, index: int, held_data: bytes, stripe: int
) -> None:
    """Whatever the stripe, the plan of a segment read from the spool file a stripe at a time
    is encode_and_plan's of the whole segment (full, partial, empty; not the first one)."""
    layout = LayoutParams(segment_size=k * 128, data_shards=k, parity_shards=m)
    held = held_data[: layout.segment_size]
    before = bytes(range(256)) * (index * layout.segment_size // 256 + 1)
    with tempfile.TemporaryDirectory() as directory:  # not tmp_path: one file per example
        path = Path(directory) / "spool"
        path.write_bytes(before[: index * layout.segment_size] + held + b"next segment")
        planned = plan_spooled_segment(path, index, len(held), layout, stripe)
    padded = pad_segment(held, layout)
    assert encode_and_plan(index, len(held), padded, layout).plan == planned


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[gateway]\nmax_uploads = 0\n", "gateway.max_uploads must be positive"),
        ("[gateway]\nmax_uploads_per_user = 0\n", "gateway.max_uploads_per_user must be"),
        ("[gateway]\nplanning_slots = 0\n", "gateway.planning_slots must be positive"),
        ("[gateway]\nmax_uploads = 2\nmax_uploads_per_user = 3\n", "must not exceed"),
    ],
)
def test_bad_upload_limits_stop_the_gateway(tmp_path: Path, text: str, named: str) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=named):
        load_settings(config)


def test_upload_limit_defaults(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("")
    loaded = load_settings(config)
    assert (32, 8, 2) == (loaded.max_uploads, loaded.max_uploads_per_user, loaded.planning_slots)
