"""Requests the gateway refuses, and that nothing is stored or declared when it does."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from deoss.chain.modules.deals import DealCounts
from deoss.chain.query import QueryArgs
from deoss.client.gateway import Conflict, Forbidden, InsufficientSpace, NotFound
from deoss.client.signing import HEADER_BODY, SigningAuth, now_ms, sign_request
from tests.unit.chain.harness import key
from tests.unit.services.gateway.network import GATEWAY_URL, MAX_OBJECT_BYTES, Net

pytestmark = pytest.mark.anyio


async def assert_nothing_stored(net: Net, name: str = "x") -> None:
    """No deal was declared, no spool file is left, the object does not exist."""
    counts = await net.chain.query("/deals/counts", QueryArgs(), DealCounts)
    assert DealCounts() == counts
    assert [] == net.spool_files
    async with net.client() as client:
        with pytest.raises(NotFound):
            await client.head_object("photos", name)


def signed(user: str, method: str, target: str, body: bytes = b"", **kw: int) -> dict[str, str]:
    time_ms = kw.get("time_ms", now_ms())
    digest = hashlib.sha256(body).hexdigest()
    host = GATEWAY_URL.removeprefix("http://")
    return sign_request(key(user), method, target, time_ms, digest, host=host)


async def test_unsigned_request_is_401(net: Net) -> None:
    async with net.raw() as raw:
        response = await raw.put("/objects/photos/x", content=b"data")
    assert (401, "unauthenticated") == (response.status_code, response.json()["error"]["code"])
    assert "missing header" in response.json()["error"]["message"]
    await assert_nothing_stored(net)


async def test_expired_request_is_401(net: Net) -> None:
    headers = signed("alice", "PUT", "/objects/photos/x", b"data", time_ms=now_ms() - 120_000)
    async with net.raw() as raw:
        response = await raw.put("/objects/photos/x", content=b"data", headers=headers)
    assert 401 == response.status_code
    assert "sign it again" in response.json()["error"]["message"]
    await assert_nothing_stored(net)


async def test_replayed_request_is_401(net: Net) -> None:
    """The same signed GET twice: the second is refused."""
    headers = signed("alice", "GET", "/buckets")
    async with net.raw() as raw:
        first = await raw.get("/buckets", headers=headers)
        again = await raw.get("/buckets", headers=headers)
    assert (200, 401) == (first.status_code, again.status_code)
    assert "replayed" in again.json()["error"]["message"]


async def test_request_for_another_path_is_401(net: Net) -> None:
    """A signature for one object does not open another."""
    headers = signed("alice", "GET", "/objects/photos/a")
    async with net.raw() as raw:
        response = await raw.get("/objects/photos/b", headers=headers)
    assert 401 == response.status_code


async def test_user_who_did_not_authorize_the_gateway_is_403(net: Net) -> None:
    """carol has space and a bucket but never authorized this gateway."""
    async with net.client("carol") as carol:
        with pytest.raises(Forbidden, match="deoss gateway authorize"):
            await carol.list_buckets()
        with pytest.raises(Forbidden):
            await carol.put_bytes("carols", "x", b"data")
    await assert_nothing_stored(net)


async def test_another_users_bucket_is_not_reachable(net: Net) -> None:
    """bob names alice's bucket: it is looked up among bob's, so 404, and alice's is intact."""
    async with net.client() as alice, net.client("bob") as bob:
        await alice.put_bytes("photos", "private", b"alice's")
        with pytest.raises(NotFound, match="bucket 'photos'"):
            await bob.put_bytes("photos", "x", b"bob's")
        for attempt in (
            bob.read_object("photos", "private"),
            bob.delete_object("photos", "private"),
            bob.delete_bucket("photos"),
            bob.list_objects("photos"),
        ):
            with pytest.raises(NotFound):
                await attempt
        assert b"alice's" == await alice.read_object("photos", "private")


async def test_body_larger_than_allowed_is_413(net: Net) -> None:
    """Declared too large: refused before reading; streamed without a length: cut at the limit."""
    data = b"z" * (MAX_OBJECT_BYTES + 1)
    headers = {HEADER_BODY: hashlib.sha256(data).hexdigest()}

    async def chunked() -> AsyncIterator[bytes]:
        for at in range(0, len(data), 4096):
            yield data[at : at + 4096]

    async with net.raw() as raw:
        raw.auth = SigningAuth(key("alice"))
        declared = await raw.put("/objects/photos/x", content=data, headers=headers)
        streamed = await raw.put("/objects/photos/x", content=chunked(), headers=headers)
    assert (413, 413) == (declared.status_code, streamed.status_code)
    assert "this gateway takes 65536" in declared.json()["error"]["message"]
    await assert_nothing_stored(net)


