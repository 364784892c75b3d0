"""The gateway's object API against an in-process network: round trips, ranges, HEAD, listing,
deletion, deduplication, downloads with failing and slow miners, scheduler reassignment."""

from __future__ import annotations

import asyncio
import io
import re
import time

import pytest

from deoss.client.gateway import (
    Forbidden,
    GatewayUnavailable,
    NotFound,
    RangeNotSatisfiable,
    UpstreamFailed,
)
from deoss.client.signing import SigningAuth
from deoss.core.layout import hash_object
from tests.unit.chain.harness import key
from tests.unit.services.gateway.network import LAYOUT, Net

pytestmark = pytest.mark.anyio

SEGMENT = LAYOUT.segment_size


def sample(size: int, seed: int = 7) -> bytes:
    return bytes((seed * j + 3) % 251 for j in range(size))


async def test_round_trips_are_byte_identical(net: Net) -> None:
    """0 B, 1 B, 1 KiB, a full segment and one byte past it come back byte for byte."""
    async with net.client() as client:
        for size in (0, 1, 1024, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 5):
            data = sample(size)
            fid, _ = hash_object(io.BytesIO(data), LAYOUT)
            result = await client.put_bytes("photos", f"obj-{size}", data)
            assert ("SUCCESS", fid, size, False) == (
                result.state,
                result.fid,
                result.size,
                result.deduplicated,
            )
            assert data == await client.read_object("photos", f"obj-{size}")
            head = await client.head_object("photos", f"obj-{size}")
            assert (fid, size) == (head.fid, head.size)
    for _ in range(100):  # the delivery deletes its spool file once it sees the deal end
        if not net.spool_files:
            break
        await asyncio.sleep(0.01)
    assert [] == net.spool_files


async def test_range_reads_answer_206_with_content_range(net: Net) -> None:
    """Single ranges, across segment boundaries, open-ended and suffix ones, clamped ends."""
    data = sample(2 * SEGMENT + 1000)
    size = len(data)
    async with net.client() as client:
        await client.put_bytes("photos", "big", data)
    cases = {
        "0-0": (0, 0),
        f"{SEGMENT - 1}-{SEGMENT}": (SEGMENT - 1, SEGMENT),
        f"100-{2 * SEGMENT + 50}": (100, 2 * SEGMENT + 50),
        f"{size - 10}-": (size - 10, size - 1),
        "-10": (size - 10, size - 1),
        f"5-{size + 100}": (5, size - 1),
    }
    async with net.raw() as raw:
        raw.auth = SigningAuth(key("alice"))
        for spec, (start, end) in cases.items():
            response = await raw.get("/objects/photos/big", headers={"range": f"bytes={spec}"})
            assert 206 == response.status_code, spec
            assert f"bytes {start}-{end}/{size}" == response.headers["content-range"]
            assert data[start : end + 1] == response.content, spec
        whole = await raw.get("/objects/photos/big")
    assert (200, data, "bytes") == (
        whole.status_code,
        whole.content,
        whole.headers["accept-ranges"],
    )


@pytest.mark.parametrize(
    "spec", ["bytes=5-2", "bytes=9000-", "bytes=abc", "bytes=0-1,5-6", "bytes=-0", "items=0-1"]
)
async def test_bad_ranges_answer_416(net: Net, spec: str) -> None:
    """Inverted, outside, malformed, multiple, empty-suffix and other-unit ranges: 416."""
    async with net.client() as client:
        await client.put_bytes("photos", "small", sample(8000))
    async with net.raw() as raw:
        raw.auth = SigningAuth(key("alice"))
        response = await raw.get("/objects/photos/small", headers={"range": spec})
    assert 416 == response.status_code
    assert "bytes */8000" == response.headers["content-range"]
    assert "range_not_satisfiable" == response.json()["error"]["code"]


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("bytes=\u00b2-5".encode("latin-1"), "ASCII digits"),  # a Latin-1 superscript two
        (("bytes=" + "9" * 5000 + "-").encode(), "at most 19 digits"),
        (("bytes=0-" + "9" * 5000).encode(), "at most 19 digits"),
        (("bytes=-" + "9" * 5000).encode(), "at most 19 digits"),
        (b"bytes=+1-5", "ASCII digits"),
        (b"bytes=1_0-20", "ASCII digits"),
    ],
)
async def test_ranges_with_odd_numbers_answer_416_with_a_message(
    net: Net, spec: bytes, why: str
) -> None:
    """Non-ASCII digits, signs, underscores and numbers of thousands of digits are refused
    (416 naming what is wrong), never a 500 from int()."""
    async with net.client() as client:
        await client.put_bytes("photos", "small", sample(8000))
    async with net.raw() as raw:
        raw.auth = SigningAuth(key("alice"))
        response = await raw.get("/objects/photos/small", headers={b"range": spec})
    assert 416 == response.status_code
    assert "bytes */8000" == response.headers["content-range"]
    assert why in response.json()["error"]["message"]


async def test_empty_object_has_no_satisfiable_range(net: Net) -> None:
    async with net.client() as client:
        await client.put_bytes("photos", "empty", b"")
        assert b"" == await client.read_object("photos", "empty")
        with pytest.raises(RangeNotSatisfiable):
            await client.read_object("photos", "empty", byte_range="0-0")


