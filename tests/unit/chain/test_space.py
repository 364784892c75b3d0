"""Space: buy, expand, renew; frozen at the deadline; files removed after the grace period."""

from __future__ import annotations

import pytest

from deoss.chain import errors
from deoss.chain.modules import space
from deoss.chain.modules.accounts import Account
from deoss.chain.modules.buckets import CreateBucket
from deoss.chain.modules.files import ObjectEntry
from deoss.chain.modules.space import BuySpace, ExpandSpace, Lease, LeaseState, RenewSpace
from deoss.core.keys import KeyPair
from tests.unit.chain.harness import BALANCE, Chain, GiB, key, setup_network, upload

PRICE = 1_000  # default price_per_gib_day


def lease(chain: Chain, who: str = "bob") -> Lease:
    return chain.query("/space/lease", Lease, address=key(who).address)


def test_buy_charges_gib_times_days_times_price() -> None:
    chain = Chain(tx_fee=0, state_byte_price=0)  # exact amounts; fees: test_fees.py
    chain.run("bob", BuySpace(gib=3, days=2))
    assert Lease(total_bytes=3 * GiB, expires_at=1 + 2 * 100) == lease(chain)
    assert (
        BALANCE - 3 * 2 * PRICE
        == chain.query("/accounts/account", Account, address=key("bob").address).balance
    )


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (BuySpace(gib=0, days=1), errors.InvalidArgument.code),
        (BuySpace(gib=1, days=0), errors.InvalidArgument.code),
        (BuySpace(gib=10**12, days=1), errors.InvalidArgument.code),
    ],
)
def test_bad_purchases_are_refused(call: BuySpace, code: int) -> None:
    Chain().run("bob", call, valid=False, code=code)


def test_purchase_without_funds_is_refused() -> None:
    pauper = KeyPair.from_seed(b"p" * 32)
    Chain().run(pauper, BuySpace(gib=1, days=1), valid=False, code=errors.InsufficientFunds.code)


def test_second_purchase_is_refused_expand_and_renew_instead() -> None:
    chain = Chain()
    chain.run("bob", BuySpace(gib=1, days=2))
    chain.run("bob", BuySpace(gib=1, days=2), valid=False, code=errors.AlreadyExists.code)
    chain.run("bob", ExpandSpace(gib=2))
    assert 3 * GiB == lease(chain).total_bytes
    chain.run("bob", RenewSpace(days=1))
    assert 1 + 3 * 100 == lease(chain).expires_at


def test_expand_and_renew_need_a_lease() -> None:
    chain = Chain()
    chain.run("bob", ExpandSpace(gib=1), valid=False, code=errors.NotFound.code)
    chain.run("bob", RenewSpace(days=1), valid=False, code=errors.NotFound.code)


def test_lease_freezes_at_deadline_and_renewal_unfreezes() -> None:
    chain = Chain()
    chain.run("bob", BuySpace(gib=1, days=1))  # expires at 101
    chain.advance(99)
    assert LeaseState.ACTIVE == lease(chain).state
    outcome = chain.block()
    assert [{"owner": key("bob").address}] == chain.events(outcome, "space.frozen")
    assert LeaseState.FROZEN == lease(chain).state
    chain.run("bob", ExpandSpace(gib=1), valid=False, code=errors.InsufficientSpace.code)
    chain.run("bob", RenewSpace(days=1))  # at height 103: the frozen days are not paid for
    assert (LeaseState.ACTIVE, 103 + 100) == (lease(chain).state, lease(chain).expires_at)
    chain.advance(80)
    assert LeaseState.ACTIVE == lease(chain).state  # the old grace step no longer fires


def test_files_are_removed_after_grace_a_few_per_block_then_the_lease() -> None:
    chain = Chain()
    setup_network(chain)
    for i in range(5):
        upload(chain, bytes([i]) * 100, name=f"obj{i}")
    expires = lease(chain, "alice").expires_at
    chain.advance(expires - chain.height)
    assert LeaseState.FROZEN == lease(chain, "alice").state
    chain.run("alice", CreateBucket(name="more"))  # buckets still work while frozen
    removed = {}
    for _ in range(chain.params.space_grace_blocks + 5):
        outcome = chain.block()
        if count := len(chain.events(outcome, "object.expired")):
            removed[outcome.height] = count
    start = expires + chain.params.space_grace_blocks
    assert {start: 2, start + 1: 2, start + 2: 1} == removed
    assert [] == chain.query(
        "/files/objects", list[ObjectEntry], owner=key("alice").address, bucket="photos"
    )
    assert 0 != chain.query_code("/space/lease", address=key("alice").address)


def test_lock_refuses_frozen_missing_and_full_space() -> None:
    from deoss.chain.state import State

    state = State()
    owner = key("bob").public_key
    with pytest.raises(errors.InsufficientSpace, match="bought no space"):
        space.lock(state, owner, 1)
    from deoss.chain.state import put_record

    put_record(state, space.PREFIX + owner, Lease(total_bytes=10, expires_at=5))
    with pytest.raises(errors.InsufficientSpace, match="11 bytes, 10 free"):
        space.lock(state, owner, 11)
    space.lock(state, owner, 10)
    put_record(
        state, space.PREFIX + owner, Lease(total_bytes=10, expires_at=5, state=LeaseState.FROZEN)
    )
    with pytest.raises(errors.InsufficientSpace, match="frozen"):
        space.lock(state, owner, 1)
