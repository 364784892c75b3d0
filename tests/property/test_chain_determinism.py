"""Two machines fed the same random blocks of valid and invalid transactions (accounts, space,
buckets, deals and their reports, gateways, miners, tagging with all, k, no or forged tag
confirmations, late confirmations, audit proofs good and bad, restoral)
agree on the app hash after every block and byte for byte at the end, also when one of them
restarts from its committed state halfway; balances never go negative."""

from __future__ import annotations

from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from deoss.chain.machine import StateMachine
from deoss.chain.modules import accounts, deals, files, gateways, miners, restoral, space, tagging
from deoss.chain.modules.accounts import Transfer
from deoss.chain.modules.audit import SubmitProof
from deoss.chain.modules.buckets import CreateBucket, DeleteBucket
from deoss.chain.modules.tagging import ReportTagged
from deoss.chain.state import State
from deoss.core import codec
from tests.unit.chain.harness import (
    MINER_NAMES,
    NAMES,
    Chain,
    GiB,
    MinerDisk,
    answer_challenge,
    declare_call,
    key,
    plan,
    receipts,
    report_tagged,
    scheduler_name,
    setup_network,
    upload,
)

PEOPLE = ["alice", "bob", "carol"]
# Short audit rounds so that a few blocks see a round open, answers, and settlement; a short
# confirmation deadline so that unconfirmed holdings get released within a stream.
PARAMS = {"challenge_interval_blocks": 3, "proof_deadline_blocks": 2, "tag_confirm_blocks": 6}
MINERS = st.sampled_from(MINER_NAMES)
SEED = bytes(range(256)) * 16

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
    st.tuples(st.just("register"), MINERS, st.sampled_from([GiB, 2 * GiB, 0])),
    st.tuples(st.just("stake"), MINERS, st.integers(-1, 10**12)),
    st.tuples(st.just("exit"), MINERS),
    st.tuples(st.just("recover"), MINERS),
    st.tuples(st.just("tag"), st.integers(0, 5), st.sampled_from(["all", "k", "none", "forged"])),
    st.tuples(st.just("confirm"), MINERS, st.integers(0, 2), st.booleans()),
    st.tuples(st.just("prove"), MINERS, st.booleans()),
    st.tuples(
        st.just("loss"),
        MINERS,
        st.integers(0, 5),
        st.integers(0, 1),
        st.none() | st.integers(0, 12),  # None: the fragment the miner holds, if any
    ),
    st.tuples(st.just("claim"), MINERS, st.integers(0, 3)),
    st.tuples(st.just("complete"), MINERS, st.integers(0, 3), st.booleans(), st.booleans()),
)


