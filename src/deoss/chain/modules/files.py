"""Files, objects and fragment holdings: what SUCCESS deals leave behind.

A file is the stored form of a fid: its declared segments, and for each segment the miner
holding each fragment (all distinct within a segment). Objects are (owner, bucket, name) ->
(fid, size); several objects may share a file (deduplication by fid), and the file goes away
with its last object. After SUCCESS the reporting scheduler must tag the file within
``tag_timeout_blocks``; a late scheduler is penalised and another one is asked.

Tags are believed only on the holders' word (docs/tag-confirmations.md): ``files.tagged``
carries, per fragment, a confirmation its holder signed over ``tags_message`` (it stored tags
that verified against the fragment, under the tagger's key), and the file is tagged only when
every segment has at least k confirmed holdings. A holding is challenged only once confirmed
(``Holding.tags_confirmed``); a holder confirms later with ``files.confirm_tags`` (its own tx is
the evidence), a restorer with ``restoral.complete``. A holding still unconfirmed
``tag_confirm_blocks`` after the file is tagged is released and its fragment rebuilt elsewhere
(``restoral``, from the ``tag-due/`` index).

Keys: ``file/<fid>`` -> FileRecord; ``obj/<owner><bucket>\\0<name>`` -> ObjectRecord;
``hold/<miner><fid><segment:4><fragment:2>`` -> Holding; ``tag-dl/<height><fid>`` -> b"";
``tag-due/<height:8><miner><fid><segment:4><fragment:2>`` -> b"" (unconfirmed holdings of
tagged files, by the height they are released at);
``file-gone/<fid>`` -> b"" (files deleted in this block, for restoral to cancel their orders);
``owns/<owner><fid>`` -> u32 (how many objects of the owner use the fid: lets a miner check in
one read that a download it serves is for an owner of the file, docs/podr2.md).
"""

from __future__ import annotations

from collections.abc import Iterator

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
from deoss.chain.modules import buckets, miners, schedulers, space
from deoss.chain.modules.gateways import acting_owner
from deoss.chain.params import load_params
from deoss.chain.query import QueryArgs, QueryHandler, address_arg, encode_value, page_limit
from deoss.chain.state import State, get_record, put_record
from deoss.chain.types import (
    BlockContext,
    BlockEvents,
    Call,
    EventSink,
    Hash32,
    PubKey,
    Sig64,
    TxContext,
)
from deoss.core import codec
from deoss.core.codec import Record
from deoss.core.errors import DataPathError
from deoss.core.keys import address_of, verify
from deoss.core.layout import SegmentPlan

FILE = b"file/"
OBJECT = b"obj/"
HOLD = b"hold/"
TAG_DEADLINE = b"tag-dl/"
OWNS = b"owns/"
TAG_CONFIRM_DUE = b"tag-due/"
TAGS_DOMAIN = b"deoss-tags-v1"
GONE = b"file-gone/"  # outbox: fids deleted in this block; restoral cancels their orders
MAX_NAME_BYTES = 1024


class FileRecord(Record):
    fid: str
    segments: list[SegmentPlan]
    holders: list[list[PubKey]]
    owners: int
    reporter: PubKey
    tagger: PubKey
    tag_deadline: int
    created_at: int
    tagged: bool = False
    tag_key_id: bytes = b""


class ObjectRecord(Record):
    fid: str
    size: int
    created_at: int


class ObjectEntry(Record):
    name: str
    fid: str
    size: int
    created_at: int


class Holding(Record):
    """One fragment a miner holds, as the audit and restoral need it."""

    fid: str
    segment: int
    fragment: int
    fragment_hash: Hash32
    size: int
    # the holder confirmed it stores verified tags under the file's tag key: only then is the
    # holding challenged (a holder is never slashed for tags it could not obtain)
    tags_confirmed: bool = False
    # while the file is tagged and this is not confirmed: the height it is released at
    confirm_due: int = 0


class TagConfirmation(Record):
    """A holder's signature over ``tags_message`` for the fragment at (segment, fragment)."""

    segment: int
    fragment: int
    miner: PubKey
    signature: Sig64


class TagsBody(Record):
    chain_id: str
    fid: str
    segment: int
    fragment: int
    fragment_hash: bytes
    key_id: bytes
    miner: PubKey


