"""Buckets: named containers of objects, per owner, with S3's naming rules.

A bucket can be deleted only when it holds no object and no deal in progress.
Keys: ``bucket/<owner><name>`` -> Bucket.
"""

from __future__ import annotations

import re

from msgspec.structs import replace

from deoss.chain.errors import AlreadyExists, InvalidArgument, InvalidTransition, NotFound
from deoss.chain.modules.gateways import acting_owner
from deoss.chain.query import QueryArgs, QueryHandler, address_arg, encode_value
from deoss.chain.state import State, get_record, put_record
from deoss.chain.types import Call, TxContext
from deoss.core.codec import Record

PREFIX = b"bucket/"
_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


class Bucket(Record):
    created_at: int
    object_count: int = 0
    pending_deals: int = 0


class BucketEntry(Record):
    name: str
    created_at: int
    object_count: int


def check_bucket_name(name: str) -> None:
    """S3 rules: 3..63 of a-z 0-9 . -, starting and ending alphanumeric, no '..', not an IP."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument(
            f"bucket name {name!r}: 3..63 characters of a-z, 0-9, '.', '-', "
            "starting and ending with a letter or digit"
        )
    if ".." in name or ".-" in name or "-." in name or _IP.match(name):
        raise InvalidArgument(f"bucket name {name!r}: no '..', '.-', '-.' and not an IP address")


def _key(owner: bytes, name: str) -> bytes:
    return PREFIX + owner + name.encode()


def get_bucket(state: State, owner: bytes, name: str) -> Bucket | None:
    return get_record(state, _key(owner, name), Bucket)


def require_bucket(state: State, owner: bytes, name: str) -> Bucket:
    bucket = get_bucket(state, owner, name)
    if bucket is None:
        raise NotFound(f"bucket {name!r} does not exist for this owner")
    return bucket


def adjust(state: State, owner: bytes, name: str, objects: int = 0, pending: int = 0) -> None:
    """Change a bucket's object and pending-deal counts."""
    bucket = require_bucket(state, owner, name)
    put_record(
        state,
        _key(owner, name),
        replace(
            bucket,
            object_count=bucket.object_count + objects,
            pending_deals=bucket.pending_deals + pending,
        ),
    )


class CreateBucket(Call, tag="buckets.create"):
    name: str
    owner: str = ""


class DeleteBucket(Call, tag="buckets.delete"):
    name: str
    owner: str = ""


def apply_create(state: State, ctx: TxContext, call: CreateBucket) -> None:
    """Create a bucket for the sender, or for a user who authorized the sender (gateway)."""
    owner = acting_owner(state, ctx, call.owner)
    check_bucket_name(call.name)
    if get_bucket(state, owner, call.name) is not None:
        raise AlreadyExists(f"bucket {call.name!r} already exists")
    put_record(state, _key(owner, call.name), Bucket(created_at=ctx.block.height))
    ctx.emit("bucket.created", owner=call.owner or ctx.sender_address, name=call.name)


def apply_delete(state: State, ctx: TxContext, call: DeleteBucket) -> None:
    """Delete an empty bucket."""
    owner = acting_owner(state, ctx, call.owner)
    bucket = require_bucket(state, owner, call.name)
    if bucket.object_count or bucket.pending_deals:
        raise InvalidTransition(
            f"bucket {call.name!r} holds {bucket.object_count} objects and "
            f"{bucket.pending_deals} deals in progress; delete them first"
        )
    state.delete(_key(owner, call.name))
    ctx.emit("bucket.deleted", owner=call.owner or ctx.sender_address, name=call.name)


def query_bucket(state: State, args: QueryArgs) -> bytes:
    return encode_value(require_bucket(state, address_arg(args.owner, "owner"), args.name))


def query_list(state: State, args: QueryArgs) -> bytes:
    prefix = PREFIX + address_arg(args.owner, "owner")
    entries = []
    for key, _ in state.iter_prefix(prefix):
        bucket = get_record(state, key, Bucket)
        if bucket is None:
            continue
        entries.append(
            BucketEntry(
                name=key[len(prefix) :].decode(),
                created_at=bucket.created_at,
                object_count=bucket.object_count,
            )
        )
    return encode_value(entries)


HANDLERS = {CreateBucket: apply_create, DeleteBucket: apply_delete}
QUERIES: dict[str, QueryHandler] = {"bucket": query_bucket, "list": query_list}
