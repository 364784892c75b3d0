"""Tags survive their tagger, as real processes (docs/podr2.md, "Tag mirrors"): the scheduler
that tagged a file is killed for good (SIGKILL, never restarted), then a miner holding
fragments of the file dies too. Its fragments are rebuilt elsewhere and their tags come from
the mirror copies the other holders of each segment keep (the tagger cannot answer, and the
dead holder is not EXITING, so it cannot be copied from); the new holders then pass an audit
round with them.

Its own network: 14 miners (each segment's 12 fragments leave two miners holding none of it,
to rebuild there), 2 schedulers, 3 missed rounds in a row make a miner faulty.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deoss.chain.modules.audit import ChallengeEntry, Result
from deoss.chain.modules.miners import MinerState
from deoss.chain.modules.restoral import Order
from deoss.devnet import DevnetSpec, up
from tests.integration.test_network_audit import (
    current_round,
    file_of,
    fragments_dir,
    miner,
    miner_key,
    miner_names,
    wait_tagged,
)
from tests.integration.test_network_faults import SEGMENT, Network

pytestmark = pytest.mark.integration

INTERVAL = 20  # blocks between rounds (4 s at 200 ms)
DEADLINE = 15
FAULTS = 3


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    home = Path(tmp_path_factory.mktemp("tagger-loss"))
    spec = DevnetSpec(
        home=home,
        chain_port=0,
        gateway_port=0,
        block_ms=200,
        miners=14,
        segment_size=SEGMENT,
        challenge_interval_blocks=INTERVAL,
        proof_deadline_blocks=DEADLINE,
        max_consecutive_faults=FAULTS,
        restoral_deadline_blocks=150,
        miner_options={"poll_s": 1.0, "scrub_bytes_per_s": 0},
    )
    net = up(spec, detach=False)
    try:
        yield Network(spec, net)
    finally:
        net.stop()


def stored_bytes(network: Network, area: str) -> dict[str, int]:
    """Bytes under one area of each miner's fragment store (``tags`` or ``mirrors``)."""
    return {
        name: sum(p.stat().st_size for p in (fragments_dir(network, name) / area).glob("*/*"))
        for name in miner_names(network)
    }


def wait_until(condition: object, timeout_s: float, what: str, every_s: float = 1.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(every_s)
    raise AssertionError(f"{what} within {timeout_s} s")


def test_lost_fragments_get_tags_from_mirrors_after_the_tagger_is_gone(network: Network) -> None:
    # no two segments alike (``content`` repeats itself): tags are kept once per fragment hash,
    # mirrors once per place, and the sizes compared below assume no hash is shared
    data = random.Random("tagger-loss").randbytes(2 * SEGMENT + 123)
    assert 201 == network.put("orphan", data).status_code
    record = wait_tagged(network, "orphan")

    # every tag set is kept by its holder and mirrored at two other holders of its segment
    tags, mirrors = stored_bytes(network, "tags"), stored_bytes(network, "mirrors")
    assert sum(tags.values()) > 0
    assert sum(mirrors.values()) == 2 * sum(tags.values()), (tags, mirrors)
    fragments = sum(stored_bytes(network, "perm").values())
    print(
        f"all {sum(1 for n in tags.values() if n)} holders together: fragments "
        f"{fragments}, own tags {sum(tags.values())} ({sum(tags.values()) / fragments:.2%}), "
        f"mirrored tags {sum(mirrors.values())} ({sum(mirrors.values()) / fragments:.2%}) bytes"
    )

    tagger = network.name_of(record.tagger)
    network.kill(tagger)  # for good: never restarted
    victim_key = record.holders[0][0]
    victim = network.name_of(victim_key)
    lost = {
        (s, i): record.segments[s].fragment_hashes[i]
        for s, row in enumerate(record.holders)
        for i, holder in enumerate(row)
        if holder == victim_key
    }
    network.kill(victim)
    started = time.monotonic()

    def rebuilt() -> bool:
        now = file_of(network, "orphan")
        pending = [o for o in network.query("/restoral/orders", list[Order]) if o.fid == now.fid]
        return not pending and all(victim_key not in row for row in now.holders)

    # faulty after 3 missed rounds (12 s), then one claim and rebuild per lost fragment;
    # generous for a slow shared machine
    wait_until(rebuilt, 420, "the dead holder's fragments were not all rebuilt")
    assert MinerState.ACTIVE != miner(network, victim).state
    final = file_of(network, "orphan")
    new_holders: dict[str, set[bytes]] = {}
    for (s, i), digest in lost.items():
        holder = final.holders[s][i]
        assert holder != victim_key and 12 == len(set(final.holders[s]))
        name = network.name_of(holder)
        tag_file = (
            fragments_dir(network, name)
            / "tags"
            / digest.hex()[:2]
            / f"{digest.hex()}.{final.tag_key_id.hex()}"
        )
        assert tag_file.stat().st_size > 0, f"{name} has no tags for the rebuilt fragment"
        new_holders.setdefault(name, set()).add(digest)
        log = (network.spec.home / "logs" / f"{name}.log").read_text()
        assert '"event": "repair_tags_mirrored"' in log, f"{name} did not take mirrored tags"
    print(f"{len(lost)} fragment(s) rebuilt with mirrored tags {time.monotonic() - started:.1f} s")

    # an audit round in which every new holder is challenged on what it rebuilt and passes
    after = current_round(network).number
    passed: set[str] = set()

    def all_passed() -> bool:
        entries = network.query("/audit/challenges", list[ChallengeEntry])
        for entry in entries:
            challenge = entry.challenge
            if challenge.round <= after or challenge.result != Result.PASSED:
                continue
            for name, digests in new_holders.items():
                challenged = {i.fragment_hash for k in challenge.keys for i in k.items}
                if entry.address == miner_key(network, name).address and digests <= challenged:
                    passed.add(name)
        return passed == set(new_holders)

    wait_until(all_passed, 180, f"new holders {sorted(new_holders)} did not pass", every_s=0.3)
    got = network.get("orphan")
    assert (200, data) == (got.status_code, got.content)
    popen = network.net.process(tagger).popen
    assert popen is not None and popen.poll() is not None, "the tagger came back"
