"""Gateways, authorization, and buckets with S3 names and ownership."""

from __future__ import annotations

import pytest

from deoss.chain import errors
from deoss.chain.modules.buckets import Bucket, BucketEntry, CreateBucket, DeleteBucket
from deoss.chain.modules.gateways import (
    AuthorizeGateway,
    Gateway,
    RegisterGateway,
    RevokeGateway,
)
from tests.unit.chain.harness import Chain, key, setup_network, upload


def test_register_authorize_revoke() -> None:
    chain = Chain()
    chain.run("gw", RegisterGateway(endpoint="http://127.0.0.1:8000"))
    assert Gateway(endpoint="http://127.0.0.1:8000", registered_at=1) == chain.query(
        "/gateways/gateway", Gateway, address=key("gw").address
    )
    chain.run("gw", RegisterGateway(endpoint="https://gw.example:443"))  # endpoint update
    assert (
        "https://gw.example:443"
        == chain.query("/gateways/gateway", Gateway, address=key("gw").address).endpoint
    )
    chain.run("bob", AuthorizeGateway(gateway=key("gw").address))
    assert [key("gw").address] == chain.query(
        "/gateways/authorized", list[str], address=key("bob").address
    )
    chain.run(
        "bob",
        AuthorizeGateway(gateway=key("gw").address),
        valid=False,
        code=errors.AlreadyExists.code,
    )
    chain.run("bob", RevokeGateway(gateway=key("gw").address))
    assert [] == chain.query("/gateways/authorized", list[str], address=key("bob").address)
    chain.run(
        "bob", RevokeGateway(gateway=key("gw").address), valid=False, code=errors.NotFound.code
    )


@pytest.mark.parametrize(
    "endpoint", ["", "ftp://x", "http://", "127.0.0.1:80", "http://a b", "http://" + "a" * 300]
)
def test_bad_endpoints_are_refused(endpoint: str) -> None:
    Chain().run(
        "gw", RegisterGateway(endpoint=endpoint), valid=False, code=errors.InvalidArgument.code
    )


def test_only_registered_gateways_can_be_authorized() -> None:
    Chain().run(
        "bob",
        AuthorizeGateway(gateway=key("carol").address),
        valid=False,
        code=errors.NotFound.code,
    )


def test_bucket_create_list_delete() -> None:
    chain = Chain()
    chain.run("bob", CreateBucket(name="my-bucket.1"))
    chain.run("bob", CreateBucket(name="other"))
    assert ["my-bucket.1", "other"] == [
        b.name for b in chain.query("/buckets/list", list[BucketEntry], owner=key("bob").address)
    ]
    chain.run("bob", CreateBucket(name="other"), valid=False, code=errors.AlreadyExists.code)
    chain.run("bob", DeleteBucket(name="other"))
    chain.run("bob", DeleteBucket(name="other"), valid=False, code=errors.NotFound.code)
    chain.run("carol", CreateBucket(name="my-bucket.1"))  # names are per owner


@pytest.mark.parametrize(
    "name",
    [
        "ab",
        "A-bucket",
        "-start",
        "end-",
        "a..b",
        "a.-b",
        "192.168.1.1",
        "x" * 64,
        "with space",
        "under_score",
    ],
)
def test_bad_bucket_names_are_refused(name: str) -> None:
    Chain().run("bob", CreateBucket(name=name), valid=False, code=errors.InvalidArgument.code)


def test_gateway_acts_only_for_users_who_authorized_it() -> None:
    chain = Chain()
    chain.run("gw", RegisterGateway(endpoint="http://127.0.0.1:8000"))
    chain.run(
        "gw",
        CreateBucket(name="bobs", owner=key("bob").address),
        valid=False,
        code=errors.Unauthorized.code,
    )
    chain.run("bob", AuthorizeGateway(gateway=key("gw").address))
    chain.run("gw", CreateBucket(name="bobs", owner=key("bob").address))
    assert (
        0
        == chain.query(
            "/buckets/bucket", Bucket, owner=key("bob").address, name="bobs"
        ).object_count
    )
    chain.run(
        "gw",
        DeleteBucket(name="bobs", owner=key("carol").address),
        valid=False,
        code=errors.Unauthorized.code,
    )


def test_another_users_bucket_cannot_be_deleted() -> None:
    chain = Chain()
    chain.run("bob", CreateBucket(name="bobs"))
    chain.run("carol", DeleteBucket(name="bobs"), valid=False, code=errors.NotFound.code)
    chain.run(
        "carol",
        DeleteBucket(name="bobs", owner=key("bob").address),
        valid=False,
        code=errors.Unauthorized.code,
    )


def test_bucket_with_objects_cannot_be_deleted() -> None:
    chain = Chain()
    setup_network(chain)
    upload(chain, b"hello")
    chain.run("alice", DeleteBucket(name="photos"), valid=False, code=errors.InvalidTransition.code)
