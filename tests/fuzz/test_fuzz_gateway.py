"""Fuzzing the gateway app from its OpenAPI (see tests/fuzz/openapi.py), in-process."""

from __future__ import annotations

import pytest

from deoss.client.gateway import NotFound
from tests.fuzz.openapi import Fuzzer
from tests.unit.chain.harness import key
from tests.unit.services.gateway.conftest import net
from tests.unit.services.gateway.network import Net

__all__ = ["net"]

pytestmark = pytest.mark.anyio


DATA = bytes(range(256)) * 20


async def test_gateway_answers_every_request_below_500(net: Net) -> None:
    async with net.client("alice") as alice:  # one stored object: reads and ranges go deep
        stored = await alice.put_bytes("photos", "a.txt", DATA)

    async def put_back() -> None:
        """The fuzzer deletes and overwrites a.txt too: the next batch finds it as it was."""
        async with net.client("alice") as alice:
            try:
                if (await alice.head_object("photos", "a.txt")).fid == stored.fid:
                    return
                await alice.delete_object("photos", "a.txt")
            except NotFound:
                pass
            await alice.put_bytes("photos", "a.txt", DATA)  # deduplicated: no new deal

    hints = {
        "bucket": ["photos", "bobs", "carols", "nope"],
        "name": ["a.txt", "dir/b", "x" * 300],
        "fid": [stored.fid, "00" * 32, "zz"],
        "size": [str(stored.size), "0", "1"],
        "deal_id": [str(stored.deal_id), "0", "2"],
        "limit": ["1", "1000", "1001"],
    }
    signers = [key("alice"), key("carol")]  # carol did not authorize the gateway
    async with net.raw() as client:
        schema = net.app_transport.app.openapi()  # type: ignore[attr-defined]
        await Fuzzer(client, schema, signers, hints).run(before=put_back)
