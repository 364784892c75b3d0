"""Gateways, authorization, and buckets with S3 names and ownership."""

from __future__ import annotations

import pytest

from deoss.chain import errors
from deoss.chain.modules.accounts import Account
from deoss.chain.modules.buckets import Bucket, BucketEntry, CreateBucket, DeleteBucket
from deoss.chain.modules.gateways import (
    AuthorizeGateway,
    Gateway,
    RegisterGateway,
    RevokeGateway,
)
from tests.unit.chain.harness import Chain, key, setup_network, upload


def register(chain: Chain, who: str = "gw") -> None:
    chain.run(who, RegisterGateway(endpoint="http://127.0.0.1:8000", stake=STAKE))


STAKE = Chain().params.gateway_stake


def test_registration_reserves_the_gateway_stake() -> None:
    """A free gateway identity would make per-reader limits and authorizations cheap to dodge:
    registering reserves at least gateway_stake from the balance (refused below it, nothing
    changed); an endpoint update needs no more; a later stake adds to it."""
    chain = Chain(tx_fee=0, state_byte_price=0)  # exact amounts; fees: test_fees.py
    before = chain.query("/accounts/account", Account, address=key("gw").address).balance
    for stake in (0, STAKE - 1):
        refused = chain.run(
            "gw",
            RegisterGateway(endpoint="http://127.0.0.1:8000", stake=stake),
            valid=False,
            code=errors.InvalidArgument.code,
        )
        assert f"at least {STAKE}" in refused.log
    assert 0 != chain.query_code("/gateways/gateway", address=key("gw").address)
    register(chain)
    assert Gateway(endpoint="http://127.0.0.1:8000", registered_at=3, stake=STAKE) == chain.query(
        "/gateways/gateway", Gateway, address=key("gw").address
    )
    balance = chain.query("/accounts/account", Account, address=key("gw").address).balance
    assert before - STAKE == balance
    chain.run("gw", RegisterGateway(endpoint="https://gw.example:443"))  # no more stake
    chain.run("gw", RegisterGateway(endpoint="https://gw.example:443", stake=5))
    gateway = chain.query("/gateways/gateway", Gateway, address=key("gw").address)
    assert (3, STAKE + 5) == (gateway.registered_at, gateway.stake)
    chain.run(
        "gw",
        RegisterGateway(endpoint="https://gw.example:443", stake=-1),
        valid=False,
        code=errors.InvalidArgument.code,
    )
    poor = chain.run(
        "gw",
        RegisterGateway(endpoint="https://gw.example:443", stake=2**62),
        valid=False,
    )
    assert "balance" in poor.log or "funds" in poor.log.lower()


def test_register_authorize_revoke() -> None:
    chain = Chain()
    register(chain)
    assert Gateway(endpoint="http://127.0.0.1:8000", registered_at=1, stake=STAKE) == chain.query(
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
    register(chain)
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
