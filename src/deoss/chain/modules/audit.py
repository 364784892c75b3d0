"""Audit: challenge rounds from chain randomness, PoDR² proofs verified on chain, rewards, slashing.

Every ``challenge_interval_blocks`` a round opens with a seed derived from the block seed. Each
active or exiting miner holding tagged fragments gets a challenge derived from sha256(round seed ||
miner): a sample of its tagged fragments and block indices (deoss.core.podr2), grouped by the tag
key that tagged them. Only holdings whose holder confirmed its tags are challenged
(``holdings.Holding.tags_confirmed``): a holder is never slashed for tags it could not obtain.
Fragments the miner itself reported lost are left out while their restoral order is pending: an
honest report is answered by repair, not by slashing. The miner answers with
one aggregated proof per key before the round's deadline. A proof that does not verify is recorded
as FAILED and slashed at once; no answer by the deadline is MISSED and slashed at settlement;
PASSED miners share ``reward_per_round`` in proportion to their service space.
``max_consecutive_faults`` faults in a row make a miner FAULTY, and restoral orders are opened for
all it holds. ``miners.recover`` brings it back to ACTIVE (see ``apply_recover``).

Keys: ``audit-round`` -> Round (the latest); ``audit-chal/<miner>`` -> Challenge (of that round).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterator

from msgspec.structs import replace

from deoss.chain.errors import AlreadyExists, InvalidArgument, InvalidTransition, NotFound
from deoss.chain.genesis import ChainParams
from deoss.chain.modules import accounts, files, miners, restoral, schedulers
from deoss.chain.modules.holdings import HOLD, Holding, drop_holding, holdings_of
from deoss.chain.params import load_params
from deoss.chain.query import QueryArgs, QueryHandler, address_arg, encode_value
from deoss.chain.state import State, get_record, prefix_end, put_record
from deoss.chain.types import BlockContext, BlockEvents, Call, EventSink, Hash32, TxContext
from deoss.core import codec
from deoss.core.codec import Record
from deoss.core.errors import DataPathError
from deoss.core.keys import address_of
from deoss.core.podr2 import ChallengeItem, FragmentRef, Proof, derive_challenge, verify_proof

ROUND = b"audit-round"
CHALLENGE = b"audit-chal/"


class Result(enum.IntEnum):  # stored on chain: never renumber
    PENDING = 0
    PASSED = 1
    FAILED = 2
    MISSED = 3


class Round(Record):
    number: int
    seed: Hash32
    started_at: int
    deadline: int
    challenged: int
    settled: bool = False


class KeyChallenge(Record):
    key_id: Hash32
    items: list[ChallengeItem]


class Challenge(Record):
    round: int
    keys: list[KeyChallenge]
    result: Result = Result.PENDING
    reason: str = ""


class ChallengeEntry(Record):
    address: str
    challenge: Challenge


class KeyProof(Record):
    key_id: Hash32
    proof: Proof


class SubmitProof(Call, tag="audit.submit_proof"):
    round: int
    proofs: list[KeyProof]


def current_round(state: State) -> Round | None:
    return get_record(state, ROUND, Round)


def miner_challenge(
    seed: bytes,
    miner: bytes,
    holdings: list[Holding],
    tag_keys: dict[str, bytes],
    params: ChainParams,
) -> list[KeyChallenge]:
    """The challenge of one miner: its tagged holdings sampled, grouped by tag key id."""
    key_of: dict[bytes, bytes] = {}
    refs = []
    for h in sorted(holdings, key=lambda h: (h.fragment_hash, h.fid)):
        key_id = tag_keys.get(h.fid)
        if key_id and h.fragment_hash not in key_of:
            key_of[h.fragment_hash] = key_id
            refs.append(FragmentRef(hash=h.fragment_hash, size=h.size))
    items = derive_challenge(hashlib.sha256(seed + miner).digest(), refs, params.podr2)
    grouped: dict[bytes, list[ChallengeItem]] = {}
    for item in items:
        grouped.setdefault(key_of[item.fragment_hash], []).append(item)
    return [KeyChallenge(key_id=k, items=v) for k, v in sorted(grouped.items())]


def _challengeable(state: State, holding: Holding, miner: bytes) -> bool:
    """Only holdings whose holder confirmed its tags (never slashed for tags it could not
    obtain), and not those it reported lost while their order is pending."""
    return holding.tags_confirmed and not restoral.reported_lost(state, holding, miner)


SAMPLE_PROBES_PER_FRAGMENT = 4  # probes per wanted fragment (probes may land on the same one)
SAMPLE_SCAN_LIMIT = 16  # holdings one probe reads at most looking for a challengeable one


def _tag_key_of(state: State, fid: str, tag_keys: dict[str, bytes]) -> bytes:
    """The key that tagged ``fid`` (b"": not tagged), read once per round."""
    if fid not in tag_keys:
        record = files.get_file(state, fid)
        tag_keys[fid] = record.tag_key_id if record and record.tagged else b""
    return tag_keys[fid]


def _walk_wrapping(state: State, base: bytes, start: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Keys under ``base`` from ``start`` to the end, then from the start of ``base``;
    at most SAMPLE_SCAN_LIMIT of them."""
    walked = 0
    for key, raw in state.iter_range(start, prefix_end(base)):
        yield key, raw
        walked += 1
        if walked == SAMPLE_SCAN_LIMIT:
            return
    for key, raw in state.iter_range(base, start):
        yield key, raw
        walked += 1
        if walked == SAMPLE_SCAN_LIMIT:
            return


