"""JSON-RPC 2.0 as CometBFT v0.38 speaks it: error objects, envelopes and parameter decoding.

Errors (``code``, ``message`` as CometBFT sends them, ``data`` = what was wrong)::

    RpcError
    ├── ParseError      -32700  the body is not JSON
    ├── InvalidRequest  -32600  not a request object, or a body over the size limit
    ├── MethodNotFound  -32601  no such method (or a websocket-only one over HTTP)
    ├── InvalidParams   -32602  a parameter is missing, unknown, or of the wrong type/encoding
    ├── InternalError   -32603  the method failed (height out of range, tx not found, timeout…)
    └── ServerError     -32000  a websocket subscription was cancelled

A body is decoded by ``decode_json``, which refuses JSON nested deeper than ``MAX_JSON_DEPTH``
before msgspec sees it (msgspec would recurse until a RecursionError, and a deep ``id`` or
parameter echoed into an answer would recurse again).

Parameters follow CometBFT's encodings. In a JSON body: integers as numbers or decimal
strings, ``tx`` and ``hash`` as base64, ``data`` (HexBytes) as hex. In a URI (``GET /method?…``):
integers bare (``height=5``), strings quoted (``path="/accounts/account"``), bytes as ``0x…``
hex or a quoted string. An integer given as text is at most 19 ASCII digits, with an optional
minus sign, in either form. As conveniences, a URI string may be unquoted and a ``hash`` may be hex
in a URI (64 hex digits can't be mistaken for 44 characters of base64); in a JSON body a
``hash`` is base64 only, as CometBFT reads it (hex there is a hash that is never found).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec
import numpy as np

__all__ = [
    "MAX_JSON_DEPTH",
    "URI_REQUEST_ID",
    "InternalError",
    "InvalidParams",
    "InvalidRequest",
    "MethodNotFound",
    "Param",
    "ParamKind",
    "ParseError",
    "RpcError",
    "ServerError",
    "decode_json",
    "error_response",
    "json_depth",
    "params_from_json",
    "params_from_uri",
    "success_response",
]

URI_REQUEST_ID = -1  # CometBFT answers URI requests with id -1
_INT = re.compile(r"-?[0-9]{1,19}")  # fullmatch: ASCII digits, no trailing newline, int64-sized
_HEX = re.compile(r"^[0-9A-Fa-f]*$")
INT64_MAX = 2**63 - 1
MAX_JSON_DEPTH = 64  # CometBFT's requests nest 3 deep; this leaves room and stays far from
# the interpreter's recursion limit
# A JSON string, or an unterminated one running to the end: always matching at a quote makes one
# linear pass (possessive quantifiers, Python 3.11+), never a rescan from each later quote.
_STRING = re.compile(rb'"[^"\\]*+(?:\\[\s\S][^"\\]*+)*+\\?(?:"|\Z)')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEPS = bytes.maketrans(b"[]{}", b"\x01\xff\x01\xff")  # +1 to open, -1 (int8) to close
_DEPTH_CHUNK_BYTES = 1 << 20


class RpcError(Exception):
    """An error object of a JSON-RPC response; ``str(exc)`` is its ``data``."""

    code: ClassVar[int] = -32603
    message: ClassVar[str] = "Internal error"


class ParseError(RpcError):
    code, message = -32700, "Parse error. Invalid JSON"


class InvalidRequest(RpcError):
    code, message = -32600, "Invalid Request"


class MethodNotFound(RpcError):
    code, message = -32601, "Method not found"


class InvalidParams(RpcError):
    code, message = -32602, "Invalid params"


class InternalError(RpcError):
    code, message = -32603, "Internal error"


class ServerError(RpcError):
    code, message = -32000, "Server error"


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in ``data``, brackets in strings not counted
    (for malformed JSON, the depth its openers would reach)."""
    steps = _STRING.sub(b"", data).translate(_STEPS, _NOT_BRACKETS)
    deepest = depth = 0
    for at in range(0, len(steps), _DEPTH_CHUNK_BYTES):  # bounded memory for an 8 MiB body
        chunk = np.frombuffer(steps, np.int8, min(_DEPTH_CHUNK_BYTES, len(steps) - at), at)
        running = np.cumsum(chunk, dtype=np.int64)
        deepest = max(deepest, depth + int(running.max()))
        depth += int(running[-1])
    return deepest


def decode_json(data: bytes) -> Any:
    """A request body or websocket message, decoded.

    Raises:
        ParseError: not JSON, a number beyond 64 bits, or nested deeper than MAX_JSON_DEPTH.
    """
    openers = data.count(b"[") + data.count(b"{")
    depth = json_depth(data) if openers > MAX_JSON_DEPTH else openers  # the scan costs ~0.1 µs/B
    if depth > MAX_JSON_DEPTH:
        raise ParseError(
            f"error unmarshaling request: nested deeper than {MAX_JSON_DEPTH} ({depth} levels)"
        )
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise ParseError(f"error unmarshaling request: {exc}") from exc


