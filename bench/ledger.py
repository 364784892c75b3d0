"""Benchmark of the ledger's heavy calls: full deal cycles and proof verification in a block.

1. Deal cycles in-process: ``deals.declare`` by a user, assignment at the end of that block,
   ``deals.report`` (12 miner receipts) by the assigned scheduler in the next block; blocks
   carry the declarations of new deals and the reports of the previous block's deals. Cycles
   per second = deals reaching SUCCESS / time in finalize_block + commit. Signing (the user's,
   the scheduler's, the miners' receipts) happens before the clock starts.
2. Deal cycles through the RPC of a real node (blocks every 100 ms): the same cycle with
   ``ChainClient.submit`` waiting for inclusion, many deals at once.
3. Proof verification inside a block: 12 miners each hold 70 tagged fragments (default PoDR²
   parameters: s = 512, 64 fragments × 1 block per challenge); the time of ``finalize_block``
   for a block of 12 ``audit.submit_proof`` transactions, minus an empty block, per proof.

Run: ``.venv/bin/python bench/ledger.py [--quick]``, or through ``bench/chain.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from deoss.chain.calls import sign_tx
from deoss.chain.genesis import ChainParams, Genesis, GenesisAccount
from deoss.chain.machine import StateMachine
from deoss.chain.modules import audit, deals, declare, miners, schedulers, space, tagging, tags
from deoss.chain.modules.buckets import CreateBucket
from deoss.chain.types import BlockHeader, Call
from deoss.core import codec
from deoss.core.keys import KeyPair
from deoss.core.layout import ObjectPlan, iter_encoded_segments, plan_object
from deoss.core.podr2 import TagKey, block_span, prove

CHAIN_ID = "bench-ledger"
GiB = 1024**3


def _key(name: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(name.encode()).digest())


USER, SCHEDULER = _key("user"), _key("scheduler")
MINERS = [_key(f"miner{i}") for i in range(12)]


class Ledger:
    """A machine driven block by block, with per-key nonces for pre-signed transactions."""

    def __init__(self, params: ChainParams) -> None:
        self.params = params
        self.machine = StateMachine()
        everyone = [USER, SCHEDULER, *MINERS]
        self.machine.init_chain(
            Genesis(
                chain_id=CHAIN_ID,
                genesis_time_ns=0,
                params=params,
                treasury=10**15,
                accounts=[GenesisAccount(address=k.address, balance=10**18) for k in everyone],
            )
        )
        self.nonces: dict[bytes, int] = {}

    def tx(self, key: KeyPair, call: Call) -> bytes:
        nonce = self.nonces.get(key.public_key, 0)
        self.nonces[key.public_key] = nonce + 1
        return sign_tx(key, CHAIN_ID, nonce, call)

    def block(self, txs: list[bytes]) -> float:
        """Run one block; returns the seconds of finalize_block + commit."""
        height = self.machine.height + 1
        header = BlockHeader(
            chain_id=CHAIN_ID,
            height=height,
            time_ns=height * 10**9,
            hash=hashlib.sha256(height.to_bytes(8, "big")).digest(),
        )
        start = time.perf_counter()
        outcome = self.machine.finalize_block(header, txs)
        self.machine.commit()
        elapsed = time.perf_counter() - start
        failed = [r.log for r in outcome.tx_results if r.code]
        if failed:
            raise RuntimeError(f"block {height}: {failed[:3]}")
        return elapsed


def setup(ledger: Ledger, tag_key: TagKey) -> None:
    txs = [
        ledger.tx(
            SCHEDULER,
            schedulers.RegisterScheduler(
                endpoint="http://127.0.0.1:1",
                stake=ledger.params.scheduler_min_stake,
                tag_key=tag_key.public,
            ),
        )
    ]
    txs += [
        ledger.tx(
            m,
            miners.RegisterMiner(
                endpoint="http://127.0.0.1:2", capacity_bytes=GiB, stake=ledger.params.stake_per_tib
            ),
        )
        for m in MINERS
    ]
    txs += [
        ledger.tx(USER, space.BuySpace(gib=100, days=30)),
        ledger.tx(USER, CreateBucket(name="bench")),
    ]
    ledger.block(txs)


def placements_for(
    chain_id: str, deal_id: int, plan: ObjectPlan, holders: list[KeyPair]
) -> list[list[deals.Receipt]]:
    """Receipts of ``holders`` (fragment i on holder i) for every segment of ``plan``, for the
    deal's first assignment (the bench's deals are reported in it)."""
    placements = []
    for segment in plan.segments:
        row = []
        for index, miner in enumerate(holders):
            message = deals.receipt_message(
                chain_id,
                deal_id,
                1,
                plan.fid,
                segment.index,
                index,
                segment.fragment_hashes[index],
                miner.public_key,
            )
            row.append(deals.Receipt(miner=miner.public_key, signature=miner.sign(message)))
        placements.append(row)
    return placements


def tag_confirmations(
    chain_id: str, plan: ObjectPlan, holders: Sequence[KeyPair], key_id: bytes
) -> list[tags.TagConfirmation]:
    """Every holder's signed confirmation that it stores tags under ``key_id`` (fragment i on
    holders[i]), as ``files.tagged`` needs them since tag confirmations (issue 12)."""
    out = []
    for segment in plan.segments:
        for index, miner in enumerate(holders):
            message = tags.tags_message(
                chain_id,
                plan.fid,
                segment.index,
                index,
                segment.fragment_hashes[index],
                key_id,
                miner.public_key,
            )
            out.append(
                tags.TagConfirmation(
                    segment=segment.index,
                    fragment=index,
                    miner=miner.public_key,
                    signature=miner.sign(message),
                )
            )
    return out


def tagged_tx(ledger: Ledger, plan: ObjectPlan, key_id: bytes) -> bytes:
    confirmations = tag_confirmations(CHAIN_ID, plan, MINERS, key_id)
    return ledger.tx(SCHEDULER, tagging.ReportTagged(fid=plan.fid, confirmations=confirmations))


def report_tx(ledger: Ledger, deal_id: int, plan: ObjectPlan) -> bytes:
    placements = placements_for(CHAIN_ID, deal_id, plan, MINERS)
    return ledger.tx(SCHEDULER, deals.ReportDeal(deal_id=deal_id, placements=placements))


def object_plan(ledger: Ledger, index: int, size: int) -> ObjectPlan:
    data = index.to_bytes(8, "big") * (size // 8)
    return plan_object(io.BytesIO(data), ledger.params.layout)


def declare_tx(ledger: Ledger, plan: ObjectPlan, name: str) -> bytes:
    return ledger.tx(
        USER,
        declare.DeclareDeal(
            bucket="bench", name=name, size=plan.size, fid=plan.fid, segments=plan.segments
        ),
    )


def bench_deal_cycles(count: int, per_block: int) -> dict[str, float]:
    """Pipelined declare/report blocks on the machine alone."""
    ledger = Ledger(ChainParams())
    setup(ledger, TagKey.from_secret((12345).to_bytes(32, "little"), 512))
    plans = [object_plan(ledger, i, 1024) for i in range(count)]
    batches = [list(range(i, min(count, i + per_block))) for i in range(0, count, per_block)]
    blocks: list[list[bytes]] = [[declare_tx(ledger, plans[i], f"o{i}") for i in batches[0]]]
    for number, batch in enumerate(batches):
        reports = [report_tx(ledger, i, plans[i]) for i in batch]
        nxt = batches[number + 1] if number + 1 < len(batches) else []
        blocks.append(reports + [declare_tx(ledger, plans[i], f"o{i}") for i in nxt])
    seconds = sum(ledger.block(txs) for txs in blocks)
    return {"deals": count, "seconds": seconds, "cycles_per_s": count / seconds}


class Disk:
    """Fragments and tags of the stored objects, for the miners' proofs."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.tags: dict[bytes, bytes] = {}

    def read(self, fragment_hash: bytes, index: int) -> tuple[bytes, bytes]:
        fragment = self.data[fragment_hash]
        offset, length = block_span(index, len(fragment), 512)
        tags = self.tags[fragment_hash]
        return fragment[offset : offset + length], tags[48 * index : 48 * index + 48]