def tags_message(
    chain_id: str,
    fid: str,
    segment: int,
    fragment: int,
    fragment_hash: bytes,
    key_id: bytes,
    miner: bytes,
) -> bytes:
    """What a holder signs once it stored tags of its fragment that verified under ``key_id``
    (the same shape as ``deals.receipt_message``, another domain)."""
    body = TagsBody(
        chain_id=chain_id,
        fid=fid,
        segment=segment,
        fragment=fragment,
        fragment_hash=fragment_hash,
        key_id=key_id,
        miner=miner,
    )
    return TAGS_DOMAIN + codec.encode(body)


def fid_key(fid: str) -> bytes:
    try:
        raw = bytes.fromhex(fid)
    except ValueError as exc:
        raise InvalidArgument(f"fid {fid!r} is not hexadecimal") from exc
    if len(raw) != 32 or fid != raw.hex():
        raise InvalidArgument(f"fid {fid!r} is not 64 lowercase hex digits")
    return raw


def check_object_name(name: str) -> None:
    if not isinstance(name, str) or not 0 < len(name.encode()) <= MAX_NAME_BYTES:
        raise InvalidArgument(f"object name must be 1..{MAX_NAME_BYTES} bytes of UTF-8")
    if "\x00" in name or not name.isprintable():
        raise InvalidArgument("object name must not contain control characters")


def object_key(owner: bytes, bucket: str, name: str) -> bytes:
    return OBJECT + owner + bucket.encode() + b"\x00" + name.encode()


def hold_key(miner: bytes, fid: str, segment: int, fragment: int) -> bytes:
    return (
        HOLD + miner + bytes.fromhex(fid) + segment.to_bytes(4, "big") + fragment.to_bytes(2, "big")
    )


def get_file(state: State, fid: str) -> FileRecord | None:
    return get_record(state, FILE + fid_key(fid), FileRecord)


def put_file(state: State, record: FileRecord) -> None:
    put_record(state, FILE + bytes.fromhex(record.fid), record)


def get_object(state: State, owner: bytes, bucket: str, name: str) -> ObjectRecord | None:
    return get_record(state, object_key(owner, bucket, name), ObjectRecord)


def holdings_of(state: State, miner: bytes) -> Iterator[Holding]:
    for _, raw in state.iter_prefix(HOLD + miner):
        yield codec.decode(raw, Holding)


def fragment_size(params: ChainParams, segment: SegmentPlan) -> int:
    return params.layout.fragment_size(segment)


def store_file(
    state: State,
    ctx: BlockContext,
    fid: str,
    segments: list[SegmentPlan],
    holders: list[list[bytes]],
    reporter: bytes,
) -> FileRecord:
    """Record a new file and its holdings; miners' service space grows."""
    params = load_params(state)
    deadline = ctx.height + params.tag_timeout_blocks
    record = FileRecord(
        fid=fid,
        segments=segments,
        holders=holders,
        owners=0,
        reporter=reporter,
        tagger=reporter,
        tag_deadline=deadline,
        created_at=ctx.height,
    )
    put_file(state, record)
    state.put(TAG_DEADLINE + deadline.to_bytes(8, "big") + bytes.fromhex(fid), b"")
    for segment, row in zip(segments, holders, strict=True):
        size = fragment_size(params, segment)
        for index, miner in enumerate(row):
            set_holding(state, miner, fid, segment, index, size)
    return record


def set_holding(
    state: State,
    miner: bytes,
    fid: str,
    segment: SegmentPlan,
    index: int,
    size: int,
    *,
    tags_confirmed: bool = False,
    confirm_due: int = 0,
) -> None:
    """A new holding (its miner's service space grows); ``confirm_due`` > 0 indexes it for
    release at that height unless its tags are confirmed before."""
    _put_holding(
        state,
        miner,
        Holding(
            fid=fid,
            segment=segment.index,
            fragment=index,
            fragment_hash=segment.fragment_hashes[index],
            size=size,
            tags_confirmed=tags_confirmed,
            confirm_due=confirm_due,
        ),
    )
    miners.add_service(state, miner, size)


def _put_holding(state: State, miner: bytes, holding: Holding) -> None:
    put_record(state, hold_key(miner, holding.fid, holding.segment, holding.fragment), holding)
    if holding.confirm_due:
        state.put(confirm_due_key(holding.confirm_due, miner, holding), b"")


