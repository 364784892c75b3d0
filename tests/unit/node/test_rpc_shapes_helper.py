"""shape_differences (tests/rpc_shapes.py) finds each kind of difference it claims to."""

from __future__ import annotations

from typing import Any

import pytest

from tests.rpc_shapes import fixture, fixture_names, shape_differences

HASH = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"


@pytest.mark.parametrize(
    ("expected", "actual", "found"),
    [
        ({"a": 1, "b": "x"}, {"a": 1}, "missing 'b'"),
        ({"a": 1}, {"a": 1, "c": 2}, "'c' is not in CometBFT's answer"),
        ({"height": "5"}, {"height": 5}, "height: string in CometBFT, number"),
        ({"index": 0}, {"index": "0"}, "index: number in CometBFT, string"),
        ({"height": "5"}, {"height": "five"}, "height: decimal in CometBFT"),
        ({"hash": HASH}, {"hash": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="}, "hex"),
        ({"time": "2026-12-05T16:13:24.6Z"}, {"time": "1796487204"}, "time in CometBFT"),
        ({"txs": None}, {"txs": []}, "txs: null in CometBFT, list []"),
        ({"data": None}, {"data": ""}, "data: null in CometBFT, string ''"),
        ({"l": [{"k": 1}]}, {"l": [{"k": 1}, {"j": 1}]}, "l[1]: missing 'k'"),
        ({"o": {"k": 1}}, {"o": [1]}, "o: object in CometBFT, list"),
    ],
)
def test_differences_are_found(expected: Any, actual: Any, found: str) -> None:
    problems = shape_differences(expected, actual)
    assert any(found in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        ({"data": None}, {"data": "AQI="}),  # empty bytes there, some here
        ({"txs": None}, {"txs": ["AQI="]}),
        ({"hash": HASH}, {"hash": ""}),  # a hash the embedded node leaves empty
        ({"l": []}, {"l": [{"anything": 1}]}),
        ({"height": "94"}, {"height": "2"}),
        ({"result": {"events": {"app.key": ["v"]}}}, {"result": {"events": {"t.a": ["1"]}}}),
    ],
)
def test_same_shapes_pass(expected: Any, actual: Any) -> None:
    assert [] == shape_differences(expected, actual)


def test_every_fixture_matches_itself() -> None:
    for name in fixture_names():
        assert [] == shape_differences(fixture(name), fixture(name)), name
