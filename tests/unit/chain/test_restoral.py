"""Restoral: orders from reported losses and exits, claims, completion, deadlines."""

from __future__ import annotations

import pytest

from deoss.chain import errors
from deoss.chain.modules.accounts import Account
from deoss.chain.modules.files import DeleteObject, FileRecord
from deoss.chain.modules.miners import ExitMiner, Miner, MinerState
from deoss.chain.modules.restoral import (
    ClaimOrder,
    CompleteOrder,
    Order,
    OrderState,
    ReportLoss,
)
from deoss.core.layout import ObjectPlan
from tests.unit.chain.harness import Chain, key, setup_network, upload

DATA = bytes(range(256)) * 20


@pytest.fixture
def stored() -> tuple[Chain, ObjectPlan]:
    chain = Chain()
    setup_network(chain, miner_count=14)
    _, p = upload(chain, DATA)
    return chain, p


def orders(chain: Chain) -> list[Order]:
    return chain.query("/restoral/orders", list[Order])


def miner(chain: Chain, who: str) -> Miner:
    return chain.query("/miners/miner", Miner, address=key(who).address)


def test_reported_loss_is_rebuilt_on_another_miner(stored: tuple[Chain, ObjectPlan]) -> None:
    chain, p = stored
    result = chain.run("miner3", ReportLoss(fid=p.fid, segment=1, fragment=3))
    assert "reported loss" == chain.events(result, "restoral.order")[0]["reason"]
    (order,) = orders(chain)
    assert (1, 3, key("miner3").public_key) == (order.segment, order.fragment, order.former)
    chain.run("miner12", ClaimOrder(order_id=order.id))
    assert 256 == miner(chain, "miner12").locked_bytes
    chain.run(
        "miner12", CompleteOrder(order_id=order.id, fragment_hash=p.segments[1].fragment_hashes[3])
    )
    record = chain.query("/files/file", FileRecord, fid=p.fid)
    assert key("miner12").public_key == record.holders[1][3]
    assert len(set(record.holders[1])) == 12
    assert (0, 256) == (miner(chain, "miner12").locked_bytes, miner(chain, "miner12").service_bytes)
    assert 1024 == miner(chain, "miner3").service_bytes
    assert [] == orders(chain)


def test_loss_report_needs_the_holder(stored: tuple[Chain, ObjectPlan]) -> None:
    chain, p = stored
    chain.run(
        "miner12",
        ReportLoss(fid=p.fid, segment=0, fragment=0),
        valid=False,
        code=errors.NotFound.code,
    )
    chain.run(
        "miner0",
        ReportLoss(fid=p.fid, segment=0, fragment=1),
        valid=False,
        code=errors.NotFound.code,
    )
    chain.run(
        "miner0",
        ReportLoss(fid="zz", segment=0, fragment=0),
        valid=False,
        code=errors.InvalidArgument.code,
    )


def test_claim_rules(stored: tuple[Chain, ObjectPlan]) -> None:
    chain, p = stored
    chain.run("miner3", ReportLoss(fid=p.fid, segment=0, fragment=3))
    (order,) = orders(chain)
    chain.run(
        "miner4", ClaimOrder(order_id=order.id), valid=False, code=errors.Unauthorized.code
    )  # holds a fragment of that segment
    chain.run("bob", ClaimOrder(order_id=order.id), valid=False, code=errors.NotFound.code)
    chain.run("miner12", ClaimOrder(order_id=99), valid=False, code=errors.NotFound.code)
    chain.run("miner12", ClaimOrder(order_id=order.id))
    chain.run(
        "miner13", ClaimOrder(order_id=order.id), valid=False, code=errors.InvalidTransition.code
    )


def test_completion_rules(stored: tuple[Chain, ObjectPlan]) -> None:
    chain, p = stored
    chain.run("miner3", ReportLoss(fid=p.fid, segment=0, fragment=3))
    (order,) = orders(chain)
    chain.run("miner12", ClaimOrder(order_id=order.id))
    right = p.segments[0].fragment_hashes[3]
    chain.run(
        "miner12",
        CompleteOrder(order_id=order.id, fragment_hash=bytes(32)),
        valid=False,
        code=errors.BadReport.code,
    )
    chain.run(
        "miner13",
        CompleteOrder(order_id=order.id, fragment_hash=right),
        valid=False,
        code=errors.Unauthorized.code,
    )
    assert (
        key("miner3").public_key == chain.query("/files/file", FileRecord, fid=p.fid).holders[0][3]
    )


def test_missed_claim_deadline_reopens_the_order(stored: tuple[Chain, ObjectPlan]) -> None:
    chain, p = stored
    chain.run("miner3", ReportLoss(fid=p.fid, segment=0, fragment=3))
    (order,) = orders(chain)
    chain.run("miner12", ClaimOrder(order_id=order.id))
    chain.advance(chain.params.restoral_deadline_blocks + 1)  # the deadline hook has fired
    chain.run(
        "miner12",
        CompleteOrder(order_id=order.id, fragment_hash=p.segments[0].fragment_hashes[3]),
        valid=False,
        code=errors.Unauthorized.code,
    )
    (order,) = orders(chain)
    assert (OrderState.OPEN, 0) == (order.state, miner(chain, "miner12").locked_bytes)
    chain.run("miner13", ClaimOrder(order_id=order.id))
    chain.run(
        "miner13", CompleteOrder(order_id=order.id, fragment_hash=p.segments[0].fragment_hashes[3])
    )


def test_exit_moves_every_fragment_then_returns_the_stake(
    stored: tuple[Chain, ObjectPlan],
) -> None:
    chain, p = stored
    chain.run("miner0", ExitMiner())
    assert MinerState.EXITING == miner(chain, "miner0").state
    pending = orders(chain)
    assert [(0, 0), (1, 0)] == [(o.segment, o.fragment) for o in pending]
    balance = chain.query("/accounts/account", Account, address=key("miner0").address).balance
    stake = miner(chain, "miner0").stake
    for o in pending:
        chain.run("miner12", ClaimOrder(order_id=o.id))
        chain.run(
            "miner12",
            CompleteOrder(order_id=o.id, fragment_hash=p.segments[o.segment].fragment_hashes[0]),
        )
    assert (MinerState.EXITED, 0) == (miner(chain, "miner0").state, miner(chain, "miner0").stake)
    assert (
        balance + stake
        == chain.query("/accounts/account", Account, address=key("miner0").address).balance
    )


def test_orders_of_a_deleted_file_are_cancelled(stored: tuple[Chain, ObjectPlan]) -> None:
    chain, p = stored
    chain.run("miner3", ReportLoss(fid=p.fid, segment=0, fragment=3))
    (order,) = orders(chain)
    chain.run("miner12", ClaimOrder(order_id=order.id))
    result = chain.block(chain.tx("alice", DeleteObject(bucket="photos", name="cat.jpg")))
    assert [{"id": str(order.id)}] == chain.events(result, "restoral.cancelled")
    assert [] == orders(chain)
    assert 0 == miner(chain, "miner12").locked_bytes
