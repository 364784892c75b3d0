"""The tag confirmation message on its own (deoss.chain.modules.tags): the bytes a holder signs
and the tagger's ``files.tagged`` carries; miner and scheduler build the same bytes."""

from __future__ import annotations

from typing import Any

import pytest

from deoss.chain.modules import deals, tags
from deoss.core import codec

FIELDS: dict[str, Any] = {
    "chain_id": "deoss-test",
    "fid": "ab" * 32,
    "segment": 1,
    "fragment": 2,
    "fragment_hash": b"\x01" * 32,
    "key_id": b"\x02" * 32,
    "miner": b"\x03" * 32,
}
OTHER: dict[str, Any] = {
    "chain_id": "deoss-other",
    "fid": "cd" * 32,
    "segment": 2,
    "fragment": 1,
    "fragment_hash": b"\x04" * 32,
    "key_id": b"\x05" * 32,
    "miner": b"\x06" * 32,
}


def test_the_message_is_the_domain_and_the_canonical_body() -> None:
    message = tags.tags_message(**FIELDS)
    assert message.startswith(tags.TAGS_DOMAIN)
    body = codec.decode(message[len(tags.TAGS_DOMAIN) :], tags.TagsBody)
    assert tags.TagsBody(**FIELDS) == body


@pytest.mark.parametrize("field", FIELDS)
def test_every_field_changes_the_message(field: str) -> None:
    assert tags.tags_message(**FIELDS) != tags.tags_message(**{**FIELDS, field: OTHER[field]})


def test_a_tag_confirmation_never_reads_as_a_fragment_receipt() -> None:
    assert tags.TAGS_DOMAIN != deals.RECEIPT_DOMAIN
    assert not tags.tags_message(**FIELDS).startswith(deals.RECEIPT_DOMAIN)
