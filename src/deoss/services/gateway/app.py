"""The gateway's FastAPI app: the common service app and the REST routes.

``create_app(gateway)`` serves one ``Gateway`` (built from settings, chain client and key, with
``transport`` carrying its own requests to schedulers and miners), so tests can drive it
in-process with ``httpx.ASGITransport``. The caller owns the chain client and the gateway:
``gateway.aclose()`` cancels uploads in progress and closes its HTTP client. The chain's
refusals map to HTTP statuses by the common table (deoss.services.common.errors).
"""

from __future__ import annotations

from fastapi import FastAPI

from deoss.services.common.app import create_service_app
from deoss.services.gateway.routes import router
from deoss.services.gateway.service import Gateway

__all__ = ["create_app"]

DESCRIPTION = """The user-facing API of a DeOSS gateway. Every request is signed with the user's
account key (headers X-Deoss-Address, X-Deoss-Time, X-Deoss-Content-Sha256, X-Deoss-Signature)
and the user must have authorized this gateway on chain. See docs/api.md for examples."""


def create_app(gateway: Gateway) -> FastAPI:
    """The app: common errors, signatures, /healthz, /metrics (with the gateway's own
    counters), and the REST routes."""
    app, _ = create_service_app(
        "gateway",
        title="DeOSS gateway",
        health=gateway.health,
        verifier=gateway.verifier,
        registry=gateway.registry,
    )
    app.description = DESCRIPTION
    app.state.gateway = gateway
    app.include_router(router)
    return app