class Disk(MinerDisk):
    """What every miner keeps, plus the bytes of each declared object (to tag them)."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: dict[str, bytes] = {}


def fid_of(chain: Chain, deal_id: int) -> str:
    deal = deals.get_deal(chain.machine.state, deal_id)
    return deal.fid if deal is not None else "zz"


def build(chain: Chain, act: tuple[Any, ...], sent: list[bytes], disk: Disk) -> bytes:
    kind = act[0]
    if kind == "register":
        stake = chain.params.stake_per_tib
        return chain.tx(
            act[1],
            miners.RegisterMiner(endpoint="http://127.0.0.1:1", capacity_bytes=act[2], stake=stake),
        )
    if kind == "stake":
        return chain.tx(act[1], miners.AddStake(amount=act[2]))
    if kind == "exit":
        return chain.tx(act[1], miners.ExitMiner())
    if kind == "recover":
        return chain.tx(act[1], miners.RecoverMiner())
    if kind == "tag":
        deal = deals.get_deal(chain.machine.state, act[1])
        if deal is None:
            return chain.tx("sched0", ReportTagged(fid="zz"))
        tagger = scheduler_name(deal.scheduler)
        data = disk.sources.get(deal.fid)
        if data is not None:  # the miners keep what the tagger tags (cheap: few small objects)
            disk.store(chain, data, tagger)
        if files.get_file(chain.machine.state, deal.fid) is None or act[2] == "none":
            return chain.tx(tagger, ReportTagged(fid=deal.fid))
        if act[2] == "forged":  # signed by one miner for every holder
            return chain.tx(tagger, report_tagged(chain, deal.fid, tagger, signer="miner0"))
        k = chain.params.layout.data_shards
        only = {(s.index, i) for s in deal.segments for i in range(k)} if act[2] == "k" else None
        return chain.tx(tagger, report_tagged(chain, deal.fid, tagger, only=only))
    if kind == "confirm":
        fid = fid_of(chain, act[2])
        record = files.get_file(chain.machine.state, fid) if fid != "zz" else None
        mine = key(act[1]).public_key
        held = [i for i, row in enumerate(record.holders) if mine in row] if record else []
        key_id = record.tag_key_id if record and act[3] else bytes(32)
        return chain.tx(act[1], tagging.ConfirmTags(fid=fid, key_id=key_id, segments=held or [0]))
    if kind == "prove":
        answer = answer_challenge(chain, disk, act[1], corrupt=not act[2])
        event(f"proof built: {answer is not None}")
        return chain.tx(act[1], answer or SubmitProof(round=0, proofs=[]))
    if kind == "loss":
        fid, segment, fragment = fid_of(chain, act[2]), act[3], act[4]
        record = files.get_file(chain.machine.state, fid) if fid != "zz" else None
        owners = record.holders[segment] if record and segment < len(record.holders) else []
        if fragment is None:
            mine = key(act[1]).public_key
            fragment = owners.index(mine) if mine in owners else 0
        call = restoral.ReportLoss(fid=fid, segment=segment, fragment=fragment)
        return chain.tx(act[1], call)
    if kind == "claim":
        return chain.tx(act[1], restoral.ClaimOrder(order_id=act[2]))
    if kind == "complete":
        order = restoral.get_order(chain.machine.state, act[2])
        event(f"order exists: {order is not None}")
        right = order.fragment_hash if order is not None else bytes(32)
        digest = right if act[3] else bytes(32)
        record = files.get_file(chain.machine.state, order.fid) if order is not None else None
        key_id = record.tag_key_id if record is not None and act[4] else b""
        done = restoral.CompleteOrder(order_id=act[2], fragment_hash=digest, tag_key_id=key_id)
        return chain.tx(act[1], done)
    if kind == "transfer":
        return chain.tx(act[1], Transfer(to=key(act[2]).address, amount=act[3]))
    if kind == "buy":
        return chain.tx(act[1], space.BuySpace(gib=act[2], days=act[3]))
    if kind == "bucket":
        return chain.tx(act[1], CreateBucket(name=act[2]))
    if kind == "unbucket":
        return chain.tx(act[1], DeleteBucket(name=act[2]))
    if kind == "declare":
        p = plan(act[2], chain)
        disk.sources.setdefault(p.fid, act[2])
        return chain.tx(act[1], declare_call(p, name=f"o{len(act[2])}"))
    if kind == "report":
        deal = deals.get_deal(chain.machine.state, act[1])
        who = "sched0" if deal is None or deal.scheduler != key("sched1").public_key else "sched1"
        blank = plan(b"", chain) if deal is None else None
        placements = receipts(chain, act[1], blank) if blank else []
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
        garbage: bytes = act[1]  # raw bytes the test sends as a transaction
        return garbage
    return sent[0] if sent else b""


_START: list[tuple[dict[bytes, bytes], Disk]] = []


def start() -> tuple[Chain, Disk]:
    """A network with one stored, tagged object (k holders per segment confirmed), so that audit
    rounds challenge miners, late confirmations and releases happen, and losses open restoral
    orders without the stream having to build them first (built once:
    tagging is slow; every play starts from a copy of its committed state)."""
    if not _START:
        chain = Chain(**PARAMS)
        setup_network(chain)
        disk = Disk()
        deal, p = upload(chain, SEED, "seed")
        disk.sources[p.fid] = SEED
        disk.store(chain, SEED, scheduler_name(deal.scheduler))
        tagger = scheduler_name(deal.scheduler)
        # only k holders per segment confirm: the others confirm in the stream or are released
        k = chain.params.layout.data_shards
        only = {(s.index, i) for s in p.segments for i in range(k)}
        chain.run(tagger, report_tagged(chain, p.fid, tagger, only=only))
        _START.append((dict(chain.machine.state.committed_items()), disk))
    items, template = _START[0]
    chain = Chain(**PARAMS)
    chain.machine = StateMachine(State(dict(items)))
    disk = Disk()
    disk.fragments, disk.tags = dict(template.fragments), dict(template.tags)
    disk.sources = dict(template.sources)
    return chain, disk


def play(
    blocks: list[list[tuple[Any, ...]]], restart_at: int | None = None
) -> tuple[Chain, list[tuple[int, bytes]]]:
    """Run the blocks; returns the chain and its ``info()`` (height, app hash) after each."""
    chain, disk = start()
    sent: list[bytes] = []
    infos = [chain.machine.info()]
    for number, block in enumerate(blocks):
        if number == restart_at:
            chain.machine = StateMachine(State(dict(chain.machine.state.committed_items())))
        txs = [build(chain, act, sent, disk) for act in block]
        sent.extend(txs)
        chain.block(*txs)
        infos.append(chain.machine.info())
    return chain, infos


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(action, max_size=6), min_size=1, max_size=8), st.data())
def test_replays_agree_byte_for_byte(
    blocks: list[list[tuple[Any, ...]]], data: st.DataObject
) -> None:
    first, first_infos = play(blocks)
    second, second_infos = play(blocks, restart_at=data.draw(st.integers(0, len(blocks) - 1)))
    for mine, theirs in zip(first_infos, second_infos, strict=True):
        assert mine == theirs, f"app hashes diverge at height {mine[0]}"
    assert dict(first.machine.state.committed_items()) == dict(
        second.machine.state.committed_items()
    )
    for key_bytes, raw in first.machine.state.committed_items():
        if key_bytes.startswith(accounts.PREFIX):
            assert codec.decode(raw, accounts.Account).balance >= 0
        if key_bytes.startswith(space.PREFIX):
            lease = codec.decode(raw, space.Lease)
            assert min(lease.used_bytes, lease.locked_bytes, lease.free_bytes) >= 0
