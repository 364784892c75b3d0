"""The miner's FastAPI app, built by a factory: no module globals, so tests run many miners.

``create_app(service)`` serves one ``MinerService`` (``MinerService.from_settings``); the caller
owns the service's chain client and fragment store. ``app.state.miner`` is the service (the
follower acts through it too); requests are verified by the service's own verifier.
"""

from __future__ import annotations

from fastapi import FastAPI

from deoss.services.common.app import create_service_app
from deoss.services.miner.routes import router
from deoss.services.miner.service import ROLE, MinerService

__all__ = ["create_app"]


def create_app(service: MinerService) -> FastAPI:
    """The app: common errors, signatures, /healthz, /metrics, and the miner routes."""
    app, _ = create_service_app(
        ROLE, title="DeOSS miner", health=service.health, verifier=service.verifier
    )
    app.state.miner = service
    app.include_router(router)
    return app
