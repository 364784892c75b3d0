"""Files and objects: what SUCCESS deals leave behind.

A file is the stored form of a fid: its declared segments, and for each segment the miner
holding each fragment (all distinct within a segment; the holdings: deoss.chain.modules.holdings).
Objects are (owner, bucket, name) -> (fid, size); several objects may share a file
(deduplication by fid), and the file goes away with its last object. After SUCCESS the
reporting scheduler must tag the file within ``tag_timeout_blocks`` (the ``tag-dl/`` index
written here; the tagging calls and the late-tagger step: deoss.chain.modules.tagging).

Keys: ``file/<fid>`` -> FileRecord; ``obj/<owner><bucket>\\0<name>`` -> ObjectRecord;
``tag-dl/<height><fid>`` -> b"";
``file-gone/<fid>`` -> b"" (files deleted in this block, for restoral to cancel their orders);
``owns/<owner><fid>`` -> u32 (how many objects of the owner use the fid: lets a miner check in
one read that a download it serves is for an owner of the file, docs/podr2.md).
"""

from __future__ import annotations

from msgspec.structs import replace

from deoss.chain.errors import InvalidArgument, NotFound
from deoss.chain.genesis import ChainParams
from deoss.chain.modules import buckets, space
from deoss.chain.modules.gateways import acting_owner
from deoss.chain.modules.holdings import drop_holding, holdings_of, set_holding
from deoss.chain.params import load_params
from deoss.chain.query import QueryArgs, QueryHandler, address_arg, encode_value, page_limit
from deoss.chain.state import State, get_record, put_record
from deoss.chain.types import BlockContext, BlockEvents, Call, EventSink, PubKey, TxContext
from deoss.core import codec
from deoss.core.codec import Record
from deoss.core.keys import address_of
from deoss.core.layout import SegmentPlan

FILE = b"file/"
OBJECT = b"obj/"
TAG_DEADLINE = b"tag-dl/"
OWNS = b"owns/"
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


def get_file(state: State, fid: str) -> FileRecord | None:
    return get_record(state, FILE + fid_key(fid), FileRecord)


def put_file(state: State, record: FileRecord) -> None:
    put_record(state, FILE + bytes.fromhex(record.fid), record)


def get_object(state: State, owner: bytes, bucket: str, name: str) -> ObjectRecord | None:
    return get_record(state, object_key(owner, bucket, name), ObjectRecord)


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


def apply_delete(state: State, ctx: TxContext, call: DeleteObject) -> None:
    """Delete an object of the owner (the sender or a user who authorized it)."""
    owner = acting_owner(state, ctx, call.owner)
    buckets.require_bucket(state, owner, call.bucket)
    remove_object(state, owner, call.bucket, call.name, ctx)
    ctx.emit("object.deleted", owner=address_of(owner), bucket=call.bucket, name=call.name)


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


HANDLERS = {DeleteObject: apply_delete}
QUERIES: dict[str, QueryHandler] = {
    "file": query_file,
    "object": query_object,
    "objects": query_objects,
    "owns": query_owns,
    "holdings": query_holdings,
}
