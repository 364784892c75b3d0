"""Property-based fuzzing of a FastAPI app from its own OpenAPI schema, with hypothesis.

Every operation of the schema gets requests whose path, query and header parameters are drawn
from the declared types, from values known to exist (``hints``) and from garbage (strings where
integers go, huge numbers, Latin-1 text, empty values); PUT and POST get a random body. Each
request is signed by one of the given keys, unsigned, or carries garbage signature headers.
The app must answer every one below 500 (an unhandled exception propagates out of
``ASGITransport`` and fails the test too) and still answer /healthz.

``DEOSS_FUZZ_EXAMPLES`` (default 40) is the number of examples per test; each example sends one
request to every operation. Examples are derandomized, so ``make test`` is repeatable; set
``DEOSS_FUZZ_SEED`` to draw other ones (a longer run: both, e.g. 2000 and a date).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from deoss.client.signing import (
    HEADER_ADDRESS,
    HEADER_BODY,
    HEADER_SIGNATURE,
    HEADER_TIME,
    SigningAuth,
)
from deoss.core.keys import KeyPair

EXAMPLES = int(os.environ.get("DEOSS_FUZZ_EXAMPLES", "40"))
SEED = os.environ.get("DEOSS_FUZZ_SEED", "")

T = TypeVar("T")


def examples(strategy: st.SearchStrategy[T], count: int = EXAMPLES) -> list[T]:
    """``count`` derandomized examples of ``strategy``, drawn up front: the app under test
    runs in the test's event loop, with the network the test's fixture started once, so the
    requests are sent from the test itself (a failure names its request, unshrunk)."""
    found: list[T] = []

    @settings(
        max_examples=count,
        derandomize=not SEED,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(example: T) -> None:
        found.append(example)

    (seed(int(SEED))(collect) if SEED else collect)()
    return found


# Latin-1 text without control characters: what a client can put in a header or a query value
LATIN1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
GARBAGE = st.one_of(
    st.just(""),
    st.text(LATIN1, max_size=24),
    st.text(max_size=12),  # any Unicode, percent-encoded on the way
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["0", "-1", "1e3", "0x10", "٣", "9" * 25, "NaN", "null", "true", " 1"]),
)
# numbers at and past the edges of the integer types, and digits that are not ASCII
EDGES = st.sampled_from(
    [str(2**31), str(2**32), str(2**63 - 1), str(2**63), str(2**64), "9" * 30, "1" * 5000]
    + ["-0", "+1", "1_000", "١٢", "²", "0" * 40 + "1", "-" + "9" * 25]
)
# positions in a Range: numbers, numbers past every integer type, digits that are not ASCII
POSITIONS = st.one_of(
    st.integers(min_value=-5, max_value=2**66).map(str),
    EDGES,
    st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=3),
    st.just(""),
)
RANGES = st.one_of(
    st.text(LATIN1, max_size=30),
    st.builds("bytes={}-{}".format, POSITIONS, POSITIONS),
    st.builds("bytes={}-{},{}-".format, POSITIONS, POSITIONS, POSITIONS),
    POSITIONS.map("bytes=-{}".format),
    st.sampled_from(["bytes=0-0", "bytes=-1", "bytes=5-", "bytes=0-1,2-3", "bytes=1-0"]),
)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    parameters: tuple[dict[str, Any], ...]

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def operations(schema: Mapping[str, Any]) -> list[Operation]:
    """Every operation of an OpenAPI document, in document order."""
    found = []
    for path, items in schema["paths"].items():
        for method, operation in items.items():
            parameters = tuple(operation.get("parameters", ()))
            found.append(Operation(method.upper(), path, parameters))
    return found


def _typed(schema: Mapping[str, Any]) -> st.SearchStrategy[str]:
    """Values of the declared type (as text), within and just past the declared bounds."""
    choices = schema.get("anyOf", [schema])
    kinds = [c for c in choices if c.get("type") not in (None, "null")]
    strategies: list[st.SearchStrategy[str]] = []
    for kind in kinds:
        if kind["type"] == "integer":
            low = kind.get("minimum", -(2**64))
            high = kind.get("exclusiveMaximum", 2**64 + 1) - 1
            strategies.append(st.integers(min_value=low - 1, max_value=high + 1).map(str))
            strategies.append(st.integers(min_value=low, max_value=min(high, low + 20)).map(str))
            strategies.append(EDGES)
        elif kind["type"] == "boolean":
            strategies.append(st.sampled_from(["true", "false", "1", "0", "yes", "off"]))
        elif "pattern" in kind:
            strategies.append(st.from_regex(kind["pattern"], fullmatch=True))
        else:
            strategies.append(st.text(LATIN1, max_size=40))
    return st.one_of(strategies) if strategies else GARBAGE


def value_of(
    parameter: Mapping[str, Any], hints: Mapping[str, Sequence[str]]
) -> st.SearchStrategy[str]:
    name = parameter["name"]
    if name == "range":
        typed = RANGES
    else:
        typed = _typed(parameter.get("schema", {}))
    known = hints.get(name, ())
    return st.one_of(st.sampled_from(known), typed, GARBAGE) if known else typed | GARBAGE


@dataclass(frozen=True)
class Case:
    method: str
    url: str
    params: dict[str, str]
    headers: dict[str, bytes]
    body: bytes
    auth: int  # index into the signers, -1 unsigned, -2 garbage signature headers

    def __repr__(self) -> str:  # what hypothesis prints for a failing example
        return (
            f"Case({self.method} {self.url} params={self.params} headers={self.headers}"
            f" body={self.body[:64]!r} auth={self.auth})"
        )


@st.composite
def cases(
    draw: st.DrawFn,
    operation: Operation,
    hints: Mapping[str, Sequence[str]],
    signers: int,
) -> Case:
    url = operation.path
    params: dict[str, str] = {}
    headers: dict[str, bytes] = {}
    # half the cases name what exists (each hint's first value) and fuzz the rest, so the
    # route gets past its lookups to the parsing and the reading behind them
    known = draw(st.booleans())
    for parameter in operation.parameters:
        where, name = parameter["in"], parameter["name"]
        if known and hints.get(name):
            text = hints[name][0]
        elif where != "query" or draw(st.booleans()) or parameter.get("required", False):
            text = draw(value_of(parameter, hints))
        else:
            continue
        if where == "path":
            url = url.replace("{" + name + "}", quote(text, safe=""))
        elif where == "query":
            params[name] = text
        elif where == "header":
            headers[name] = text.encode("latin-1", "replace")
    if "range" not in headers and draw(st.booleans()):
        headers["range"] = draw(RANGES).encode("latin-1", "replace")
    body = b""
    if operation.method in ("PUT", "POST"):
        body = draw(st.one_of(st.binary(max_size=64), st.sampled_from([b"{}", b"[]", b"\x00"])))
        if draw(st.integers(0, 4)) == 0:  # a Content-Length that does not match the body
            headers["content-length"] = draw(GARBAGE).encode("latin-1", "replace")
    auth = draw(st.integers(min_value=0 if known else -2, max_value=signers - 1))
    if auth == -2:
        headers[HEADER_ADDRESS] = draw(GARBAGE).encode("latin-1", "replace")
        headers[HEADER_TIME] = draw(GARBAGE).encode("latin-1", "replace")
        headers[HEADER_BODY] = draw(GARBAGE).encode("latin-1", "replace")
        headers[HEADER_SIGNATURE] = draw(GARBAGE).encode("latin-1", "replace")
    return Case(operation.method, url, params, headers, body, auth)


class Fuzzer:
    """Sends cases to one app through ``client`` and checks the answers."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        schema: Mapping[str, Any],
        signers: Sequence[KeyPair],
        hints: Mapping[str, Sequence[str]],
    ) -> None:
        self.client = client
        self.operations = operations(schema)
        assert self.operations, "the app's OpenAPI lists no operation"
        self.auths = [SigningAuth(k) for k in signers]  # one each: strictly increasing times
        self.hints = hints

    def strategy(self) -> st.SearchStrategy[list[Case]]:
        """One case for every operation."""
        return st.tuples(*(cases(op, self.hints, len(self.auths)) for op in self.operations)).map(
            list
        )

    async def send(self, case: Case) -> httpx.Response:
        auth = self.auths[case.auth] if case.auth >= 0 else None
        request = self.client.build_request(  # bytes header values pass as sent, Latin-1 too
            case.method,
            case.url,
            params=case.params,
            content=case.body,
            headers=[(name.encode(), value) for name, value in case.headers.items()],
        )
        if auth is None:
            return await self.client.send(request)
        return await self.client.send(request, auth=auth)

    async def run(
        self, count: int = EXAMPLES, before: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Send ``count`` batches; ``before`` each one (puts back what a batch may delete)."""
        for batch in examples(self.strategy(), count):
            if before is not None:
                await before()
            await self.check(batch)

    async def check(self, batch: list[Case]) -> None:
        for case in batch:
            response = await self.send(case)
            assert response.status_code < 500, (case, response.status_code, response.text)
        health = await self.client.get("/healthz")
        assert 200 == health.status_code, health.text