def confirm_due_key(height: int, miner: bytes, holding: Holding) -> bytes:
    return (
        TAG_CONFIRM_DUE
        + height.to_bytes(8, "big")
        + hold_key(miner, holding.fid, holding.segment, holding.fragment)[len(HOLD) :]
    )


def get_holding(state: State, miner: bytes, fid: str, segment: int, index: int) -> Holding | None:
    return get_record(state, hold_key(miner, fid, segment, index), Holding)


def confirm_holding(state: State, miner: bytes, holding: Holding) -> None:
    """The holder stores verified tags: the holding is challenged from now on, never released
    for want of tags."""
    if holding.confirm_due:
        state.delete(confirm_due_key(holding.confirm_due, miner, holding))
    _put_holding(state, miner, replace(holding, tags_confirmed=True, confirm_due=0))


def drop_holding(state: State, miner: bytes, fid: str, segment: int, index: int, size: int) -> None:
    holding = get_holding(state, miner, fid, segment, index)
    if holding is None:
        return  # already released (a recovered miner's): its space must not shrink twice
    if holding.confirm_due:
        state.delete(confirm_due_key(holding.confirm_due, miner, holding))
    state.delete(hold_key(miner, fid, segment, index))
    miners.add_service(state, miner, -size)


def owns_key(owner: bytes, fid: str) -> bytes:
    return OWNS + owner + fid_key(fid)


def owned_count(state: State, owner: bytes, fid: str) -> int:
    raw = state.get(owns_key(owner, fid))
    return int.from_bytes(raw, "big") if raw is not None else 0


def _adjust_owned(state: State, owner: bytes, fid: str, delta: int) -> None:
    count = owned_count(state, owner, fid) + delta
    if count > 0:
        state.put(owns_key(owner, fid), count.to_bytes(4, "big"))
    else:
        state.delete(owns_key(owner, fid))


def take_unconfirmed_holdings_due(state: State, height: int) -> list[tuple[bytes, Holding]]:
    """The (miner, holding) pairs whose tag confirmation was due by ``height`` and never came;
    their index entries are removed. Reads only the due entries (the index is by height)."""
    out: list[tuple[bytes, Holding]] = []
    for key, _ in state.iter_prefix(TAG_CONFIRM_DUE):
        start = len(TAG_CONFIRM_DUE)
        due = int.from_bytes(key[start : start + 8], "big")
        if due > height:
            break
        state.delete(key)
        raw = key[start + 8 :]
        miner, fid = raw[:32], raw[32:64].hex()
        segment = int.from_bytes(raw[64:68], "big")
        index = int.from_bytes(raw[68:70], "big")
        holding = get_holding(state, miner, fid, segment, index)
        if holding is not None and not holding.tags_confirmed and holding.confirm_due == due:
            out.append((miner, holding))
    return out


def add_object(
    state: State, height: int, owner: bytes, bucket: str, name: str, fid: str, size: int
) -> None:
    """Create an object for an existing file (its space is already charged)."""
    record = get_file(state, fid)
    if record is None:
        raise NotFound(f"no file {fid}")
    put_file(state, replace(record, owners=record.owners + 1))
    put_record(
        state, object_key(owner, bucket, name), ObjectRecord(fid=fid, size=size, created_at=height)
    )
    buckets.adjust(state, owner, bucket, objects=1)
    _adjust_owned(state, owner, fid, 1)


def remove_object(state: State, owner: bytes, bucket: str, name: str, events: EventSink) -> None:
    """Delete an object; the last object of a file removes the file and frees the miners."""
    key = object_key(owner, bucket, name)
    obj = get_record(state, key, ObjectRecord)
    if obj is None:
        raise NotFound(f"no object {name!r} in bucket {bucket!r}")
    state.delete(key)
    buckets.adjust(state, owner, bucket, objects=-1)
    _adjust_owned(state, owner, obj.fid, -1)
    space.release(state, owner, obj.size)
    record = get_file(state, obj.fid)
    if record is None:
        return
    if record.owners > 1:
        put_file(state, replace(record, owners=record.owners - 1))
        return
    params = load_params(state)
    for segment, row in zip(record.segments, record.holders, strict=True):
        for index, miner in enumerate(row):
            drop_holding(
                state, miner, record.fid, segment.index, index, fragment_size(params, segment)
            )
    state.delete(TAG_DEADLINE + record.tag_deadline.to_bytes(8, "big") + bytes.fromhex(obj.fid))
    state.delete(FILE + bytes.fromhex(obj.fid))
    state.put(GONE + bytes.fromhex(obj.fid), b"")
    events.emit("file.deleted", fid=obj.fid)