def sample_holdings(
    state: State, seed: bytes, miner: bytes, tag_keys: dict[str, bytes], params: ChainParams
) -> list[Holding]:
    """Up to ``fragments_per_challenge`` distinct challengeable holdings of ``miner``, chosen
    from ``seed`` without reading all it holds (issue 12: a round must not cost O(holdings)).

    Each probe draws a fid position from the seed and lands on the miner's next file there
    (wrapping), then a segment/fragment position inside that file; it takes the first holding
    from there that is tagged and not reported lost, reading at most SAMPLE_SCAN_LIMIT keys.
    fids are hashes, so files are drawn near uniformly; the cost is bounded by the sample size.
    """
    base = HOLD + miner
    wanted = params.podr2.fragments_per_challenge
    picked: dict[bytes, Holding] = {}
    for probe in range(wanted * SAMPLE_PROBES_PER_FRAGMENT):
        if len(picked) == wanted:
            break
        word = hashlib.sha256(seed + miner + b"sample" + probe.to_bytes(4, "big")).digest()
        landing = next(iter(_walk_wrapping(state, base, base + word)), None)
        if landing is None:
            return []  # holds nothing
        file_base = landing[0][: len(base) + 32]
        for _, raw in _walk_wrapping(state, file_base, file_base + word[:6]):
            holding = codec.decode(raw, Holding)
            if holding.fragment_hash in picked or not _challengeable(state, holding, miner):
                continue
            if _tag_key_of(state, holding.fid, tag_keys):
                picked[holding.fragment_hash] = holding
                break
    return list(picked.values())


def _open_round(state: State, ctx: BlockContext, params: ChainParams, events: BlockEvents) -> None:
    previous = current_round(state)
    number = previous.number + 1 if previous else 1
    for key, _ in list(state.iter_prefix(CHALLENGE)):
        state.delete(key)
    seed = ctx.derive(b"audit-round", number.to_bytes(8, "big"))
    tag_keys: dict[str, bytes] = {}
    challenged = 0
    for pubkey, miner in miners.all_miners(state):
        if miner.state not in (miners.MinerState.ACTIVE, miners.MinerState.EXITING):
            continue
        holdings = sample_holdings(state, seed, pubkey, tag_keys, params)
        keys = miner_challenge(seed, pubkey, holdings, tag_keys, params)
        if keys:
            put_record(state, CHALLENGE + pubkey, Challenge(round=number, keys=keys))
            challenged += 1
    deadline = ctx.height + params.proof_deadline_blocks
    put_record(
        state,
        ROUND,
        Round(
            number=number,
            seed=seed,
            started_at=ctx.height,
            deadline=deadline,
            challenged=challenged,
        ),
    )
    events.emit(
        "audit.round", round=number, seed=seed.hex(), deadline=deadline, challenged=challenged
    )


