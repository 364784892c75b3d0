"""Tagging a stored file: the tagger's report, the holders' late confirmations, late taggers.

After SUCCESS the reporting scheduler must tag the file within ``tag_timeout_blocks``; a late
scheduler is penalised and another one is asked (``reassign_late_tagging``, a block step).

Tags are believed only on the holders' word (docs/tag-confirmations.md): ``files.tagged``
carries, per fragment, a confirmation its holder signed over ``tags.tags_message`` (it stored
tags that verified against the fragment, under the tagger's key), and the file is tagged only
when every segment has at least k confirmed holdings. A holding is challenged only once
confirmed (``Holding.tags_confirmed``); a holder confirms later with ``files.confirm_tags`` (its
own tx is the evidence), a restorer with ``restoral.complete``. A holding still unconfirmed
``tag_confirm_blocks`` after the file is tagged is released and its fragment rebuilt elsewhere
(``restoral``, from the ``tag-due/`` index of deoss.chain.modules.holdings).

The calls keep their ``files.`` tags (the wire format): they are registered right after
deoss.chain.modules.files (deoss.chain.calls).

Keys: ``tag-dl/<height><fid>`` (files.TAG_DEADLINE), read and rewritten here.
"""

from __future__ import annotations

from msgspec.structs import replace

from deoss.chain.errors import (
    AlreadyExists,
    BadReport,
    InvalidArgument,
    InvalidTransition,
    NotFound,
    Unauthorized,
)
from deoss.chain.genesis import ChainParams
from deoss.chain.modules import schedulers
from deoss.chain.modules.files import FILE, TAG_DEADLINE, FileRecord, get_file, put_file
from deoss.chain.modules.holdings import confirm_holding, get_holding, put_holding
from deoss.chain.modules.tags import TagConfirmation, tags_message
from deoss.chain.params import load_params
from deoss.chain.query import QueryHandler
from deoss.chain.state import State, get_record
from deoss.chain.types import BlockContext, BlockEvents, Call, TxContext
from deoss.core.errors import DataPathError
from deoss.core.keys import address_of, verify


class ReportTagged(Call, tag="files.tagged"):
    fid: str
    confirmations: list[TagConfirmation] = []


class ConfirmTags(Call, tag="files.confirm_tags"):
    """A holder confirms it stores verified tags, under ``key_id``, of the fragment it holds in
    each of ``segments`` (a miner holds at most one fragment per segment)."""

    fid: str
    key_id: bytes
    segments: list[int]


def apply_tagged(state: State, ctx: TxContext, call: ReportTagged) -> None:
    """The scheduler in charge reports the file tagged, with its holders' confirmations.

    Every confirmation must be signed by the miner holding exactly that fragment now, over
    ``tags_message`` with the sender's tag key id; every segment needs at least k of them. The
    holdings confirmed are challenged from now on; the others must confirm within
    ``tag_confirm_blocks`` (``files.confirm_tags``) or are released and rebuilt elsewhere.

    Raises:
        NotFound, InvalidTransition (tagged already), Unauthorized (not its tagger),
        BadReport (a confirmation that does not verify, or too few): nothing changes.
    """
    record = get_file(state, call.fid)
    if record is None:
        raise NotFound(f"no file {call.fid}")
    if record.tagged:
        raise InvalidTransition(f"file {call.fid} is already tagged")
    if record.tagger != ctx.sender:
        raise Unauthorized(f"file {call.fid} is to be tagged by {address_of(record.tagger)}")
    scheduler = schedulers.get_scheduler(state, ctx.sender)
    if scheduler is None:
        raise Unauthorized("the sender is not a scheduler")
    key_id = scheduler.tag_key.key_id
    confirmed = _check_confirmations(state, ctx.block.chain_id, record, key_id, call.confirmations)
    params = load_params(state)
    needed = params.layout.data_shards
    for index, row in enumerate(record.holders):
        have = sum((index, fragment) in confirmed for fragment in range(len(row)))
        if have < needed:
            raise BadReport(f"segment {index}: {have} holder(s) confirmed tags, {needed} needed")
    due = ctx.block.height + params.tag_confirm_blocks
    for index, row in enumerate(record.holders):
        for fragment, miner in enumerate(row):
            holding = get_holding(state, miner, call.fid, index, fragment)
            if holding is None:
                continue  # released already (a recovered miner's): restoral rebuilds it
            if (index, fragment) in confirmed:
                confirm_holding(state, miner, holding)
            else:
                put_holding(state, miner, replace(holding, confirm_due=due))
    state.delete(TAG_DEADLINE + record.tag_deadline.to_bytes(8, "big") + bytes.fromhex(call.fid))
    put_file(state, replace(record, tagged=True, tag_key_id=key_id))
    ctx.emit(
        "file.tagged",
        fid=call.fid,
        scheduler=ctx.sender_address,
        confirmed=len(confirmed),
        unconfirmed=sum(len(row) for row in record.holders) - len(confirmed),
    )


