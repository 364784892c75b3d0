"""Two machines fed the same random blocks of valid and invalid transactions agree byte for byte,
also when one of them restarts from its committed state halfway; balances never go negative."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from deoss.chain.machine import StateMachine
from deoss.chain.modules import accounts, deals, gateways, space
from deoss.chain.modules.accounts import Transfer
from deoss.chain.modules.buckets import CreateBucket, DeleteBucket
from deoss.chain.state import State
from deoss.core import codec
from tests.unit.chain.harness import (
    NAMES,
    Chain,
    declare_call,
    key,
    plan,
    receipts,
    setup_network,
)

PEOPLE = ["alice", "bob", "carol"]

action = st.one_of(
    st.tuples(
        st.just("transfer"),
        st.sampled_from(PEOPLE),
        st.sampled_from(NAMES),
        st.integers(-5, 10**16),
    ),
    st.tuples(st.just("buy"), st.sampled_from(PEOPLE), st.integers(0, 3), st.integers(0, 3)),
    st.tuples(st.just("bucket"), st.sampled_from(PEOPLE), st.sampled_from(["aaa", "bbb", "B"])),
    st.tuples(st.just("unbucket"), st.sampled_from(PEOPLE), st.sampled_from(["aaa", "photos"])),
    st.tuples(st.just("declare"), st.sampled_from(PEOPLE), st.binary(max_size=9000)),
    st.tuples(st.just("report"), st.integers(0, 5)),
    st.tuples(st.just("reassign"), st.sampled_from(PEOPLE), st.integers(0, 5)),
    st.tuples(st.just("authorize"), st.sampled_from(PEOPLE)),
    st.tuples(st.just("garbage"), st.binary(max_size=40)),
    st.tuples(st.just("replay")),
)


def build(chain: Chain, act: tuple[Any, ...], sent: list[bytes]) -> bytes:
    kind = act[0]
    if kind == "transfer":
        return chain.tx(act[1], Transfer(to=key(act[2]).address, amount=act[3]))
    if kind == "buy":
        return chain.tx(act[1], space.BuySpace(gib=act[2], days=act[3]))
    if kind == "bucket":
        return chain.tx(act[1], CreateBucket(name=act[2]))
    if kind == "unbucket":
        return chain.tx(act[1], DeleteBucket(name=act[2]))
    if kind == "declare":
        return chain.tx(act[1], declare_call(plan(act[2], chain), name=f"o{len(act[2])}"))
    if kind == "report":
        deal = deals.get_deal(chain.machine.state, act[1])
        who = "sched0" if deal is None or deal.scheduler != key("sched1").public_key else "sched1"
        p = plan(b"", chain) if deal is None else None
        placements = receipts(chain, act[1], p) if p else []
        if deal is not None:
            from deoss.core.layout import ObjectPlan

            q = ObjectPlan(
                size=deal.size, fid=deal.fid, params=chain.params.layout, segments=deal.segments
            )
            placements = receipts(chain, act[1], q)
        return chain.tx(who, deals.ReportDeal(deal_id=act[1], placements=placements))
    if kind == "reassign":
        return chain.tx(act[1], deals.ReassignDeal(deal_id=act[2]))
    if kind == "authorize":
        return chain.tx(act[1], gateways.AuthorizeGateway(gateway=key("gw").address))
    if kind == "garbage":
        return act[1]
    return sent[0] if sent else b""


def play(blocks: list[list[tuple[Any, ...]]], restart_at: int | None = None) -> Chain:
    chain = Chain()
    setup_network(chain)
    sent: list[bytes] = []
    for number, block in enumerate(blocks):
        if number == restart_at:
            chain.machine = StateMachine(State(dict(chain.machine.state.committed_items())))
        txs = [build(chain, act, sent) for act in block]
        sent.extend(txs)
        chain.block(*txs)
    return chain


@settings(max_examples=15)
@given(st.lists(st.lists(action, max_size=6), min_size=1, max_size=6), st.data())
def test_replays_agree_byte_for_byte(
    blocks: list[list[tuple[Any, ...]]], data: st.DataObject
) -> None:
    first = play(blocks)
    second = play(blocks, restart_at=data.draw(st.integers(0, len(blocks) - 1)))
    assert first.machine.info() == second.machine.info()
    assert dict(first.machine.state.committed_items()) == dict(
        second.machine.state.committed_items()
    )
    for key_bytes, raw in first.machine.state.committed_items():
        if key_bytes.startswith(accounts.PREFIX):
            assert codec.decode(raw, accounts.Account).balance >= 0
        if key_bytes.startswith(space.PREFIX):
            lease = codec.decode(raw, space.Lease)
            assert min(lease.used_bytes, lease.locked_bytes, lease.free_bytes) >= 0
