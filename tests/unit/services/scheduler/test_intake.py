"""Segment intake: checks, placement on distinct miners, replacement of failing ones, the report."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from deoss.chain.modules.deals import DealState, ReassignDeal
from deoss.chain.modules.files import FileRecord
from deoss.chain.modules.miners import MinerEntry
from deoss.chain.modules.schedulers import RegisterScheduler
from deoss.chain.query import QueryArgs
from deoss.client.chain import ChainClient
from deoss.client.signing import HEADER_BODY, HEADER_SIGNATURE, HEADER_TIME, SigningAuth
from deoss.core.keys import parse_address
from deoss.core.podr2 import TagKey
from deoss.node.rpc import create_app as create_rpc_app
from deoss.services.scheduler.placement import accepting_candidates, rank_miners
from tests.unit.services.scheduler.harness import (
    ALICE,
    BOB,
    OTHER_SCHEDULER,
    PARAMS,
    SECTORS,
    Network,
    fake_miner_transport,
    open_scheduler,
    running_network,
    scheduler_settings,
    wait_for,
)

pytestmark = pytest.mark.anyio


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


async def first_choice(net: Network, deal_id: int, segment: int, fragment_size: int) -> str:
    """The address placement tries first for this deal and segment."""
    entries = await net.chain.query("/miners/list", QueryArgs(), list[MinerEntry])
    ranked = rank_miners(
        accepting_candidates(entries, PARAMS),
        deal_id=deal_id,
        segment=segment,
        fragment_size=fragment_size,
    )
    return ranked[0].address


async def test_full_upload_places_fragments_on_distinct_miners_and_reaches_success(
    tmp_path: Path,
) -> None:
    """Two segments: each gets 12 receipts from 12 distinct miners; the report makes SUCCESS,
    and the file's holders are exactly the miners the scheduler answered with."""
    async with running_network(tmp_path) as net:
        deal_id, segments = await net.declare(os.urandom(20_000))
        assert 2 == len(segments)
        answers = []
        for segment in segments:
            response = await net.put_segment(deal_id, segment)
            assert 200 == response.status_code, response.text
            answers.append(response.json())
        for segment, answer in zip(segments, answers, strict=True):
            assert segment.index == answer["segment"]
            assert 12 == len(set(answer["miners"]))
            for index, address in enumerate(answer["miners"]):
                digest = segment.plan.fragment_hashes[index]
                assert bytes(segment.fragments[index]) == net.miner(address).fragments[digest]
        deal = await net.wait_for_state(deal_id, DealState.SUCCESS)
        record = await net.chain.query("/files/file", QueryArgs(fid=deal.fid), FileRecord)
        expected = [[parse_address(a) for a in answer["miners"]] for answer in answers]
        assert expected == record.holders
        assert SCHEDULER_ADDRESS(net) == record.reporter
        progress = await net.app_client.get(f"/deals/{deal_id}", auth=SigningAuth(BOB))
        assert {
            "placed": [0, 1],
            "reported": True,
            "state": "SUCCESS",
        }.items() <= progress.json().items()


def SCHEDULER_ADDRESS(net: Network) -> bytes:  # noqa: N802
    return net.service.key.public_key


async def test_a_placed_segment_is_answered_again_without_resending(tmp_path: Path) -> None:
    """Sending the same segment twice (a gateway retry) places it once."""
    async with running_network(tmp_path) as net:
        deal_id, segments = await net.declare(os.urandom(20_000))
        first = await net.put_segment(deal_id, segments[0])
        puts = net.fragment_puts()
        again = await net.put_segment(deal_id, segments[0])
        assert (200, first.json()) == (again.status_code, again.json())
        assert puts == net.fragment_puts()


@pytest.mark.parametrize("mode", ["error", "hang", "bad_receipt", "wrong_miner", "endless_receipt"])
async def test_a_failing_miner_is_replaced_by_another(tmp_path: Path, mode: str) -> None:
    """A miner answering 500, never answering, or with a receipt that would not pass the chain
    is replaced by an unused miner; the deal still reaches SUCCESS without it."""
    timeout: dict[str, Any] = {"miner_timeout_s": 0.5} if mode == "hang" else {}
    async with running_network(tmp_path, **timeout) as net:
        deal_id, segments = await net.declare(os.urandom(3000))
        size = segments[0].plan.padded_size // 4
        failing = await first_choice(net, deal_id, 0, size)
        net.miner(failing).mode = mode
        response = await net.put_segment(deal_id, segments[0])
        assert 200 == response.status_code, response.text
        miners = response.json()["miners"]
        assert failing not in miners
        assert 12 == len(set(miners))
        assert 1 == net.miner(failing).fragment_puts
        # an answer streaming 64 MiB is cut off past a receipt's size, not read into memory
        assert net.miner(failing).receipt_bytes_sent <= 256 * 1024
        await net.wait_for_state(deal_id, DealState.SUCCESS)


