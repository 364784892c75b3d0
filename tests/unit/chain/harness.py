"""An in-process chain for tests: genesis with named accounts, blocks on demand, helpers that
register a small network and run uploads, and a ``run`` that checks a refused transaction
changed nothing but the sender's nonce (consensus-specs' run_<op>_processing shape)."""

from __future__ import annotations

import hashlib
import io
from typing import Any, TypeVar

from deoss.chain.calls import sign_tx
from deoss.chain.genesis import ChainParams, Genesis, GenesisAccount
from deoss.chain.machine import META_KEY, BlockOutcome, StateMachine
from deoss.chain.modules import (
    accounts,
    deals,
    declare,
    files,
    gateways,
    miners,
    schedulers,
    space,
    tagging,
    tags,
)
from deoss.chain.modules.buckets import CreateBucket
from deoss.chain.query import QueryArgs
from deoss.chain.types import BlockHeader, Call, TxResult
from deoss.core import codec
from deoss.core.keys import KeyPair
from deoss.core.layout import LayoutParams, ObjectPlan, plan_object
from deoss.core.podr2 import PodrParams, TagKey

R = TypeVar("R")
CHAIN_ID = "test-chain"
SECTORS = 4
MINER_NAMES = [f"miner{i}" for i in range(14)]
NAMES = ["alice", "bob", "carol", "gw", "sched0", "sched1", *MINER_NAMES]
BALANCE = 10**15
GiB = 1024**3


def key(name: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(name.encode()).digest())


_TAG_KEYS: dict[str, TagKey] = {}


def tag_key(name: str) -> TagKey:
    if name not in _TAG_KEYS:
        secret = int.from_bytes(hashlib.sha256(b"tag" + name.encode()).digest(), "little") % (
            2**250
        )
        _TAG_KEYS[name] = TagKey.from_secret((secret + 1).to_bytes(32, "little"), SECTORS)
    return _TAG_KEYS[name]


def chain_params(**overrides: Any) -> ChainParams:
    base: dict[str, Any] = {
        "layout": LayoutParams(segment_size=4096, data_shards=4, parity_shards=8),
        "podr2": PodrParams(
            sectors_per_block=SECTORS, blocks_per_fragment=2, fragments_per_challenge=4
        ),
        "blocks_per_day": 100,
        "space_grace_blocks": 50,
        "deal_timeout_blocks": 5,
        "deal_blocks_per_segment": 0,
        "max_deal_attempts": 3,
        "tag_timeout_blocks": 10,
        "challenge_interval_blocks": 10,
        "proof_deadline_blocks": 5,
        "restoral_deadline_blocks": 5,
        "expiry_removals_per_block": 2,
    }
    base.update(overrides)
    return ChainParams(**base)


class Chain:
    """A state machine driven block by block."""

    def __init__(self, **overrides: Any) -> None:
        self.params = chain_params(**overrides)
        self.machine = StateMachine()
        self.genesis = Genesis(
            chain_id=CHAIN_ID,
            genesis_time_ns=0,
            params=self.params,
            accounts=[GenesisAccount(address=key(n).address, balance=BALANCE) for n in NAMES],
            treasury=10**12,
        )
        self.machine.init_chain(self.genesis)
        self._sent: dict[bytes, int] = {}

    @property
    def height(self) -> int:
        return self.machine.height

    def nonce(self, who: KeyPair) -> int:
        committed = accounts.get_account(self.machine.state, who.public_key).nonce
        return max(committed, self._sent.get(who.public_key, 0))

    def tx(self, who: str | KeyPair, call: Call, *, nonce: int | None = None) -> bytes:
        signer = key(who) if isinstance(who, str) else who
        n = self.nonce(signer) if nonce is None else nonce
        self._sent[signer.public_key] = n + 1
        return sign_tx(signer, CHAIN_ID, n, call)

    def block(self, *txs: bytes) -> BlockOutcome:
        height = self.height + 1
        header = BlockHeader(
            chain_id=CHAIN_ID,
            height=height,
            time_ns=height * 10**9,
            hash=hashlib.sha256(b"block" + height.to_bytes(8, "big")).digest(),
        )
        outcome = self.machine.finalize_block(header, list(txs))
        self.last_writes = {k for k, _ in self.machine.state.pending_writes()}
        self.machine.commit()
        self._sent.clear()
        return outcome

    def advance(self, blocks: int) -> list[BlockOutcome]:
        return [self.block() for _ in range(blocks)]

    def run(
        self, who: str | KeyPair, call: Call, *, valid: bool = True, code: int | None = None
    ) -> TxResult:
        """Run one transaction in its own block; a refused one may only bump the nonce."""
        signer = key(who) if isinstance(who, str) else who
        result = self.block(self.tx(signer, call)).tx_results[0]
        if valid:
            assert 0 == result.code, result.log
        else:
            assert 0 != result.code, "expected a refusal"
            if code is not None:
                assert code == result.code, result.log
            allowed = {META_KEY, accounts.TREASURY_KEY, accounts.PREFIX + signer.public_key}
            assert set() == self.last_writes - allowed
        return result

    def query(self, path: str, type_: type[R], **args: Any) -> R:
        result = self.machine.query(path, codec.encode(QueryArgs(**args)))
        assert 0 == result.code, result.log
        return codec.decode(result.value, type_)

    def query_code(self, path: str, **args: Any) -> int:
        return self.machine.query(path, codec.encode(QueryArgs(**args))).code

    def events(self, result: TxResult | BlockOutcome, type_: str) -> list[dict[str, str]]:
        items = result.events
        return [dict(e.attributes) for e in items if e.type == type_]


