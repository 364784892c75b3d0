"""deoss audit status, miner status / exit and repair status against a served DevNode, via
CliRunner: JSON output and the exit codes scripts rely on (0 done, 1 refused, 2 usage, 3 not
found).

The network is built with the chain harness (tests/unit/chain/harness.py), its blocks produced
by a DevNode before that node is served, so rounds and placements sit at known heights.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from deoss.chain.machine import BlockOutcome
from deoss.chain.modules.audit import ChallengeEntry, Result, Round
from deoss.chain.modules.miners import MinerEntry
from deoss.chain.modules.restoral import ClaimOrder
from deoss.cli.commands.audit import audit_json
from deoss.cli.main import app
from deoss.client.chain import ChainClient, run
from deoss.keyfile import write_key_file
from deoss.node.devnode import DevNode
from deoss.node.store import open_store
from tests.chain_fixtures import ServedNode, StepClock
from tests.unit.chain.harness import (
    Chain,
    key,
    report_tagged,
    scheduler_name,
    setup_network,
    upload,
)

runner = CliRunner()
DATA = bytes(range(256)) * 20  # two segments: every miner 0..11 holds one fragment of each
ROUND_AT = 200  # the first round opens at this height; the next one 200 blocks later
BLOCK_MS = 50  # once served: 10 s from the first round to the second


class NodeChain(Chain):
    """The harness chain, its blocks produced by a DevNode that is then served to the CLI."""

    def __init__(self, path: Path, **overrides: Any) -> None:
        super().__init__(**overrides)
        self.node = DevNode(
            open_store(path), genesis=self.genesis, block_ms=BLOCK_MS, clock=StepClock(0)
        )
        self.machine = self.node.machine

    def block(self, *txs: bytes) -> BlockOutcome:
        for raw in txs:
            checked = self.node.check_tx(raw)
            assert 0 == checked.code, checked.log
        record = self.node.produce_block().block
        self._sent.clear()
        self.last_writes = set()
        return BlockOutcome(
            height=record.height,
            tx_results=record.results,
            events=record.events,
            app_hash=record.app_hash,
        )


def serve(chain: NodeChain) -> Iterator[ServedNode]:
    served = ServedNode(chain.node).start()
    yield served
    served.stop()
    chain.node.store.close()


@pytest.fixture
def registered(tmp_path: Path) -> Iterator[ServedNode]:
    """Schedulers and 12 miners registered, nothing stored, no round ever."""
    chain = NodeChain(tmp_path / "chain.sqlite", challenge_interval_blocks=10**9)
    setup_network(chain)
    yield from serve(chain)


@pytest.fixture
def audited(tmp_path: Path) -> Iterator[ServedNode]:
    """A tagged file on miners 0..11 (miner12 holds nothing); round 1 went unanswered and was
    settled, every holder slashed once."""
    chain = NodeChain(
        tmp_path / "chain.sqlite",
        challenge_interval_blocks=ROUND_AT,
        proof_deadline_blocks=2,
        restoral_deadline_blocks=10**6,
    )
    setup_network(chain, miner_count=13)
    deal, p = upload(chain, DATA)
    tagger = scheduler_name(deal.scheduler)
    chain.run(tagger, report_tagged(chain, p.fid, tagger))
    chain.advance(ROUND_AT + 2 - chain.height)
    assert chain.query("/audit/round", Round).settled
    yield from serve(chain)


@pytest.fixture
def miner0_key(tmp_path: Path) -> Path:
    path = tmp_path / "miner0.toml"
    write_key_file(path, key("miner0"))
    return path


def deoss(*args: str) -> tuple[int, Any]:
    """Run with --json; the exit code and the parsed output."""
    result = runner.invoke(app, [*args, "--json"])
    return result.exit_code, json.loads(result.stdout)


def human(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert 0 == result.exit_code, result.output
    return result.stdout


def test_audit_and_repair_status_before_any_round(registered: ServedNode) -> None:
    """No round yet is not an error: round null, nothing challenged, slashed or ordered."""
    code, shown = deoss("audit", "status", "--node", registered.url)
    assert (0, None, [], [], []) == (
        code,
        shown["round"],
        shown["challenges"],
        shown["slashes"],
        shown["rewards"],
    )
    assert shown["height"] >= 1
    assert "no challenge round yet" in human("audit", "status", "--node", registered.url)
    code, shown = deoss("repair", "status", "--node", registered.url)
    assert (0, [], 0, 0, False) == (
        code,
        shown["orders"],
        shown["open"],
        shown["claimed"],
        shown["truncated"],
    )
    assert "0 restoral order(s)" in human("repair", "status", "--node", registered.url)


def test_audit_status_after_an_unanswered_round(audited: ServedNode) -> None:
    """Round 1 challenged the 12 holders on both fragments each; all MISSED and were slashed."""
    code, shown = deoss("audit", "status", "--node", audited.url)
    assert 0 == code
    round_ = shown["round"]
    assert (1, ROUND_AT, ROUND_AT + 2, 12, True, 64) == (
        round_["number"],
        round_["started_at"],
        round_["deadline"],
        round_["challenged"],
        round_["settled"],
        len(round_["seed"]),
    )
    holders = sorted(key(f"miner{i}").address for i in range(12))
    assert holders == sorted(c["miner"] for c in shown["challenges"])
    assert {(1, 2, "MISSED", "no proof")} == {
        (c["round"], c["fragments"], c["result"], c["reason"]) for c in shown["challenges"]
    }
    assert holders == sorted(s["miner"] for s in shown["slashes"])
    assert {(1, 1, "ACTIVE")} == {
        (s["total_faults"], s["consecutive_faults"], s["state"]) for s in shown["slashes"]
    }
    assert all(s["slashed"] > 0 for s in shown["slashes"])
    assert [] == shown["rewards"]
    text = human("audit", "status", "--node", audited.url)
    assert "round 1: opened at block 200" in text and "MISSED" in text


def test_audit_json_of_a_pending_round() -> None:
    """audit_json straight from a harness state: an open round, PENDING answers, no slashes."""
    chain = Chain()
    setup_network(chain)
    deal, p = upload(chain, DATA)
    tagger = scheduler_name(deal.scheduler)
    chain.run(tagger, report_tagged(chain, p.fid, tagger))
    interval = chain.params.challenge_interval_blocks
    chain.advance(interval - chain.height % interval)
    challenges = chain.query("/audit/challenges", list[ChallengeEntry])
    shown = audit_json(
        chain.height,
        chain.query("/audit/round", Round),
        challenges,
        chain.query("/miners/list", list[MinerEntry]),
    )
    assert (False, 12) == (shown["round"]["settled"], len(shown["challenges"]))
    assert [sum(len(k.items) for k in c.challenge.keys) for c in challenges] == [
        c["fragments"] for c in shown["challenges"]
    ]
    assert {Result.PENDING.name} == {c["result"] for c in shown["challenges"]}
    assert [] == shown["slashes"]
    json.dumps(shown)  # JSON-serializable as it is


def test_miner_status_all_one_unknown_malformed(registered: ServedNode) -> None:
    """All miners; one with its fragment count; a non-miner exits 3, a malformed address 1 (bad
    parameters, as everywhere else in the CLI)."""
    node = ["--node", registered.url]
    code, shown = deoss("miner", "status", *node)
    assert (0, 12) == (code, len(shown["miners"]))
    assert {"ACTIVE"} == {m["state"] for m in shown["miners"]}
    address = key("miner3").address
    code, shown = deoss("miner", "status", address, *node)
    assert (0, address, "ACTIVE", 0, 0, 0) == (
        code,
        shown["address"],
        shown["state"],
        shown["fragments"],
        shown["total_faults"],
        shown["slashed"],
    )
    code, shown = deoss("miner", "status", key("alice").address, *node)
    assert 3 == code and "is not a miner" in shown["error"]["message"]
    code, shown = deoss("miner", "status", "deoss1nope", *node)
    assert 1 == code and "deoss1nope" in shown["error"]["message"]
    assert address in human("miner", "status", *node)
    assert "fragments   0" in human("miner", "status", address, *node)


def test_miner_stake_tops_up_and_refuses_bad_amounts(
    registered: ServedNode, miner0_key: Path, tmp_path: Path
) -> None:
    """The stake grows by the amount; 0 and non-numbers are usage errors; a non-miner exits 3,
    an amount above the balance exits 1 and changes nothing."""
    common = ["--key", str(miner0_key), "--node", registered.url]
    before = deoss("miner", "status", key("miner0").address, "--node", registered.url)[1]
    code, shown = deoss("miner", "stake", "250", *common)
    assert (0, before["stake"] + 250) == (code, shown["stake"])
    assert shown["required_stake"] <= shown["stake"]
    for bad in ("0", "-5", "lots", str(2**63)):
        assert 2 == runner.invoke(app, ["miner", "stake", bad, *common]).exit_code
    code, shown = deoss("miner", "stake", str(2**63 - 1), *common)
    assert 1 == code and shown["error"]["message"]
    after = deoss("miner", "status", key("miner0").address, "--node", registered.url)[1]
    assert before["stake"] + 250 == after["stake"]
    alice = tmp_path / "alice.toml"
    write_key_file(alice, key("alice"))
    code, shown = deoss("miner", "stake", "1", "--key", str(alice), "--node", registered.url)
    assert 3 == code and "is not a miner" in shown["error"]["message"]
    assert "required" in human("miner", "status", key("miner0").address, "--node", registered.url)


def test_miner_exit_without_fragments_returns_the_stake_at_once(
    registered: ServedNode, miner0_key: Path, tmp_path: Path
) -> None:
    """A miner that holds nothing is EXITED in the block of its exit; a second exit: 1."""
    common = ["--key", str(miner0_key), "--node", registered.url]
    code, shown = deoss("miner", "exit", *common)
    assert (0, "EXITED", 0, 0) == (code, shown["state"], shown["stake"], shown["fragments"])
    code, shown = deoss("miner", "exit", *common)
    assert 1 == code and "exited miner cannot exit" in shown["error"]["message"]
    alice = tmp_path / "alice.toml"
    write_key_file(alice, key("alice"))
    code, shown = deoss("miner", "exit", "--key", str(alice), "--node", registered.url)
    assert 3 == code and "is not a miner" in shown["error"]["message"]


def test_miner_exit_opens_restoral_orders(audited: ServedNode, miner0_key: Path) -> None:
    """An exiting miner's fragments get restoral orders; a claimed one shows its claimer."""
    node = ["--node", audited.url]
    assert [] == deoss("repair", "status", *node)[1]["orders"]
    result = runner.invoke(app, ["miner", "exit", "--key", str(miner0_key), *node])
    assert 0 == result.exit_code, result.output
    assert "holds 2 fragment(s)" in result.stdout and "restoral orders" in result.stdout
    code, shown = deoss("miner", "status", key("miner0").address, *node)
    assert (0, "EXITING", 2) == (code, shown["state"], shown["fragments"])
    code, shown = deoss("miner", "exit", "--key", str(miner0_key), *node)
    assert 1 == code and "exiting miner cannot exit" in shown["error"]["message"]

    code, shown = deoss("repair", "status", *node)
    assert (0, 2, 0) == (code, shown["open"], shown["claimed"])
    assert [(0, 0), (1, 0)] == [(o["segment"], o["fragment"]) for o in shown["orders"]]
    assert {("OPEN", key("miner0").address, "", "miner exit")} == {
        (o["state"], o["former"], o["claimer"], o["reason"]) for o in shown["orders"]
    }
    first = shown["orders"][0]["id"]

    async def claim() -> None:
        async with ChainClient(audited.url) as client:
            await client.submit(key("miner12"), ClaimOrder(order_id=first))

    run(claim())
    code, shown = deoss("repair", "status", *node)
    assert (0, 1, 1) == (code, shown["open"], shown["claimed"])
    claimed = shown["orders"][0]
    assert ("CLAIMED", key("miner12").address) == (claimed["state"], claimed["claimer"])
    assert claimed["deadline"] > claimed["created_at"]
    code, shown = deoss("repair", "status", "--limit", "1", *node)
    assert (0, [first], True) == (code, [o["id"] for o in shown["orders"]], shown["truncated"])
    assert "1 open, 1 claimed" in human("repair", "status", *node)
    assert 2 == runner.invoke(app, ["repair", "status", "--limit", "0", *node]).exit_code


