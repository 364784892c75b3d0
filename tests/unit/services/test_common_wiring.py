"""What every service's app gets from the common factory: one signature dependency
(``SignerDep``, by the app's own verifier) and one table from chain-client errors to HTTP."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from deoss.chain import errors as chain_errors
from deoss.client.errors import (
    ClientError,
    InclusionTimeout,
    NodeUnavailable,
    QueryFailed,
    TxRefused,
)
from deoss.client.signing import SigningAuth
from deoss.core.keys import KeyPair
from deoss.services.common.app import SignerDep, create_service_app
from deoss.services.common.auth import RequestVerifier
from deoss.services.common.ranges import UnsatisfiableRange

pytestmark = pytest.mark.anyio

KEY = KeyPair.from_seed(b"\x07" * 32)


def _app(role: str) -> FastAPI:
    app, _ = create_service_app(role, title="t", verifier=RequestVerifier())

    @app.get("/who")
    async def who(signer: SignerDep) -> dict[str, str]:
        return {"address": signer.address}

    @app.get("/fail/{what}")
    async def fail(what: str) -> None:
        raise {
            "refused": TxRefused(
                code=chain_errors.Unauthorized.code, log="not yours", tx_hash=b"", stage="check"
            ),
            "space": TxRefused(
                code=chain_errors.InsufficientSpace.code, log="full", tx_hash=b"", stage="block"
            ),
            "unknown": TxRefused(code=99_999, log="?", tx_hash=b"", stage="check"),
            "query": QueryFailed("/files/x", chain_errors.NotFound.code, "no such file"),
            "down": NodeUnavailable("node down"),
            "slow": InclusionTimeout(b"\x01", 1.0),
            "other": ClientError("odd answer"),
            "range": UnsatisfiableRange("past the end", 10),
        }[what]

    return app


@pytest.mark.parametrize("role", ["gateway", "miner", "scheduler"])
async def test_every_role_verifies_signatures_the_same_way(role: str) -> None:
    app = _app(role)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as plain:
        unsigned = await plain.get("/who")
    assert 401 == unsigned.status_code
    assert "unauthenticated" == unsigned.json()["error"]["code"]
    auth = SigningAuth(KEY)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc", auth=auth) as http:
        signed = await http.get("/who")
        assert {"address": KEY.address} == signed.json()
        replayed = await http.send(signed.request, auth=None)  # the same signed request again
    assert 401 == replayed.status_code


@pytest.mark.parametrize(
    ("what", "status", "code", "header"),
    [
        ("refused", 403, "forbidden", None),
        ("space", 507, "insufficient_space", None),
        ("unknown", 502, "chain_refused", None),
        ("query", 404, "not_found", None),
        ("down", 503, "chain_unavailable", None),
        ("slow", 504, "timeout", None),
        ("other", 502, "chain_error", None),
        ("range", 416, "range_not_satisfiable", ("content-range", "bytes */10")),
    ],
)
@pytest.mark.parametrize("role", ["gateway", "miner", "scheduler"])
async def test_chain_errors_map_to_the_same_http_answer_in_every_role(
    role: str, what: str, status: int, code: str, header: tuple[str, str] | None
) -> None:
    transport = httpx.ASGITransport(app=_app(role))
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as http:
        response = await http.get(f"/fail/{what}")
    assert (status, code) == (response.status_code, response.json()["error"]["code"])
    if header is not None:
        assert header[1] == response.headers[header[0]]