class DeleteObject(Call, tag="files.delete"):
    bucket: str
    name: str
    owner: str = ""


class ReportTagged(Call, tag="files.tagged"):
    fid: str
    confirmations: list[TagConfirmation] = []


class ConfirmTags(Call, tag="files.confirm_tags"):
    """A holder confirms it stores verified tags, under ``key_id``, of the fragment it holds in
    each of ``segments`` (a miner holds at most one fragment per segment)."""

    fid: str
    key_id: bytes
    segments: list[int]


def apply_delete(state: State, ctx: TxContext, call: DeleteObject) -> None:
    """Delete an object of the owner (the sender or a user who authorized it)."""
    owner = acting_owner(state, ctx, call.owner)
    buckets.require_bucket(state, owner, call.bucket)
    remove_object(state, owner, call.bucket, call.name, ctx)
    ctx.emit("object.deleted", owner=address_of(owner), bucket=call.bucket, name=call.name)


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
                _put_holding(state, miner, replace(holding, confirm_due=due))
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


def purge_expired_objects(state: State, params: ChainParams, events: BlockEvents) -> None:
    """Block step: up to ``expiry_removals_per_block`` objects of owners whose lease is
    purging are removed; an owner with none left loses its lease record."""
    budget = params.expiry_removals_per_block
    for owner in space.purging_owners(state):
        for key, _ in state.iter_prefix(OBJECT + owner):
            if budget == 0:
                return
            bucket, _, name = key[len(OBJECT) + 32 :].partition(b"\x00")
            remove_object(state, owner, bucket.decode(), name.decode(), events)
            events.emit(
                "object.expired",
                owner=address_of(owner),
                bucket=bucket.decode(),
                name=name.decode(),
            )
            budget -= 1
        if not any(True for _ in state.iter_prefix(OBJECT + owner)):
            space.finish_purge(state, owner)
            events.emit("space.removed", owner=address_of(owner))


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


def query_file(state: State, args: QueryArgs) -> bytes:
    record = get_file(state, args.fid)
    if record is None:
        raise NotFound(f"no file {args.fid}")
    return encode_value(record)


def query_object(state: State, args: QueryArgs) -> bytes:
    obj = get_object(state, address_arg(args.owner, "owner"), args.bucket, args.name)
    if obj is None:
        raise NotFound(f"no object {args.name!r} in bucket {args.bucket!r}")
    return encode_value(obj)


def query_owns(state: State, args: QueryArgs) -> bytes:
    """How many objects of ``owner`` use file ``fid`` (0: none; one indexed read)."""
    return encode_value(owned_count(state, address_arg(args.owner, "owner"), args.fid))


def query_objects(state: State, args: QueryArgs) -> bytes:
    """Objects of a bucket in name order, after ``start_after``, with ``prefix``, ``limit``."""
    owner = address_arg(args.owner, "owner")
    base = OBJECT + owner + args.bucket.encode() + b"\x00"
    limit = page_limit(args)
    entries: list[ObjectEntry] = []
    for key, raw in state.iter_prefix(base + args.prefix.encode()):
        name = key[len(base) :].decode()
        if args.start_after and name <= args.start_after:
            continue
        obj = codec.decode(raw, ObjectRecord)
        entries.append(
            ObjectEntry(name=name, fid=obj.fid, size=obj.size, created_at=obj.created_at)
        )
        if len(entries) == limit:
            break
    return encode_value(entries)


def query_holdings(state: State, args: QueryArgs) -> bytes:
    return encode_value(list(holdings_of(state, address_arg(args.address))))


HANDLERS = {
    DeleteObject: apply_delete,
    ReportTagged: apply_tagged,
    ConfirmTags: apply_confirm_tags,
}
QUERIES: dict[str, QueryHandler] = {
    "file": query_file,
    "object": query_object,
    "objects": query_objects,
    "owns": query_owns,
    "holdings": query_holdings,
}