async def test_too_many_failing_miners_is_503_naming_them(tmp_path: Path) -> None:
    """With 13 miners and two failing, a segment cannot get 12 distinct receipts."""
    async with running_network(tmp_path, miner_count=13) as net:
        deal_id, segments = await net.declare(os.urandom(3000))
        for miner in list(net.miners.values())[:2]:
            miner.mode = "error"
        response = await net.put_segment(deal_id, segments[0])
        assert (503, "unavailable") == (response.status_code, error_code(response))
        assert "HTTP 500" in response.json()["error"]["message"]
        assert DealState.ASSIGNED == (await net.deal(deal_id)).state


async def test_unsigned_expired_and_replayed_requests_are_401(tmp_path: Path) -> None:
    async with running_network(tmp_path) as net:
        deal_id, segments = await net.declare(os.urandom(3000))
        url = f"/deals/{deal_id}/segments/0"
        unsigned = await net.app_client.put(url, content=segments[0].data)
        assert (401, "unauthenticated") == (unsigned.status_code, error_code(unsigned))

        request = net.app_client.build_request("PUT", url, content=segments[0].data)
        signed = next(SigningAuth(ALICE).auth_flow(request))
        stale = dict(signed.headers)
        stale[HEADER_TIME] = str(int(stale[HEADER_TIME]) - 120_000)
        expired = await net.app_client.put(url, content=segments[0].data, headers=stale)
        assert 401 == expired.status_code
        assert "more than" in expired.json()["error"]["message"]

        first = await net.app_client.send(signed)
        assert 200 == first.status_code, first.text
        replay = await net.app_client.put(
            url, content=segments[0].data, headers=dict(signed.headers)
        )
        assert 401 == replay.status_code
        assert "replayed" in replay.json()["error"]["message"]
        assert HEADER_SIGNATURE in signed.headers


async def test_only_the_declarer_may_send_segments(tmp_path: Path) -> None:
    async with running_network(tmp_path) as net:
        deal_id, segments = await net.declare(os.urandom(3000))
        response = await net.put_segment(deal_id, segments[0], who=BOB)
        assert (403, "forbidden") == (response.status_code, error_code(response))
        assert ALICE.address in response.json()["error"]["message"]
        assert 0 == net.fragment_puts()


async def test_a_deal_assigned_to_another_scheduler_is_409(tmp_path: Path) -> None:
    async with running_network(tmp_path) as net:
        other = TagKey.generate(SECTORS, os.urandom)
        await net.submit(
            OTHER_SCHEDULER,
            RegisterScheduler(
                endpoint="http://other.test", stake=PARAMS.scheduler_min_stake, tag_key=other.public
            ),
        )
        deal_id, segments = await net.declare(os.urandom(3000))
        if (await net.deal(deal_id)).scheduler == net.service.key.public_key:
            await net.submit(ALICE, ReassignDeal(deal_id=deal_id))
        assert OTHER_SCHEDULER.public_key == (await net.deal(deal_id)).scheduler
        response = await net.put_segment(deal_id, segments[0])
        assert (409, "conflict") == (response.status_code, error_code(response))
        assert OTHER_SCHEDULER.address in response.json()["error"]["message"]
        assert 0 == net.fragment_puts()


async def test_a_deal_moved_away_while_placing_is_409_and_starts_afresh_back_here(
    tmp_path: Path,
) -> None:
    """The chain moves the deal while a miner hangs: the segment is answered 409 naming the
    new scheduler (not 503: the miners did not fail). Assigned here again, the deal's earlier
    failures are forgotten: the miner that hung may take its fragment now."""
    async with running_network(tmp_path, miner_timeout_s=1.0) as net:
        deal_id, segments = await net.declare(os.urandom(3000))  # to the only scheduler
        deal = await net.deal(deal_id)
        assert net.service.key.public_key == deal.scheduler
        other = TagKey.generate(SECTORS, os.urandom)
        await net.submit(
            OTHER_SCHEDULER,
            RegisterScheduler(
                endpoint="http://other.test", stake=PARAMS.scheduler_min_stake, tag_key=other.public
            ),
        )
        size = segments[0].plan.padded_size // 4
        hanging = net.miner(await first_choice(net, deal_id, 0, size))
        hanging.mode = "hang"
        sending = asyncio.create_task(net.put_segment(deal_id, segments[0]))
        async with asyncio.timeout(5):
            while hanging.fragment_puts == 0:
                await asyncio.sleep(0.01)
        await net.submit(ALICE, ReassignDeal(deal_id=deal_id, attempt=deal.attempts))
        response = await sending
        assert (409, "conflict") == (response.status_code, error_code(response))
        assert "left this scheduler" in response.json()["error"]["message"]
        assert OTHER_SCHEDULER.address in response.json()["error"]["message"]

        await net.submit(ALICE, ReassignDeal(deal_id=deal_id))  # back here (third and last try)
        assert net.service.key.public_key == (await net.deal(deal_id)).scheduler
        hanging.mode = "ok"
        again = await net.put_segment(deal_id, segments[0])
        assert 200 == again.status_code, again.text
        assert hanging.key.address in again.json()["miners"]


