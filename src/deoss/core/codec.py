"""Typed records and their one canonical byte encoding.

Every record that is hashed, signed or stored is a ``Record``: a frozen msgspec Struct encoded as
a MessagePack array of its fields in declaration order (``array_like``). Integers take their
shortest form and maps are written with sorted keys, so a record has exactly one encoding.

``decode`` accepts only that encoding: it decodes, re-encodes and compares, so two different byte
strings never decode to the same record (what is signed is what is stored). Any failure raises
``DecodeError`` with a message that names the record type and what was wrong.

Rules for records: integers for amounts and sizes (never floats), ``bytes`` for hashes and keys,
no sets; fields are appended, never reordered, once a record is on the wire.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any, TypeVar, dataclass_transform

import msgspec

from deoss.core.errors import DataPathError, DecodeError

__all__ = [
    "MAX_RECORD_BYTES",
    "Record",
    "decode",
    "encode",
    "record_hash",
]

#: Upper bound for one encoded record; larger inputs are refused before parsing.
MAX_RECORD_BYTES = 16 * 1024 * 1024


# msgspec's stub declares Struct with frozen_default=False, so a type checker would read every
# subclass without its own ``frozen=True`` as a non-frozen dataclass inheriting from a frozen one.
# Re-declaring the transform here tells it what msgspec does at run time: subclasses of Record
# inherit frozen and kw_only. (At run time the decorator only sets ``__dataclass_transform__``.)
@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(msgspec.field,))
class Record(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    array_like=True,
):
    """Base of every canonically encoded record."""


R = TypeVar("R")

_ENCODER = msgspec.msgpack.Encoder(order="deterministic")


def encode(record: Any) -> bytes:
    """Return the canonical bytes of a record (or of a value made of records)."""
    return _ENCODER.encode(record)


@lru_cache(maxsize=256)
def _decoder(type_: Any) -> msgspec.msgpack.Decoder[Any]:
    return msgspec.msgpack.Decoder(type_)


def decode(data: bytes | bytearray | memoryview, type_: type[R]) -> R:
    """Decode canonical bytes into ``type_``.

    Raises:
        DecodeError: the bytes are too large, malformed, of the wrong shape, or not the
            canonical encoding of the value they decode to.
    """
    name = getattr(type_, "__name__", repr(type_))
    if len(data) > MAX_RECORD_BYTES:
        raise DecodeError(f"{name}: {len(data)} bytes exceed the limit of {MAX_RECORD_BYTES}")
    try:
        value: R = _decoder(type_).decode(data)  # type: ignore[arg-type]
    except msgspec.ValidationError as exc:
        raise DecodeError(f"{name}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise DecodeError(f"{name}: malformed MessagePack: {exc}") from exc
    except DataPathError as exc:  # a record's own checks (__post_init__) refused the values
        raise DecodeError(f"{name}: {exc}") from exc
    if _ENCODER.encode(value) != bytes(data):
        raise DecodeError(f"{name}: bytes are not in canonical form")
    return value


def record_hash(record: Any) -> bytes:
    """SHA-256 of a record's canonical bytes."""
    return hashlib.sha256(encode(record)).digest()
