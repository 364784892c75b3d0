"""Subscription queries: CometBFT's syntax for the conditions clients use."""

from __future__ import annotations

import pytest

from deoss.node.events import QueryError, parse_query

EVENTS = {
    "tm.event": ["Tx"],
    "tx.height": ["12"],
    "transfer.recipient": ["deoss1abc", "deoss1def"],
    "transfer.amount": ["5", "700"],
}


@pytest.mark.parametrize(
    ("query", "matches"),
    [
        ("tm.event='Tx'", True),
        ("tm.event = 'NewBlock'", False),
        ("tm.event='Tx' AND transfer.recipient='deoss1def'", True),
        ("tm.event='Tx' AND transfer.recipient='deoss1xyz'", False),
        ("tx.height=12", True),
        ("tx.height>=13", False),
        ("tx.height<13 AND tx.height>11", True),
        ("transfer.amount>600", True),
        ("transfer.recipient CONTAINS 'def'", True),
        ("deal.id EXISTS", False),
        ("transfer.amount EXISTS", True),
    ],
)
def test_query_matching(query: str, matches: bool) -> None:
    """A condition holds when any value of its key satisfies it; all conditions must hold."""
    assert matches == parse_query(query).matches(EVENTS)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "empty"),
        ("tm.event", "cannot parse"),
        ("tm.event=='Tx'", "cannot parse"),
        ("tm.event='Tx' AND", "cannot parse"),
        ("tx.height>'5'", "needs an integer"),
        ("a='" + "x" * 600 + "'", "longer than 512"),
    ],
)
def test_bad_queries_say_what_is_wrong(query: str, message: str) -> None:
    """Unparseable queries raise QueryError naming the problem."""
    with pytest.raises(QueryError, match=message):
        parse_query(query)