async def test_a_deal_assigned_here_again_places_its_placed_segments_again(
    tmp_path: Path,
) -> None:
    """Receipts name the assignment they were given for: those collected under an earlier
    assignment here cannot be reported for this one, so a segment placed then is placed again
    (not answered from disk), and the deal reaches SUCCESS."""
    async with running_network(tmp_path) as net:
        deal_id, segments = await net.declare(os.urandom(20_000))  # two 16 KiB segments
        assert 2 == len(segments)
        assert 200 == (await net.put_segment(deal_id, segments[0])).status_code
        await net.submit(ALICE, ReassignDeal(deal_id=deal_id, attempt=1))  # the only scheduler
        deal = await net.deal(deal_id)
        assert (2, net.service.key.public_key) == (deal.attempts, deal.scheduler)
        before = net.fragment_puts()
        for segment in segments:
            response = await net.put_segment(deal_id, segment)
            assert 200 == response.status_code, response.text
        assert before + 2 * PARAMS.layout.total_shards == net.fragment_puts()
        await net.wait_for_state(deal_id, DealState.SUCCESS)


async def test_unknown_deal_and_segment_are_404(tmp_path: Path) -> None:
    async with running_network(tmp_path) as net:
        deal_id, segments = await net.declare(os.urandom(3000))
        missing = await net.app_client.put(
            "/deals/999/segments/0", content=segments[0].data, auth=SigningAuth(ALICE)
        )
        assert 404 == missing.status_code
        beyond = await net.app_client.put(
            f"/deals/{deal_id}/segments/1", content=segments[0].data, auth=SigningAuth(ALICE)
        )
        assert 404 == beyond.status_code
        assert "no segment 1" in beyond.json()["error"]["message"]


async def test_ids_that_are_not_a_few_ascii_digits_are_400(tmp_path: Path) -> None:
    """Deal ids and segment indices are decimal ASCII digits in range: a sign, a Latin-1 digit,
    an overflowing or a 5,000-digit number is a 400 naming the parameter, before any lookup."""
    async with running_network(tmp_path) as net:
        deal_id, _ = await net.declare(os.urandom(3000))
        for target, name in [
            (f"/deals/+{deal_id}", "deal_id"),
            ("/deals/%C2%B2", "deal_id"),
            ("/deals/9223372036854775808", "deal_id"),
            ("/deals/" + "9" * 5000, "deal_id"),
            (f"/deals/{deal_id}/segments/+0", "index"),
            (f"/deals/{deal_id}/segments/4294967296", "index"),
        ]:
            response = await net.app_client.get(target, auth=SigningAuth(BOB))
            if "segments" in target:
                response = await net.app_client.put(target, content=b"x", auth=SigningAuth(ALICE))
            assert 400 == response.status_code, target[:40]
            assert name in response.json()["error"]["message"], target[:40]


async def test_segment_bytes_not_matching_the_declared_hash_are_422(tmp_path: Path) -> None:
    """Nothing reaches a miner, and the same deal still takes the right bytes afterwards."""
    async with running_network(tmp_path) as net:
        deal_id, segments = await net.declare(os.urandom(3000))
        wrong = bytes(len(segments[0].data))
        response = await net.put_segment(deal_id, segments[0], body=wrong)
        assert (422, "hash_mismatch") == (response.status_code, error_code(response))
        assert "declared segment hash" in response.json()["error"]["message"]
        assert 0 == net.fragment_puts()
        assert 200 == (await net.put_segment(deal_id, segments[0])).status_code


async def test_a_body_other_than_the_signed_segment_is_422(tmp_path: Path) -> None:
    """The request signs the declared hash but carries other bytes: refused once read (the
    bytes are hashed once, against the declaration), nothing reaches a miner."""
    async with running_network(tmp_path) as net:
        deal_id, segments = await net.declare(os.urandom(3000))
        url = f"/deals/{deal_id}/segments/0"
        lie = {HEADER_BODY: segments[0].plan.hash.hex()}
        wrong = bytes(len(segments[0].data))
        response = await net.app_client.put(
            url, content=wrong, headers=lie, auth=SigningAuth(ALICE)
        )
        assert (422, "hash_mismatch") == (response.status_code, error_code(response))
        assert "!= declared" in response.json()["error"]["message"]
        longer = await net.app_client.put(
            url, content=segments[0].data + b"x", headers=lie, auth=SigningAuth(ALICE)
        )
        assert 413 == longer.status_code
        assert 0 == net.fragment_puts()
        assert 200 == (await net.put_segment(deal_id, segments[0])).status_code


