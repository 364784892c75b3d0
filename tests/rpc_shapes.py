"""The recorded CometBFT v0.38.26 RPC answers (tests/vectors/cometbft_rpc) and a structural
comparison of an answer with one of them.

``shape_differences`` compares structure, not values: heights, hashes and app data differ
between a kvstore validator and a DeOSS node. It checks that

* objects have the same keys (``APP_KEYED`` paths, whose keys are app event names, only need
  to be objects of string lists);
* values have the same JSON type: a number is not a decimal string, a list is not an object;
* a string the fixture writes as a decimal integer is one, an uppercase hex hash is uppercase
  hex (or empty: a field the embedded node leaves out), and so on;
* ``null`` stands for what Go writes for an empty []byte or nil slice: it matches a non-empty
  string or list (the fixture's node had nothing there, ours has), but not ``""`` or ``[]``,
  which Go would also have written as ``null``.

Every element of a list is compared with the fixture's first element.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

__all__ = ["FIXTURES", "fixture", "fixture_names", "shape_differences"]

FIXTURES = Path(__file__).parent / "vectors" / "cometbft_rpc"

# Where object keys are data (ResultEvent.events: "<event type>.<attribute>" -> values).
APP_KEYED = ("result.events",)

_DECIMAL = re.compile(r"-?[0-9]+")
_HEX_UPPER = re.compile(r"(?:[0-9A-F]{2}){8,}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={1,2}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z")


def fixture_names() -> list[str]:
    return sorted(path.stem for path in FIXTURES.glob("*.json"))


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _string_kind(text: str) -> str | None:
    """What a fixture string is written as, where that matters; None: free text."""
    if _TIME.fullmatch(text):
        return "time"
    if _HEX_UPPER.fullmatch(text):  # before decimal: an app hash may be all digits
        return "hex"
    if _DECIMAL.fullmatch(text):
        return "decimal"
    if _BASE64.fullmatch(text) and len(text) % 4 == 0:
        return "base64"
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object"


def shape_differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where ``actual`` differs in structure from the fixture ``expected`` (empty: none)."""
    where = path or "(top)"
    expected_type, actual_type = _json_type(expected), _json_type(actual)
    if expected_type == "null" or actual_type == "null":
        other = actual if expected_type == "null" else expected
        if other is None or (isinstance(other, str | list) and other):
            return []
        return [f"{where}: {expected_type} in CometBFT, {actual_type} {actual!r} here"]
    if expected_type != actual_type:
        return [f"{where}: {expected_type} in CometBFT, {actual_type} {actual!r} here"]
    if expected_type == "object":
        if path in APP_KEYED:
            return _app_keyed_differences(actual, where)
        problems = []
        for key in sorted(set(expected) - set(actual)):
            problems.append(f"{where}: missing {key!r}")
        for key in sorted(set(actual) - set(expected)):
            problems.append(f"{where}: {key!r} is not in CometBFT's answer")
        for key in sorted(set(expected) & set(actual)):
            sub = f"{path}.{key}" if path else key
            problems += shape_differences(expected[key], actual[key], sub)
        return problems
    if expected_type == "list":
        if not expected:
            return []
        problems = []
        for index, item in enumerate(actual):
            problems += shape_differences(expected[0], item, f"{path}[{index}]")
        return problems
    if expected_type == "string":
        kind = _string_kind(expected)
        if kind in ("time", "decimal", "hex") and actual != "":
            if _string_kind(actual) != kind and not (kind == "hex" and _is_hex(actual)):
                return [f"{where}: {kind} in CometBFT ({expected!r}), {actual!r} here"]
        if kind == "decimal" and actual == "":
            return [f"{where}: decimal in CometBFT ({expected!r}), '' here"]
    return []


def _is_hex(text: str) -> bool:
    return bool(re.fullmatch(r"(?:[0-9A-F]{2})+", text))


def _app_keyed_differences(actual: Any, where: str) -> list[str]:
    if not isinstance(actual, dict):
        return [f"{where}: expected an object of string lists"]
    for key, values in actual.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            return [f"{where}.{key}: expected a list of strings"]
    return []