def _fault(
    state: State, ctx: BlockContext, params: ChainParams, pubkey: bytes, events: EventSink
) -> None:
    miner = miners.require_miner(state, pubkey)
    faults = miner.consecutive_faults + 1
    updated = replace(miner, consecutive_faults=faults, total_faults=miner.total_faults + 1)
    # only a miner the table lets go FAULTY does (an exiting one keeps counting faults)
    if faults >= params.max_consecutive_faults and miners.may_transition(
        miner, miners.MinerState.FAULTY
    ):
        miners.transition(state, pubkey, updated, miners.MinerState.FAULTY, faulty_at=ctx.height)
        restoral.create_orders_for_miner(state, ctx.height, pubkey, "miner faulty", events)
        events.emit("miner.faulty", miner=address_of(pubkey), faults=faults)
        return
    miners.put_miner(state, pubkey, updated)


def apply_recover(state: State, ctx: TxContext, call: miners.RecoverMiner) -> None:
    """FAULTY -> ACTIVE, after the cool-down, with the stake its capacity requires.

    It keeps no credit for what it held when it failed: each of its fragments with a restoral
    order naming it former holder is released (no longer in its service space nor challenged).
    The order stands and the file record still names it until the fragment is rebuilt elsewhere
    (completion moves the placement and tells the miner to drop its copy). Consecutive faults
    start again from zero.

    Raises:
        NotFound (not a miner), InvalidTransition (not FAULTY, or in the cool-down),
        InvalidArgument (stake under the requirement: ``miners.add_stake`` first).
    """
    miner = miners.require_miner(state, ctx.sender)
    if not miners.may_transition(miner, miners.MinerState.ACTIVE):
        raise InvalidTransition(f"only a faulty miner can recover, this one is {miner.state.name}")
    params = load_params(state)
    ready = miners.recovery_height(params, miner)
    if ctx.block.height < ready:
        raise InvalidTransition(f"the miner may recover from height {ready} (cool-down)")
    needed = miners.required_stake(params, miner.capacity_bytes)
    if miner.stake < needed:
        raise InvalidArgument(
            f"stake {miner.stake} is below the {needed} its capacity needs: "
            f"add {needed - miner.stake} with miners.add_stake first"
        )
    released = 0
    for h in list(holdings_of(state, ctx.sender)):
        order = restoral.order_for(state, h)
        if order is not None and order.former == ctx.sender:
            drop_holding(state, ctx.sender, h.fid, h.segment, h.fragment, h.size)
            released += 1
    miner = miners.require_miner(state, ctx.sender)
    miners.transition(state, ctx.sender, miner, miners.MinerState.ACTIVE, consecutive_faults=0)
    ctx.emit("miner.recovered", miner=ctx.sender_address, released=released)


def _settle(
    state: State, ctx: BlockContext, params: ChainParams, round_: Round, events: BlockEvents
) -> None:
    passed: list[tuple[bytes, int]] = []
    for key, raw in list(state.iter_prefix(CHALLENGE)):
        pubkey = key[len(CHALLENGE) :]
        challenge = codec.decode(raw, Challenge)
        if challenge.result == Result.PENDING:
            amount = miners.slash(state, pubkey, params.slash_missed_bps)
            put_record(state, key, replace(challenge, result=Result.MISSED, reason="no proof"))
            events.emit(
                "audit.missed", miner=address_of(pubkey), round=round_.number, slashed=amount
            )
            _fault(state, ctx, params, pubkey, events)
        elif challenge.result == Result.PASSED:
            miner = miners.require_miner(state, pubkey)
            miners.put_miner(state, pubkey, replace(miner, consecutive_faults=0))
            passed.append((pubkey, miner.service_bytes))
    total = sum(service for _, service in passed)
    for pubkey, service in passed:
        share = params.reward_per_round * service // total if total else 0
        paid = accounts.treasury_pay(state, pubkey, share)
        if paid:
            miner = miners.require_miner(state, pubkey)
            miners.put_miner(state, pubkey, replace(miner, rewards=miner.rewards + paid))
            events.emit("audit.reward", miner=address_of(pubkey), round=round_.number, amount=paid)
    put_record(state, ROUND, replace(round_, settled=True))