@pytest.fixture
def faulty_node(tmp_path: Path) -> Iterator[ServedNode]:
    """A tagged file on miners 0..11; one fault makes a miner FAULTY, and round 1 (at 20) went
    unanswered: miners 0..11 are FAULTY since block 22, slashed under their stake, and the
    chain is past their cool-down (one interval: block 42)."""
    chain = NodeChain(
        tmp_path / "chain.sqlite",
        challenge_interval_blocks=20,
        proof_deadline_blocks=2,
        max_consecutive_faults=1,
        restoral_deadline_blocks=10**6,
    )
    setup_network(chain, miner_count=13)
    deal, p = upload(chain, DATA)
    tagger = scheduler_name(deal.scheduler)
    chain.run(tagger, report_tagged(chain, p.fid, tagger))
    chain.advance(42 - chain.height)
    yield from serve(chain)


def test_miner_status_shows_the_way_back_and_recover_brings_it(
    faulty_node: ServedNode, miner0_key: Path, tmp_path: Path
) -> None:
    """FAULTY status says when and how to recover; under stake: 1; after a top-up: ACTIVE with
    none of its former fragments; again: 1; a non-miner: 3."""
    node = ["--node", faulty_node.url]
    common = ["--key", str(miner0_key), *node]
    code, shown = deoss("miner", "status", key("miner0").address, *node)
    assert (0, "FAULTY", 42, 2) == (code, shown["state"], shown["recover_from"], shown["fragments"])
    missing = shown["required_stake"] - shown["stake"]
    assert missing > 0
    text = human("miner", "status", key("miner0").address, *node)
    assert (
        f"deoss miner stake {missing}" in text and "from block 42 on: deoss miner recover" in text
    )
    code, shown = deoss("miner", "recover", *common)
    assert 1 == code and "miners.add_stake" in shown["error"]["message"]
    assert 0 == deoss("miner", "stake", str(missing), *common)[0]
    code, shown = deoss("miner", "recover", *common)
    assert (0, "ACTIVE", 0, 0, None) == (
        code,
        shown["state"],
        shown["fragments"],
        shown["service_bytes"],
        shown["recover_from"],
    )
    code, shown = deoss("miner", "recover", *common)
    assert 1 == code and "only a faulty miner can recover" in shown["error"]["message"]
    code, shown = deoss("repair", "status", *node)
    # its former fragments stay ordered for rebuild elsewhere
    assert 2 == sum(o["former"] == key("miner0").address for o in shown["orders"])
    alice = tmp_path / "alice.toml"
    write_key_file(alice, key("alice"))
    code, shown = deoss("miner", "recover", "--key", str(alice), *node)
    assert 3 == code and "is not a miner" in shown["error"]["message"]
    miner1 = ["--key", str(miner1_key(tmp_path)), *node]
    assert 0 == deoss("miner", "stake", str(missing), *miner1)[0]
    result = runner.invoke(app, ["miner", "recover", *miner1])
    assert 0 == result.exit_code, result.output
    assert "recovered in block" in result.stdout


def miner1_key(tmp_path: Path) -> Path:
    path = tmp_path / "miner1.toml"
    write_key_file(path, key("miner1"))
    return path