def _check_confirmations(
    state: State,
    chain_id: str,
    record: FileRecord,
    key_id: bytes,
    confirmations: list[TagConfirmation],
) -> set[tuple[int, int]]:
    """The (segment, fragment) positions confirmed; BadReport at the first bad confirmation."""
    confirmed: set[tuple[int, int]] = set()
    for c in confirmations:
        where = f"confirmation of segment {c.segment} fragment {c.fragment}"
        if not 0 <= c.segment < len(record.holders) or not 0 <= c.fragment < len(
            record.holders[c.segment]
        ):
            raise BadReport(f"{where}: file {record.fid} has no such fragment")
        if (c.segment, c.fragment) in confirmed:
            raise BadReport(f"{where}: given twice")
        holder = record.holders[c.segment][c.fragment]
        if c.miner != holder:
            raise BadReport(
                f"{where}: signed by {address_of(c.miner)}, the fragment is held by "
                f"{address_of(holder)}"
            )
        if get_holding(state, holder, record.fid, c.segment, c.fragment) is None:
            raise BadReport(f"{where}: {address_of(holder)} was released from this fragment")
        message = tags_message(
            chain_id,
            record.fid,
            c.segment,
            c.fragment,
            record.segments[c.segment].fragment_hashes[c.fragment],
            key_id,
            c.miner,
        )
        try:
            verify(c.miner, message, c.signature)
        except DataPathError as exc:
            raise BadReport(
                f"{where}: the signature of {address_of(c.miner)} does not verify for tag key "
                f"{key_id.hex()}"
            ) from exc
        confirmed.add((c.segment, c.fragment))
    return confirmed


def apply_confirm_tags(state: State, ctx: TxContext, call: ConfirmTags) -> None:
    """A holder confirms tags it obtained after the file was tagged (the tx is its signature).

    Raises:
        NotFound (file; or the sender holds no fragment of a segment, or was released from it),
        InvalidTransition (the file is not tagged), InvalidArgument (another key, bad or
        repeated segments), AlreadyExists (confirmed already): nothing changes.
    """
    record = get_file(state, call.fid)
    if record is None:
        raise NotFound(f"no file {call.fid}")
    if not record.tagged:
        raise InvalidTransition(f"file {call.fid} is not tagged yet: its tagger collects tags")
    if call.key_id != record.tag_key_id:
        raise InvalidArgument(
            f"file {call.fid} is tagged with key {record.tag_key_id.hex()}, not {call.key_id.hex()}"
        )
    if not call.segments or len(set(call.segments)) != len(call.segments):
        raise InvalidArgument("segments must be distinct and at least one")
    holdings = []
    for segment in call.segments:
        if not 0 <= segment < len(record.holders):
            raise InvalidArgument(f"file {call.fid} has no segment {segment}")
        row = record.holders[segment]
        if ctx.sender not in row:
            raise NotFound(f"the sender holds no fragment of segment {segment}")
        holding = get_holding(state, ctx.sender, call.fid, segment, row.index(ctx.sender))
        if holding is None:
            raise NotFound(f"the sender was released from its fragment of segment {segment}")
        if holding.tags_confirmed:
            raise AlreadyExists(f"segment {segment}: tags are confirmed already")
        holdings.append(holding)
    for holding in holdings:
        confirm_holding(state, ctx.sender, holding)
    ctx.emit(
        "file.tags_confirmed",
        fid=call.fid,
        miner=ctx.sender_address,
        segments=",".join(str(s) for s in call.segments),
    )


def _reassign_tagging(
    state: State, ctx: BlockContext, params: ChainParams, fid_raw: bytes, events: BlockEvents
) -> None:
    record = get_record(state, FILE + fid_raw, FileRecord)
    if record is None or record.tagged:
        return
    taken = schedulers.penalize(state, record.tagger, params.late_tag_penalty)
    candidates = [s for s in schedulers.active_schedulers(state) if s != record.tagger]
    candidates = candidates or schedulers.active_schedulers(state) or [record.tagger]
    pick = int.from_bytes(ctx.derive(b"tagger", fid_raw), "big") % len(candidates)
    deadline = ctx.height + params.tag_timeout_blocks
    put_file(state, replace(record, tagger=candidates[pick], tag_deadline=deadline))
    state.put(TAG_DEADLINE + deadline.to_bytes(8, "big") + fid_raw, b"")
    events.emit(
        "file.tag_reassigned",
        fid=record.fid,
        late=address_of(record.tagger),
        tagger=address_of(candidates[pick]),
        penalty=taken,
    )


def reassign_late_tagging(
    state: State, ctx: BlockContext, params: ChainParams, events: BlockEvents
) -> None:
    """Block step: files still untagged at their tag deadline: the tagger is penalised and
    another scheduler drawn from the block seed becomes the tagger."""
    for key, _ in state.iter_prefix(TAG_DEADLINE):
        if int.from_bytes(key[len(TAG_DEADLINE) : len(TAG_DEADLINE) + 8], "big") > ctx.height:
            break
        state.delete(key)
        _reassign_tagging(state, ctx, params, key[len(TAG_DEADLINE) + 8 :], events)


HANDLERS = {
    ReportTagged: apply_tagged,
    ConfirmTags: apply_confirm_tags,
}
QUERIES: dict[str, QueryHandler] = {}