async def test_body_larger_than_its_content_length_is_413(net: Net) -> None:
    data = b"y" * 100
    headers = {HEADER_BODY: hashlib.sha256(data).hexdigest(), "content-length": "10"}
    async with net.raw() as raw:
        raw.auth = SigningAuth(key("alice"))
        response = await raw.put("/objects/photos/x", content=data, headers=headers)
    assert 413 == response.status_code
    await assert_nothing_stored(net)


async def test_body_not_matching_its_signed_hash_is_401(net: Net) -> None:
    headers = {HEADER_BODY: hashlib.sha256(b"what was signed").hexdigest()}
    async with net.raw() as raw:
        raw.auth = SigningAuth(key("alice"))
        response = await raw.put("/objects/photos/x", content=b"what was sent", headers=headers)
    assert 401 == response.status_code
    assert "does not match the signed SHA-256" in response.json()["error"]["message"]
    await assert_nothing_stored(net)


async def test_user_without_space_is_507(net: Net) -> None:
    """dave authorized the gateway and has a bucket, but bought no space."""
    async with net.client("dave") as dave:
        with pytest.raises(InsufficientSpace, match="deoss space buy"):
            await dave.put_bytes("daves", "x", b"data")
    await assert_nothing_stored(net)


async def test_taken_names_and_bad_names(net: Net) -> None:
    """An existing object 409, a name with a control character 400, a bucket twice 409."""
    async with net.client() as client:
        await client.put_bytes("photos", "taken", b"1")
        with pytest.raises(Conflict, match="delete it first"):
            await client.put_bytes("photos", "taken", b"2")
        with pytest.raises(Exception, match="control characters"):
            await client.put_bytes("photos", "bad\x01name", b"2")
        with pytest.raises(Conflict, match="already exists"):
            await client.create_bucket("photos")
        with pytest.raises(Conflict, match="holds 1 objects"):
            await client.delete_bucket("photos")
        with pytest.raises(NotFound):
            await client.delete_bucket("nope")
        created = await client.create_bucket("fresh")
        assert ["fresh", "photos"] == sorted(b.name for b in await client.list_buckets())
        deleted = await client.delete_bucket("fresh")
        assert created.height < deleted.height
        assert b"1" == await client.read_object("photos", "taken")


async def test_unknown_deal_and_bad_ids(net: Net) -> None:
    async with net.raw() as raw:
        raw.auth = SigningAuth(key("alice"))
        unknown = await raw.get("/deals/99")
        bad = await raw.get("/deals/abc")
        bad_fid = await raw.get("/files/xyz/status")
    assert (404, 400, 400) == (unknown.status_code, bad.status_code, bad_fid.status_code)


@pytest.mark.parametrize(
    "target",
    [
        "/deals/999999999999999999999999999999",
        "/deals/9223372036854775808",
        "/deals/" + "9" * 5000,
        "/deals/%C2%B2",
        "/deals/+5",
        "/deals/-1",
        "/files/" + "ab" * 32 + "?size=999999999999999999999999999999",
        "/objects/photos?limit=%C2%B2",
    ],
)
async def test_integers_out_of_range_or_not_ascii_digits_are_400(net: Net, target: str) -> None:
    """Ids and sizes are decimal ASCII digits below 2^63: anything else is a 400 naming the
    parameter, never a 500 from an overflow further down."""
    async with net.raw() as raw:
        raw.auth = SigningAuth(key("alice"))
        response = await raw.get(target)
    assert 400 == response.status_code
    error = response.json()["error"]
    assert "bad_request" == error["code"]
    assert any(name in error["message"] for name in ("deal_id", "size", "limit"))


async def test_unreachable_chain_is_503(net: Net) -> None:
    """With the chain node gone, requests fail with 503 naming the chain, not a traceback."""
    net.rpc.down = True
    async with net.raw() as raw:
        raw.auth = SigningAuth(key("bob"))
        response = await raw.get("/buckets")
    assert (503, "chain_unavailable") == (response.status_code, response.json()["error"]["code"])