async def test_list_with_prefix_and_pagination(net: Net) -> None:
    """Names in order, filtered by prefix, paged with start_after; HEAD gives size and fid."""
    names = ["a/1", "a/2", "a/3", "b/1", "a b/ü?#%.txt"]
    async with net.client() as client:
        await asyncio.gather(*(client.put_bytes("photos", n, n.encode() * 3) for n in names))
        first = await client.list_objects("photos", prefix="a/", limit=2)
        second = await client.list_objects(
            "photos", prefix="a/", start_after=first.next_start_after or "", limit=2
        )
        everything = [o.name async for o in client.iter_objects("photos", page_size=2)]
        head = await client.head_object("photos", "a b/ü?#%.txt")
        odd = await client.read_object("photos", "a b/ü?#%.txt")
    assert (["a/1", "a/2"], "a/2") == ([o.name for o in first.objects], first.next_start_after)
    assert (["a/3"], None) == ([o.name for o in second.objects], second.next_start_after)
    assert sorted(names) == everything
    assert (len("a b/ü?#%.txt".encode()) * 3, "a b/ü?#%.txt".encode() * 3) == (head.size, odd)


async def test_delete_removes_the_object(net: Net) -> None:
    """After DELETE: HEAD, GET and DELETE answer 404 and the listing no longer has it."""
    async with net.client() as client:
        await client.put_bytes("photos", "gone", b"bye")
        deleted = await client.delete_object("photos", "gone")
        assert ("gone", True) == (deleted.name, deleted.height > 0)
        for attempt in (
            client.head_object("photos", "gone"),
            client.read_object("photos", "gone"),
            client.delete_object("photos", "gone"),
        ):
            with pytest.raises(NotFound):
                await attempt
        assert [] == (await client.list_objects("photos")).objects


async def test_same_object_twice_is_stored_once(net: Net) -> None:
    """A second upload of the same bytes is deduplicated: no deal, no segment sent."""
    data = sample(SEGMENT + 100)
    async with net.client() as alice, net.client("bob") as bob:
        first = await alice.put_bytes("photos", "one", data)
        sent = sum(len(s.received) for s in net.schedulers)
        second = await alice.put_bytes("photos", "two", data)
        third = await bob.put_bytes("bobs", "mine", data)
        assert (None, True, "SUCCESS") == (second.deal_id, second.deduplicated, second.state)
        assert (first.fid, True) == (third.fid, third.deduplicated)
        assert sent == sum(len(s.received) for s in net.schedulers)
        assert data == await alice.read_object("photos", "two")
        assert data == await bob.read_object("bobs", "mine")
        assert 3 == (await alice.file_status(first.fid)).owners


async def test_download_survives_eight_of_twelve_miners_failing(net: Net) -> None:
    """Every data fragment's miner fails (down, 500, corrupt): parity fragments rebuild it."""
    data = sample(3 * SEGMENT + 17)
    async with net.client() as client:
        await client.put_bytes("photos", "robust", data)
        for i in (0, 1, 2):
            net.network.down.add(f"miner{i}.test")
        for i in (3, 4, 5):
            net.miners[i].mode = "error"
        for i in (6, 7):
            net.miners[i].mode = "corrupt"
        assert data == await client.read_object("photos", "robust")
        assert 4 == net.metric("deoss_gateway_segment_decodes_total")
        assert data[5000:9000] == await client.read_object(
            "photos", "robust", byte_range="5000-8999"
        )
        net.network.down.add("miner8.test")  # a ninth: too few fragments left
        with pytest.raises(GatewayUnavailable, match="segment 0: 3 good fragments, 4 needed"):
            await client.read_object("photos", "robust")


async def test_slow_miners_are_hedged(net: Net) -> None:
    """Two data fragments' miners take 5 s; after 50 ms parity fragments are fetched too."""
    data = sample(2 * SEGMENT)
    async with net.client() as client:
        await client.put_bytes("photos", "hedged", data)
        net.miners[0].mode = net.miners[2].mode = "slow"
        started = time.monotonic()
        assert data == await client.read_object("photos", "hedged")
    assert time.monotonic() - started < 2.0
    assert 4 == net.metric("deoss_gateway_fragment_hedges_total")  # 2 slow per segment


async def test_a_range_read_fetches_only_the_data_fragments_it_needs(net: Net) -> None:
    """Inside one data fragment: one fetch, not k; across two fragments or two segments: two."""
    fragment = SEGMENT // LAYOUT.data_shards
    data = sample(2 * SEGMENT)
    cases = {  # range -> fetches (fragment j of every segment is on miner j here)
        (fragment + 10, fragment + 19): 1,
        (fragment - 5, fragment + 4): 2,
        (SEGMENT - 5, SEGMENT + 4): 2,
        (0, SEGMENT - 1): 4,
    }
    async with net.client() as client:
        await client.put_bytes("photos", "ranged", data)
        for (start, end), fetches in cases.items():
            before = sum(miner.served for miner in net.miners)
            got = await client.read_object("photos", "ranged", byte_range=f"{start}-{end}")
            assert data[start : end + 1] == got, (start, end)
            assert fetches == sum(miner.served for miner in net.miners) - before, (start, end)
    assert 0 == net.metric("deoss_gateway_segment_decodes_total")