async def test_a_declaration_with_a_wrong_fragment_hash_is_422(tmp_path: Path) -> None:
    """The scheduler recomputes the fragments and refuses a declaration that does not match
    them, before sending anything."""
    async with running_network(tmp_path) as net:
        deal_id, segments = await net.declare(os.urandom(3000), tamper=5)
        response = await net.put_segment(deal_id, segments[0])
        assert (422, "hash_mismatch") == (response.status_code, error_code(response))
        assert "fragment 5" in response.json()["error"]["message"]
        assert 0 == net.fragment_puts()


async def test_placed_segments_survive_a_restart(tmp_path: Path) -> None:
    """Segment 0 placed, the scheduler restarts; segment 1 completes the deal, segment 0 is
    not sent again."""
    async with running_network(tmp_path) as net:
        deal_id, segments = await net.declare(os.urandom(20_000))
        first = await net.put_segment(deal_id, segments[0])
        assert 200 == first.status_code
        await net.service.aclose()
        puts = net.fragment_puts()
        settings = scheduler_settings(tmp_path)
        transport = fake_miner_transport(net.miners)
        async with open_scheduler(net.chain, transport, settings) as (_, client):
            again = await client.put(
                f"/deals/{deal_id}/segments/0", content=segments[0].data, auth=SigningAuth(ALICE)
            )
            assert first.json() == again.json()
            assert puts == net.fragment_puts()
            last = await client.put(
                f"/deals/{deal_id}/segments/1", content=segments[1].data, auth=SigningAuth(ALICE)
            )
            assert 200 == last.status_code, last.text
            await net.wait_for_state(deal_id, DealState.SUCCESS)


class RefuseBroadcasts(httpx.AsyncBaseTransport):
    """The node's RPC, refusing the connection for the first ``times`` broadcasts."""

    def __init__(self, inner: httpx.AsyncBaseTransport, times: int) -> None:
        self.inner = inner
        self.times = times

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.times and b"broadcast_tx" in request.content:
            self.times -= 1
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


async def test_the_report_is_retried_while_the_node_refuses_it(tmp_path: Path) -> None:
    async with running_network(tmp_path) as net:
        rpc = RefuseBroadcasts(httpx.ASGITransport(app=create_rpc_app(net.node)), times=2)
        settings = scheduler_settings(
            tmp_path,
            data_dir=tmp_path / "flaky",
            tag_key_path=net.service.settings.tag_key_file,
        )
        async with (
            ChainClient("http://node", transport=rpc, poll_interval_s=0.01) as chain,
            open_scheduler(chain, fake_miner_transport(net.miners), settings) as (_, client),
        ):
            deal_id, segments = await net.declare(os.urandom(3000))
            response = await client.put(
                f"/deals/{deal_id}/segments/0", content=segments[0].data, auth=SigningAuth(ALICE)
            )
            assert 200 == response.status_code, response.text
            await net.wait_for_state(deal_id, DealState.SUCCESS)
            assert 0 == rpc.times


async def test_a_report_that_did_not_go_out_is_submitted_after_a_restart(tmp_path: Path) -> None:
    """Every segment placed but the node refused the report; the restarted scheduler
    finds the complete placement on disk and reports it."""
    async with running_network(tmp_path) as net:
        rpc = RefuseBroadcasts(httpx.ASGITransport(app=create_rpc_app(net.node)), times=1)
        settings = scheduler_settings(
            tmp_path,
            data_dir=tmp_path / "restarted",
            tag_key_path=net.service.settings.tag_key_file,
            report_attempts=1,
        )
        deal_id, segments = await net.declare(os.urandom(3000))
        async with (
            ChainClient("http://node", transport=rpc, poll_interval_s=0.01) as chain,
            open_scheduler(chain, fake_miner_transport(net.miners), settings) as (service, client),
        ):
            response = await client.put(
                f"/deals/{deal_id}/segments/0", content=segments[0].data, auth=SigningAuth(ALICE)
            )
            assert 200 == response.status_code, response.text

            async def gave_up() -> str:
                return (await service.deal_progress(deal_id)).error

            assert "after 1 attempts" in await wait_for(gave_up, 5, "the report to give up")
        assert DealState.ASSIGNED == (await net.deal(deal_id)).state
        async with open_scheduler(net.chain, fake_miner_transport(net.miners), settings) as (
            service,
            _,
        ):
            await service.resume()
            await net.wait_for_state(deal_id, DealState.SUCCESS)