def bench_proof_block(files_per_miner: int) -> dict[str, float]:
    """12 proofs in one block against an empty block, default PoDR² parameters."""
    params = ChainParams(challenge_interval_blocks=10_000, proof_deadline_blocks=100)
    ledger = Ledger(params)
    tag_key = TagKey.from_secret((12345).to_bytes(32, "little"), params.podr2.sectors_per_block)
    setup(ledger, tag_key)
    disk = Disk()
    for i in range(files_per_miner):
        plan = object_plan(ledger, i, 1024)
        ledger.block([declare_tx(ledger, plan, f"o{i}")])
        ledger.block([report_tx(ledger, i, plan), tagged_tx(ledger, plan, tag_key.public.key_id)])
        data = i.to_bytes(8, "big") * 128
        for encoded in iter_encoded_segments(io.BytesIO(data), params.layout):
            for fragment, digest in zip(
                encoded.fragments, encoded.plan.fragment_hashes, strict=True
            ):
                disk.data[digest] = bytes(fragment)
                disk.tags[digest] = tag_key.tag_fragment(fragment, digest)
    while (ledger.machine.height + 1) % params.challenge_interval_blocks:
        ledger.block([])
    ledger.block([])  # opens the round
    empty = statistics.median(ledger.block([]) for _ in range(3))
    state = ledger.machine.state
    proofs = []
    for miner in MINERS:
        raw = state.get(audit.CHALLENGE + miner.public_key)
        if raw is None:
            raise RuntimeError("miner not challenged")
        challenge = codec.decode(raw, audit.Challenge)
        keyed = [
            audit.KeyProof(key_id=k.key_id, proof=prove(k.items, disk.read, 512))
            for k in challenge.keys
        ]
        proofs.append(ledger.tx(miner, audit.SubmitProof(round=challenge.round, proofs=keyed)))
    with_proofs = ledger.block(proofs)
    blocks = sum(len(item.indices) for k in challenge.keys for item in k.items)
    return {
        "proofs": len(proofs),
        "block_ms": with_proofs * 1000,
        "empty_block_ms": empty * 1000,
        "per_proof_ms": (with_proofs - empty) * 1000 / len(proofs),
        "challenged_blocks": blocks,
    }