def success_response(request_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def error_response(request_id: Any, error: RpcError) -> dict[str, Any]:
    """CometBFT's error answer: no ``id`` when the request had none (a body that is not JSON),
    and no ``data`` when there is nothing to add to the message (an unknown method)."""
    response: dict[str, Any] = {"jsonrpc": "2.0"}
    if request_id is not None:
        response["id"] = request_id
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    data = str(error)
    if data:
        body["data"] = data
    response["error"] = body
    return response


class ParamKind(enum.Enum):
    STR = "string"
    INT = "integer"
    BOOL = "boolean"
    BYTES = "base64 bytes"  # CometBFT []byte (types.Tx)
    HEX_BYTES = "hex bytes"  # CometBFT HexBytes
    HASH = "hash (base64; in a URI also 0x-hex or 64 hex digits)"


@dataclass(frozen=True)
class Param:
    name: str
    kind: ParamKind
    required: bool = False


def params_from_json(specs: tuple[Param, ...], raw: Any) -> dict[str, Any]:
    """Decode the ``params`` member of a request (object, array or absent).

    Raises:
        InvalidParams: unknown or missing parameters, or values of the wrong type or encoding.
    """
    if raw is None:
        given: dict[str, Any] = {}
    elif isinstance(raw, list):
        if len(raw) > len(specs):
            raise InvalidParams(f"expected at most {len(specs)} parameters, got {len(raw)}")
        given = {spec.name: value for spec, value in zip(specs, raw, strict=False)}
    elif isinstance(raw, dict):
        given = raw
    else:
        raise InvalidParams("params must be an object or an array")
    _check_names(specs, given)
    values = {}
    for spec in specs:
        value = given.get(spec.name)
        if value is not None:
            values[spec.name] = _from_json_value(spec, value)
    return _check_required(specs, values)


def params_from_uri(specs: tuple[Param, ...], query: Mapping[str, str]) -> dict[str, Any]:
    """Decode the query string of a URI request (``/block?height=5``).

    Raises:
        InvalidParams: unknown or missing parameters, or values of the wrong type or encoding.
    """
    _check_names(specs, query)
    values = {}
    for spec in specs:
        text = query.get(spec.name, "")
        if text != "":
            values[spec.name] = _from_uri_value(spec, text)
    return _check_required(specs, values)


def _check_names(specs: tuple[Param, ...], given: Mapping[str, Any]) -> None:
    known = {spec.name for spec in specs}
    for name in given:
        if name not in known:
            expected = ", ".join(sorted(known)) or "none"
            raise InvalidParams(f"unknown parameter {name!r} (expected: {expected})")


def _check_required(specs: tuple[Param, ...], values: dict[str, Any]) -> dict[str, Any]:
    for spec in specs:
        if spec.required and spec.name not in values:
            raise InvalidParams(f"missing parameter {spec.name!r} ({spec.kind.value})")
    return values


def _from_json_value(spec: Param, value: Any) -> Any:
    kind, name = spec.kind, spec.name
    if kind is ParamKind.INT:
        if isinstance(value, int) and not isinstance(value, bool):
            return _check_int(name, value)
        if isinstance(value, str) and _INT.fullmatch(value):
            return _check_int(name, int(value))
    elif kind is ParamKind.BOOL:
        if isinstance(value, bool):
            return value
    elif isinstance(value, str):
        if kind is ParamKind.STR:
            return value
        if kind is ParamKind.BYTES:
            return _base64(name, value)
        if kind is ParamKind.HEX_BYTES:
            return _hex(name, value.removeprefix("0x").removeprefix("0X"))
        # a hash in a JSON body is []byte, so base64 only, as CometBFT reads it: 64 hex
        # digits decode as base64 to 48 other bytes, found nowhere
        return _base64(name, value)
    raise InvalidParams(f"{name}: expected {kind.value}, got {json.dumps(value)[:80]}")


def _from_uri_value(spec: Param, text: str) -> Any:
    kind, name = spec.kind, spec.name
    quoted = len(text) >= 2 and text[0] == text[-1] == '"'
    if kind is ParamKind.INT:
        digits = text[1:-1] if quoted else text
        if _INT.fullmatch(digits):
            return _check_int(name, int(digits))
        raise InvalidParams(f"{name}: expected an integer, got {text[:80]!r}")
    if kind is ParamKind.BOOL:
        if text in ("true", "false"):
            return text == "true"
        raise InvalidParams(f"{name}: expected true or false, got {text[:80]!r}")
    if text[:2].lower() == "0x":
        raw = _hex(name, text[2:])
        return raw.decode("utf-8", "replace") if kind is ParamKind.STR else _sized(spec, raw)
    if quoted:
        try:
            unquoted = json.loads(text)
        except ValueError as exc:
            raise InvalidParams(f"{name}: bad quoted string: {exc}") from exc
        return unquoted if kind is ParamKind.STR else _sized(spec, unquoted.encode())
    if kind is ParamKind.STR:
        return text
    if kind is ParamKind.HASH:
        return _hash(name, text)
    raise InvalidParams(f'{name}: expected 0x-prefixed hex or a "quoted" string, got {text[:80]!r}')


def _sized(spec: Param, raw: bytes) -> bytes:
    if spec.kind is ParamKind.HASH and len(raw) != 32:
        raise InvalidParams(f"{spec.name}: a hash is 32 bytes, got {len(raw)}")
    return raw


def _check_int(name: str, value: int) -> int:
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise InvalidParams(f"{name}: {value} does not fit in a 64-bit integer")
    return value


def _hex(name: str, text: str) -> bytes:
    if len(text) % 2 or not _HEX.match(text):
        raise InvalidParams(f"{name}: not valid hex: {text[:80]!r}")
    return bytes.fromhex(text)


def _base64(name: str, text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidParams(f"{name}: not valid base64: {exc}") from exc


def _hash(name: str, text: str) -> bytes:
    if len(text) == 64 and _HEX.match(text):
        return bytes.fromhex(text)
    raw = _base64(name, text)
    if len(raw) != 32:
        raise InvalidParams(f"{name}: a hash is 32 bytes (base64 or 64 hex digits), got {len(raw)}")
    return raw
