"""Query plumbing shared by the modules: one argument record and the handler table shape."""

from __future__ import annotations

from collections.abc import Callable

from deoss.chain.errors import InvalidArgument
from deoss.chain.state import State
from deoss.core import codec
from deoss.core.codec import Record
from deoss.core.errors import DataPathError
from deoss.core.keys import parse_address

__all__ = ["MAX_PAGE", "QueryArgs", "QueryHandler", "address_arg", "encode_value"]

MAX_PAGE = 1000


class QueryArgs(Record):
    """Arguments of any query; each query reads the fields it documents (docs/chain.md)."""

    address: str = ""
    owner: str = ""
    bucket: str = ""
    name: str = ""
    id: int = 0
    fid: str = ""
    prefix: str = ""
    start_after: str = ""
    limit: int = 100
    key_id: str = ""  # a PoDR² tag key id, hex


QueryHandler = Callable[[State, QueryArgs], bytes]


def address_arg(text: str, what: str = "address") -> bytes:
    """Public key of an address argument, or InvalidArgument."""
    try:
        return parse_address(text)
    except DataPathError as exc:
        raise InvalidArgument(f"{what}: {exc}") from exc


def encode_value(value: object) -> bytes:
    return codec.encode(value)


def page_limit(args: QueryArgs) -> int:
    if not 1 <= args.limit <= MAX_PAGE:
        raise InvalidArgument(f"limit must be in 1..{MAX_PAGE}, got {args.limit}")
    return args.limit
