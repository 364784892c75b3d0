"""The transaction format and the table of every call and query of every module.

A transaction is ``SignedTx{body, signature}`` where ``body`` is the canonical encoding of
``TxBody{chain_id, sender, nonce, call}`` and ``signature`` is the sender's Ed25519 signature
over ``b"deoss-tx-v1" || body``. ``call`` is a tagged record whose tag names the module and verb
(``"accounts.transfer"``); its first array element is that tag.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

import msgspec

from deoss.chain.errors import BadEncoding, BadSignature, UnknownCall
from deoss.chain.modules import (
    accounts,
    audit,
    buckets,
    deals,
    declare,
    files,
    gateways,
    miners,
    restoral,
    schedulers,
    space,
    tagging,
)
from deoss.chain.params import query_params
from deoss.chain.query import QueryHandler
from deoss.chain.types import Call, PubKey, Sig64
from deoss.core import codec
from deoss.core.codec import Record
from deoss.core.errors import DataPathError
from deoss.core.keys import KeyPair, verify

__all__ = ["HANDLERS", "MODULES", "QUERIES", "SignedTx", "TxBody", "decode_tx", "sign_tx"]

SIGNING_DOMAIN = b"deoss-tx-v1"

#: Every module with calls or queries (block steps: deoss.chain.block). The order is the
#: registration order of HANDLERS and QUERIES: a module split out of another stands where its
#: calls stood in the old one (tagging after files; declare, whose call came first, before deals).
MODULES: tuple[Any, ...] = (
    accounts,
    space,
    gateways,
    buckets,
    schedulers,
    miners,
    files,
    tagging,
    declare,
    deals,
    restoral,
    audit,
)

Handler = Callable[..., None]
HANDLERS: dict[type[Call], Handler] = {}
QUERIES: dict[str, QueryHandler] = {}
for _module in MODULES:
    HANDLERS.update(_module.HANDLERS)
    for _name, _handler in _module.QUERIES.items():
        QUERIES[f"/{_module.__name__.rsplit('.', 1)[-1]}/{_name}"] = _handler
QUERIES["/chain/params"] = query_params

AnyCall = Union[tuple(HANDLERS)]  # type: ignore[valid-type]  # noqa: UP007


class TxBody(Record):
    chain_id: str
    sender: PubKey
    nonce: int
    call: AnyCall  # type: ignore[valid-type]


class SignedTx(Record):
    body: bytes
    signature: Sig64


def sign_tx(key: KeyPair, chain_id: str, nonce: int, call: Call) -> bytes:
    """The bytes of a signed transaction."""
    body = codec.encode(TxBody(chain_id=chain_id, sender=key.public_key, nonce=nonce, call=call))
    return codec.encode(SignedTx(body=body, signature=key.sign(SIGNING_DOMAIN + body)))


def decode_tx(raw: bytes) -> TxBody:
    """Decode a signed transaction and check its signature.

    Raises:
        BadEncoding: not a canonical SignedTx / TxBody, or an unknown call.
        BadSignature: the signature does not verify for the sender.
    """
    try:
        signed = codec.decode(raw, SignedTx)
    except DataPathError as exc:
        raise BadEncoding(str(exc)) from exc
    try:
        body = codec.decode(signed.body, TxBody)
    except DataPathError as exc:
        tag = _raw_call_tag(signed.body)
        if tag is not None and tag not in KNOWN_TAGS:
            raise UnknownCall(f"unknown call {tag!r}") from exc
        raise BadEncoding(str(exc)) from exc
    try:
        verify(body.sender, SIGNING_DOMAIN + signed.body, signed.signature)
    except DataPathError as exc:
        raise BadSignature(f"transaction signature: {exc}") from exc
    return body


def call_tag(call: Call) -> str:
    return str(type(call).__struct_config__.tag)


KNOWN_TAGS = frozenset(str(t.__struct_config__.tag) for t in HANDLERS)


def _raw_call_tag(body: bytes) -> str | None:
    """The call tag of a body that failed to decode, if it has the right outer shape."""
    try:
        fields = msgspec.msgpack.decode(body)
        tag = fields[3][0]
    except (msgspec.DecodeError, TypeError, IndexError, KeyError):
        return None
    return tag if isinstance(tag, str) else None