@pytest.mark.parametrize("failure", ["down", "error", "corrupt", "slow"])
async def test_a_range_read_whose_fragment_fails_reads_any_k(net: Net, failure: str) -> None:
    """The one data fragment a range needs is down, failing, corrupt or slow: the range is
    rebuilt from other fragments, without waiting for the slow one."""
    fragment = SEGMENT // LAYOUT.data_shards
    data = sample(SEGMENT)
    async with net.client() as client:
        await client.put_bytes("photos", "ranged", data)
        if failure == "down":
            net.network.down.add("miner1.test")
        else:
            net.miners[1].mode = failure
        started = time.monotonic()
        got = await client.read_object(
            "photos", "ranged", byte_range=f"{fragment + 10}-{fragment + 19}"
        )
    assert data[fragment + 10 : fragment + 20] == got
    assert time.monotonic() - started < 2.0  # the slow miner takes 5 s
    assert 1 == net.metric("deoss_gateway_segment_decodes_total")
    assert (1 if failure == "slow" else 0) == net.metric("deoss_gateway_fragment_hedges_total")


@pytest.mark.parametrize("failure", ["refuse", "timeout", "503"])
async def test_unreachable_scheduler_is_replaced(net: Net, failure: str) -> None:
    """The first scheduler contacted refuses, times out or fails: reassign, resend, SUCCESS."""
    net.network.fail_first_scheduler = failure
    data = sample(2 * SEGMENT + 3)
    async with net.client() as client:
        result = await client.put_bytes("photos", "moved", data)
        deal = await client.deal_status(result.deal_id or 0)
        assert ("SUCCESS", 2) == (deal.state, deal.attempts)
        assert data == await client.read_object("photos", "moved")
    (failed,) = net.network.failing
    (working,) = [s for s in net.schedulers if f"{s.name}.test" != failed]
    assert deal.scheduler == working.key.address
    assert [(deal.id, 0), (deal.id, 1), (deal.id, 2)] == sorted(working.received)  # 2 in flight


async def test_deal_fails_when_no_scheduler_answers(net: Net) -> None:
    """Every scheduler unreachable: reassigned until the chain gives up; 502 with the reason
    (the client, which follows the deal itself, gets the chain's reason)."""
    net.network.down.update({"sched0.test", "sched1.test"})
    async with net.raw() as raw:  # waiting (no ?wait=false), as GatewayClient does not
        raw.auth = SigningAuth(key("alice"))
        answer = await raw.put("/objects/photos/doomed", content=b"x" * 100)
    assert 502 == answer.status_code
    assert re.search("after 3 attempts .last scheduler failure: http", answer.text)
    async with net.client() as client:
        with pytest.raises(UpstreamFailed, match="deal 1 failed: .* after 3 attempts"):
            await client.put_bytes("photos", "doomed", b"y" * 100)
        with pytest.raises(NotFound):
            await client.head_object("photos", "doomed")
    for _ in range(100):  # the delivery deletes its spool file once it sees the deal end
        if not net.spool_files:
            break
        await asyncio.sleep(0.01)
    assert [] == net.spool_files


async def test_wait_false_answers_once_declared(net: Net) -> None:
    """?wait=false: 202 with the deal; the delivery finishes in the background."""
    data = sample(5000)
    async with net.client() as client:
        early = await client.put_bytes("photos", "later", data, wait=False)
        assert early.state in ("OPEN", "ASSIGNED") and early.deal_id is not None
        for _ in range(200):
            if (await client.deal_status(early.deal_id)).state == "SUCCESS":
                break
            await asyncio.sleep(0.02)
        assert data == await client.read_object("photos", "later")
    for _ in range(50):
        if not net.spool_files:
            break
        await asyncio.sleep(0.01)
    assert [] == net.spool_files


async def test_file_by_fid_and_its_status(net: Net) -> None:
    """GET /files/{fid} (cut to ?size=), its status: 12 distinct holders per segment."""
    data = sample(SEGMENT + 10)
    async with net.client() as client:
        result = await client.put_bytes("photos", "byfid", data)
        sink = io.BytesIO()
        got = await client.download_file(result.fid, sink)
        assert (data, len(data)) == (sink.getvalue(), got.size)
        cut = io.BytesIO()
        await client.download_file(result.fid, cut, size=len(data) + 2)  # zero padding
        assert data + b"\0\0" == cut.getvalue()
        status = await client.file_status(result.fid)
        with pytest.raises(NotFound):
            await client.file_status("ab" * 32)
    async with net.client("bob") as client:  # the miners serve it to its owners only
        with pytest.raises(Forbidden, match="owns no object stored as file"):
            await client.download_file(result.fid, io.BytesIO())
    assert (2, False, len(data)) == (len(status.segments), status.tagged, status.size)
    assert all(12 == len({f.holder for f in s.fragments}) for s in status.segments)