def setup_network(chain: Chain, *, miner_count: int = 12, scheduler_count: int = 2) -> None:
    """Schedulers and miners registered; alice has space, a bucket, and authorized gw."""
    txs = []
    for i in range(scheduler_count):
        txs.append(
            chain.tx(
                f"sched{i}",
                schedulers.RegisterScheduler(
                    endpoint=f"http://127.0.0.1:{9000 + i}",
                    stake=chain.params.scheduler_min_stake,
                    tag_key=tag_key(f"sched{i}").public,
                ),
            )
        )
    for i in range(miner_count):
        txs.append(
            chain.tx(
                f"miner{i}",
                miners.RegisterMiner(
                    endpoint=f"http://127.0.0.1:{9100 + i}",
                    capacity_bytes=GiB,
                    stake=chain.params.stake_per_tib,
                ),
            )
        )
    txs.append(
        chain.tx(
            "gw",
            gateways.RegisterGateway(
                endpoint="http://127.0.0.1:8000", stake=chain.params.gateway_stake
            ),
        )
    )
    txs.append(chain.tx("alice", space.BuySpace(gib=1, days=10)))
    txs.append(chain.tx("alice", CreateBucket(name="photos")))
    txs.append(chain.tx("alice", gateways.AuthorizeGateway(gateway=key("gw").address)))
    outcome = chain.block(*txs)
    assert [0] * len(txs) == [r.code for r in outcome.tx_results], [
        r.log for r in outcome.tx_results if r.code
    ]


def plan(data: bytes, chain: Chain) -> ObjectPlan:
    return plan_object(io.BytesIO(data), chain.params.layout)


def declare_call(
    p: ObjectPlan, name: str = "cat.jpg", bucket: str = "photos", owner: str = ""
) -> declare.DeclareDeal:
    return declare.DeclareDeal(
        bucket=bucket, name=name, size=p.size, fid=p.fid, segments=p.segments, owner=owner
    )


def receipts(
    chain: Chain,
    deal_id: int,
    p: ObjectPlan,
    holders: list[list[str]] | None = None,
    attempt: int | None = None,
) -> list[list[deals.Receipt]]:
    """Receipts signed by miners 0..n-1 (or the given holders) for every fragment, for the
    deal's current assignment unless ``attempt`` names another."""
    n = chain.params.layout.total_shards
    if attempt is None:
        deal = deals.get_deal(chain.machine.state, deal_id)
        attempt = deal.attempts if deal is not None else 0
    out = []
    for segment in p.segments:
        names = holders[segment.index] if holders else [f"miner{i}" for i in range(n)]
        row = []
        for index, name in enumerate(names):
            miner = key(name)
            message = deals.receipt_message(
                CHAIN_ID,
                deal_id,
                attempt,
                p.fid,
                segment.index,
                index,
                segment.fragment_hashes[index],
                miner.public_key,
            )
            row.append(deals.Receipt(miner=miner.public_key, signature=miner.sign(message)))
        out.append(row)
    return out