def settle_round_if_due(
    state: State, ctx: BlockContext, params: ChainParams, events: BlockEvents
) -> None:
    """Block step: at (or after) its deadline the current round is settled once: MISSED
    answers slashed, PASSED miners rewarded."""
    round_ = current_round(state)
    if round_ is not None and not round_.settled and ctx.height >= round_.deadline:
        _settle(state, ctx, params, round_, events)


def open_round_if_due(
    state: State, ctx: BlockContext, params: ChainParams, events: BlockEvents
) -> None:
    """Block step: every ``challenge_interval_blocks`` a new round opens."""
    if ctx.height % params.challenge_interval_blocks == 0:
        _open_round(state, ctx, params, events)


def apply_submit_proof(state: State, ctx: TxContext, call: SubmitProof) -> None:
    """A challenged miner answers its round's challenge, one aggregated proof per tag key.

    A proof that does not verify is accepted as a FAILED answer and slashed; refusals (wrong
    round, not challenged, already answered, past the deadline, wrong keys) change nothing.
    """
    round_ = current_round(state)
    if round_ is None or call.round != round_.number:
        raise InvalidArgument(
            f"round {call.round} is not the current round {round_.number if round_ else 0}"
        )
    key = CHALLENGE + ctx.sender
    challenge = get_record(state, key, Challenge)
    if challenge is None:
        raise NotFound(f"{ctx.sender_address} is not challenged in round {round_.number}")
    if round_.settled or ctx.block.height > round_.deadline:
        raise InvalidTransition(f"round {round_.number} closed at height {round_.deadline}")
    if challenge.result != Result.PENDING:
        raise AlreadyExists(f"round {round_.number} is already answered ({challenge.result.name})")
    if [p.key_id for p in call.proofs] != [k.key_id for k in challenge.keys]:
        raise InvalidArgument("one proof per challenged tag key is needed, in key order")
    failure = ""
    for key_challenge, key_proof in zip(challenge.keys, call.proofs, strict=True):
        public = schedulers.tag_key_by_id(state, key_challenge.key_id)
        if public is None:
            continue  # the key's scheduler is gone: nothing to check against
        try:
            verify_proof(public, key_challenge.items, key_proof.proof)
        except DataPathError as exc:
            failure = f"key {key_challenge.key_id.hex()[:16]}: {exc}"
            break
    if failure:
        params = load_params(state)
        amount = miners.slash(state, ctx.sender, params.slash_failed_bps)
        put_record(state, key, replace(challenge, result=Result.FAILED, reason=failure))
        ctx.emit(
            "audit.failed",
            miner=ctx.sender_address,
            round=round_.number,
            slashed=amount,
            reason=failure,
        )
        _fault(state, ctx.block, params, ctx.sender, ctx)
        return
    put_record(state, key, replace(challenge, result=Result.PASSED))
    ctx.emit("audit.passed", miner=ctx.sender_address, round=round_.number)


def query_round(state: State, args: QueryArgs) -> bytes:
    round_ = current_round(state)
    if round_ is None:
        raise NotFound("no challenge round yet")
    return encode_value(round_)


def query_challenge(state: State, args: QueryArgs) -> bytes:
    challenge = get_record(state, CHALLENGE + address_arg(args.address), Challenge)
    if challenge is None:
        raise NotFound(f"{args.address} has no challenge in the current round")
    return encode_value(challenge)


def query_challenges(state: State, args: QueryArgs) -> bytes:
    return encode_value(
        [
            ChallengeEntry(
                address=address_of(key[len(CHALLENGE) :]), challenge=codec.decode(raw, Challenge)
            )
            for key, raw in state.iter_prefix(CHALLENGE)
        ]
    )


HANDLERS = {SubmitProof: apply_submit_proof, miners.RecoverMiner: apply_recover}
QUERIES: dict[str, QueryHandler] = {
    "round": query_round,
    "challenge": query_challenge,
    "challenges": query_challenges,
}
