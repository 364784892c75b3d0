"""Scheduler and miner registration, stake, capacity and exit."""

from __future__ import annotations

import pytest

from deoss.chain import errors
from deoss.chain.genesis import TiB
from deoss.chain.modules.accounts import Account
from deoss.chain.modules.miners import (
    AddStake,
    ExitMiner,
    Miner,
    MinerEntry,
    MinerState,
    RegisterMiner,
    UpdateMiner,
)
from deoss.chain.modules.schedulers import RegisterScheduler, Scheduler, UpdateScheduler
from deoss.core.podr2 import TagKey, TagPublicKey
from tests.unit.chain.harness import BALANCE, SECTORS, Chain, key, tag_key

MIN = 10_000_000  # scheduler_min_stake


def register(chain: Chain, who: str = "sched0", **changes: object) -> None:
    fields = {"endpoint": "http://127.0.0.1:9000", "stake": MIN, "tag_key": tag_key(who).public}
    fields.update(changes)
    chain.run(who, RegisterScheduler(**fields))  # type: ignore[arg-type]


def test_scheduler_registers_with_stake_and_tag_key() -> None:
    chain = Chain(tx_fee=0, state_byte_price=0)  # exact amounts; fees: test_fees.py
    register(chain)
    scheduler = chain.query("/schedulers/scheduler", Scheduler, address=key("sched0").address)
    assert (MIN, tag_key("sched0").public) == (scheduler.stake, scheduler.tag_key)
    assert (
        BALANCE - MIN
        == chain.query("/accounts/account", Account, address=key("sched0").address).balance
    )
    chain.run("sched0", UpdateScheduler(endpoint="http://127.0.0.1:9999"))
    assert (
        "http://127.0.0.1:9999"
        == chain.query("/schedulers/scheduler", Scheduler, address=key("sched0").address).endpoint
    )


def test_a_tag_key_is_found_by_its_id_whoever_registered_it() -> None:
    """Miners read the key that tagged a file by the file's tag key id (a tagger gone for good
    keeps its record, so its key stays readable); bad or unknown ids are refused."""
    chain = Chain()
    register(chain)
    register(chain, "sched1")
    for who in ("sched0", "sched1"):
        public = tag_key(who).public
        assert public == chain.query(
            "/schedulers/tag_key", TagPublicKey, key_id=public.key_id.hex()
        )
    unknown = tag_key("sched2").public.key_id.hex()
    assert errors.NotFound.code == chain.query_code("/schedulers/tag_key", key_id=unknown)
    for bad in ("", "zz" * 32, "ab" * 31):
        assert errors.InvalidArgument.code == chain.query_code("/schedulers/tag_key", key_id=bad)


def bad_scheduler_cases() -> list[tuple[dict[str, object], int]]:
    own = tag_key("sched0").public
    other = tag_key("sched1").public
    stolen_pop = TagPublicKey(v=other.v, sectors_per_block=SECTORS, pop=own.pop)
    wrong_s = TagKey.from_secret((7).to_bytes(32, "little"), SECTORS + 1).public
    return [
        ({"stake": MIN - 1}, errors.InvalidArgument.code),
        ({"stake": BALANCE + 1}, errors.InsufficientFunds.code),
        ({"endpoint": "nope"}, errors.InvalidArgument.code),
        ({"tag_key": stolen_pop}, errors.InvalidArgument.code),
        ({"tag_key": wrong_s}, errors.InvalidArgument.code),
    ]


@pytest.mark.parametrize(("changes", "code"), bad_scheduler_cases())
def test_bad_scheduler_registrations_are_refused(changes: dict[str, object], code: int) -> None:
    chain = Chain()
    fields = {
        "endpoint": "http://127.0.0.1:9000",
        "stake": MIN,
        "tag_key": tag_key("sched0").public,
        **changes,
    }
    chain.run("sched0", RegisterScheduler(**fields), valid=False, code=code)  # type: ignore[arg-type]


def test_scheduler_cannot_register_twice_or_reuse_a_key() -> None:
    chain = Chain()
    register(chain)
    chain.run(
        "sched0",
        RegisterScheduler(endpoint="http://a:1", stake=MIN, tag_key=tag_key("sched1").public),
        valid=False,
        code=errors.AlreadyExists.code,
    )
    chain.run(
        "sched1",
        RegisterScheduler(endpoint="http://a:1", stake=MIN, tag_key=tag_key("sched0").public),
        valid=False,
        code=errors.AlreadyExists.code,
    )


def test_miner_registers_with_stake_covering_capacity() -> None:
    chain = Chain()
    per_tib = chain.params.stake_per_tib
    chain.run(
        "miner0",
        RegisterMiner(endpoint="http://127.0.0.1:9100", capacity_bytes=2 * TiB, stake=2 * per_tib),
    )
    miner = chain.query("/miners/miner", Miner, address=key("miner0").address)
    assert (2 * TiB, 2 * TiB, MinerState.ACTIVE) == (
        miner.capacity_bytes,
        miner.idle_bytes,
        miner.state,
    )
    chain.run(
        "miner1",
        RegisterMiner(
            endpoint="http://127.0.0.1:9101", capacity_bytes=2 * TiB + 1, stake=2 * per_tib
        ),
        valid=False,
        code=errors.InvalidArgument.code,
    )
    chain.run(
        "miner0",
        RegisterMiner(endpoint="http://x:1", capacity_bytes=1, stake=per_tib),
        valid=False,
        code=errors.AlreadyExists.code,
    )
    chain.run(
        "miner2",
        RegisterMiner(endpoint="http://x:1", capacity_bytes=0, stake=per_tib),
        valid=False,
        code=errors.InvalidArgument.code,
    )
    assert 1 == len(chain.query("/miners/list", list[MinerEntry]))


def test_miner_update_stake_and_exit() -> None:
    chain = Chain(tx_fee=0, state_byte_price=0)  # exact amounts; fees: test_fees.py
    chain.run(
        "miner0",
        RegisterMiner(endpoint="http://x:1", capacity_bytes=TiB, stake=chain.params.stake_per_tib),
    )
    chain.run("miner0", UpdateMiner(endpoint="http://y:2"))
    chain.run("miner0", AddStake(amount=5))
    chain.run("miner0", AddStake(amount=0), valid=False, code=errors.InvalidArgument.code)
    chain.run("miner1", UpdateMiner(endpoint="http://y:2"), valid=False, code=errors.NotFound.code)
    balance_before = chain.query("/accounts/account", Account, address=key("miner0").address)
    chain.run("miner0", ExitMiner())
    # nothing held: the exit completes at the end of the same block and the stake comes back
    miner = chain.query("/miners/miner", Miner, address=key("miner0").address)
    assert (MinerState.EXITED, 0) == (miner.state, miner.stake)
    balance = chain.query("/accounts/account", Account, address=key("miner0").address).balance
    assert balance_before.balance + chain.params.stake_per_tib + 5 == balance
    chain.run("miner0", ExitMiner(), valid=False, code=errors.InvalidTransition.code)
