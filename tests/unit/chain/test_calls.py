"""The call table (deoss.chain.calls): the order calls are registered in, and the wire names of
the calls of modules split out of others (issue 14: tagging out of files, declare out of
deals). A call keeps the tag its module had on the wire, and its place in the table."""

from __future__ import annotations

from typing import Any

from deoss.chain import calls
from deoss.chain.modules import deals, declare, files, tagging
from deoss.chain.types import Call

#: the registration order before the split (HANDLERS, then AnyCall, follow it)
CALL_ORDER = [
    "accounts.transfer",
    "space.buy",
    "space.expand",
    "space.renew",
    "gateways.register",
    "gateways.authorize",
    "gateways.revoke",
    "buckets.create",
    "buckets.delete",
    "schedulers.register",
    "schedulers.update",
    "miners.register",
    "miners.update",
    "miners.add_stake",
    "miners.exit",
    "files.delete",
    "files.tagged",
    "files.confirm_tags",
    "deals.declare",
    "deals.reassign",
    "deals.report",
    "restoral.report_loss",
    "restoral.claim",
    "restoral.complete",
    "audit.submit_proof",
    "miners.recover",
]


def tag(call: type[Call] | Any) -> str:
    """A call class's tag: its module and verb on the wire."""
    return str(call.__struct_config__.tag)


def test_calls_are_registered_in_the_order_they_were_before_the_split() -> None:
    assert CALL_ORDER == [tag(call) for call in calls.HANDLERS]


def test_split_modules_stand_where_their_calls_stood() -> None:
    order = list(calls.MODULES)
    assert order.index(tagging) == order.index(files) + 1
    assert order.index(declare) == order.index(deals) - 1


def test_calls_of_split_modules_keep_their_wire_tags_and_add_no_query_paths() -> None:
    assert ["files.tagged", "files.confirm_tags"] == [tag(call) for call in tagging.HANDLERS]
    assert ["deals.declare"] == [tag(call) for call in declare.HANDLERS]
    assert not any(path.startswith(("/tagging/", "/declare/")) for path in calls.QUERIES)
    assert {"/files/holdings", "/deals/deal", "/deals/counts"} <= set(calls.QUERIES)