def bench_deal_cycles_rpc(directory: Path, count: int, concurrency: int) -> dict[str, float]:
    """Deal cycles through a real node process (blocks every 100 ms), ``concurrency`` at once."""
    from chain import node_process  # bench/chain.py, run as a script beside this one
    from deoss.client.chain import ChainClient
    from deoss.keyfile import read_key_file
    from deoss.node.home import init_home

    home = directory / "deal-cycles"
    params = ChainParams(block_interval_ms=100)
    init_home(home, chain_id=CHAIN_ID, dev_accounts=14, block_ms=100, params=params)
    keys = [read_key_file(home / "keys" / f"dev-{i}.toml") for i in range(14)]
    user, scheduler, holders = keys[0], keys[1], keys[2:]
    layout = params.layout
    plans = [plan_object(io.BytesIO(i.to_bytes(8, "big") * 128), layout) for i in range(count)]

    async def cycle(client: ChainClient, gate: asyncio.Semaphore, index: int) -> None:
        plan = plans[index]
        async with gate:
            declared = await client.submit(
                user,
                declare.DeclareDeal(
                    bucket="bench",
                    name=f"o{index}",
                    size=plan.size,
                    fid=plan.fid,
                    segments=plan.segments,
                ),
            )
            deal_id = int(
                next(
                    dict(e.attributes)["id"]
                    for e in declared.result.events
                    if e.type == "deal.declared"
                )
            )
            placements = placements_for(CHAIN_ID, deal_id, plan, holders)
            await client.submit(scheduler, deals.ReportDeal(deal_id=deal_id, placements=placements))

    async def run(url: str) -> float:
        async with ChainClient(url) as client:
            tag_key = TagKey.from_secret((7).to_bytes(32, "little"), params.podr2.sectors_per_block)
            await client.submit(
                scheduler,
                schedulers.RegisterScheduler(
                    endpoint="http://127.0.0.1:1",
                    stake=params.scheduler_min_stake,
                    tag_key=tag_key.public,
                ),
            )
            await asyncio.gather(
                *(
                    client.submit(
                        m,
                        miners.RegisterMiner(
                            endpoint="http://127.0.0.1:2",
                            capacity_bytes=GiB,
                            stake=params.stake_per_tib,
                        ),
                    )
                    for m in holders
                )
            )
            await client.submit(user, space.BuySpace(gib=100, days=30))
            await client.submit(user, CreateBucket(name="bench"))
            gate = asyncio.Semaphore(concurrency)
            start = time.perf_counter()
            await asyncio.gather(*(cycle(client, gate, i) for i in range(count)))
            return time.perf_counter() - start

    with node_process(home, block_ms=100) as url:
        seconds = asyncio.run(run(url))
    return {"deals": count, "seconds": seconds, "cycles_per_s": count / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    scale = 1 if options.quick else 4
    print("deal cycles ...", file=sys.stderr)
    cycles = bench_deal_cycles(count=100 * scale, per_block=50)
    print("deal cycles through the RPC ...", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        rpc = bench_deal_cycles_rpc(Path(tmp), count=50 * scale, concurrency=16)
    print("proofs in a block ...", file=sys.stderr)
    proofs = bench_proof_block(files_per_miner=70)
    print(render(cycles, rpc, proofs))


def render(cycles: dict[str, float], rpc: dict[str, float], proofs: dict[str, float]) -> str:
    return "\n".join(
        [
            "| what | result |",
            "|---|---|",
            f"| deal cycles in-process (declare, assign, report; {cycles['deals']:.0f} deals) | "
            f"{cycles['cycles_per_s']:,.0f} cycles/s |",
            "| deal cycles through the RPC of a real node, 16 at once "
            f"({rpc['deals']:.0f} deals) | "
            f"{rpc['cycles_per_s']:,.0f} cycles/s |",
            f"| block of {proofs['proofs']:.0f} proofs (s = 512, "
            f"{proofs['challenged_blocks']:.0f} blocks each) | "
            f"{proofs['block_ms']:,.1f} ms (empty block {proofs['empty_block_ms']:,.1f} ms) |",
            f"| proof verification inside a block | {proofs['per_proof_ms']:,.1f} ms per proof |",
        ]
    )


if __name__ == "__main__":
    main()