def upload(chain: Chain, data: bytes, name: str = "cat.jpg") -> tuple[deals.Deal, ObjectPlan]:
    """Declare (as alice), let the chain assign, report as the assigned scheduler."""
    p = plan(data, chain)
    result = chain.run("alice", declare_call(p, name))
    deal_id = int(chain.events(result, "deal.declared")[0]["id"])
    deal = chain.query("/deals/deal", deals.Deal, id=deal_id)
    assert deals.DealState.ASSIGNED == deal.state
    reporter = scheduler_name(deal.scheduler)
    chain.run(reporter, deals.ReportDeal(deal_id=deal_id, placements=receipts(chain, deal_id, p)))
    return chain.query("/deals/deal", deals.Deal, id=deal_id), p


def _miner_key(pubkey: bytes) -> KeyPair:
    return next(key(n) for n in MINER_NAMES if key(n).public_key == pubkey)


def tag_confirmations(
    chain: Chain,
    fid: str,
    tagger: str,
    *,
    only: set[tuple[int, int]] | None = None,
    signer: str | None = None,
) -> list[tags.TagConfirmation]:
    """Each current holder's confirmation of the tags of ``tagger``'s key for its fragment (or
    those at the ``only`` positions); ``signer`` signs them all in place of the holders."""
    record = chain.query("/files/file", files.FileRecord, fid=fid)
    key_id = tag_key(tagger).public.key_id
    out = []
    for segment, row in zip(record.segments, record.holders, strict=True):
        for index, holder in enumerate(row):
            if only is not None and (segment.index, index) not in only:
                continue
            miner = key(signer) if signer else _miner_key(holder)
            message = tags.tags_message(
                CHAIN_ID,
                fid,
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


def report_tagged(chain: Chain, fid: str, tagger: str, **kwargs: Any) -> tagging.ReportTagged:
    """``files.tagged`` with every holder's confirmation (see ``tag_confirmations``)."""
    return tagging.ReportTagged(
        fid=fid, confirmations=tag_confirmations(chain, fid, tagger, **kwargs)
    )


def scheduler_name(pubkey: bytes) -> str:
    return next(n for n in ("sched0", "sched1") if key(n).public_key == pubkey)


class MinerDisk:
    """What honest miners keep: fragments by hash and their tags, for proving."""

    def __init__(self) -> None:
        self.fragments: dict[bytes, bytes] = {}
        self.tags: dict[bytes, bytes] = {}

    def store(self, chain: Chain, data: bytes, tagger: str) -> None:
        from deoss.core.layout import iter_encoded_segments

        for encoded in iter_encoded_segments(io.BytesIO(data), chain.params.layout):
            for fragment, digest in zip(
                encoded.fragments, encoded.plan.fragment_hashes, strict=True
            ):
                self.fragments[digest] = bytes(fragment)
                self.tags[digest] = tag_key(tagger).tag_fragment(fragment, digest)

    def read(self, fragment_hash: bytes, index: int) -> tuple[bytes, bytes]:
        from deoss.core.podr2 import block_span

        fragment = self.fragments[fragment_hash]
        offset, length = block_span(index, len(fragment), SECTORS)
        return fragment[offset : offset + length], self.tags[fragment_hash][
            48 * index : 48 * index + 48
        ]


def answer_challenge(
    chain: Chain, disk: MinerDisk, who: str, *, corrupt: bool = False
) -> Any | None:
    """The ``audit.SubmitProof`` answering ``who``'s current challenge from ``disk`` (``corrupt``
    flips a byte of every block read, so the proof fails to verify); None when ``who`` is not
    challenged or ``disk`` lacks a challenged fragment."""
    from deoss.chain.modules.audit import Challenge, KeyProof, SubmitProof
    from deoss.core.podr2 import prove

    result = chain.machine.query(
        "/audit/challenge", codec.encode(QueryArgs(address=key(who).address))
    )
    if result.code != 0:
        return None
    challenge = codec.decode(result.value, Challenge)
    wanted = {item.fragment_hash for k in challenge.keys for item in k.items}
    if not wanted <= disk.fragments.keys() or not wanted <= disk.tags.keys():
        return None

    def read(fragment_hash: bytes, index: int) -> tuple[bytes, bytes]:
        block, tag = disk.read(fragment_hash, index)
        return (bytes([block[0] ^ 1]) + block[1:] if corrupt and block else block), tag

    proofs = [
        KeyProof(key_id=k.key_id, proof=prove(k.items, read, SECTORS)) for k in challenge.keys
    ]
    return SubmitProof(round=challenge.round, proofs=proofs)
