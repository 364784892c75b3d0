"""The miner's FastAPI app, built by a factory: no module globals, so tests run many miners.

``app.state.miner`` is the app's MinerService (the follower acts through it too) and
``app.state.verifier`` its own RequestVerifier (replays are refused per app).
"""

from __future__ import annotations

from fastapi import FastAPI

from deoss.client.chain import ChainClient
from deoss.core.keys import KeyPair
from deoss.services.common.app import create_service_app
from deoss.services.common.auth import RequestVerifier
from deoss.services.miner.read_limits import ReadBudget, ReadLimiter
from deoss.services.miner.routes import router
from deoss.services.miner.service import ROLE, MinerService
from deoss.services.miner.settings import MinerSettings
from deoss.services.miner.store import FragmentStore

__all__ = ["create_app"]


def create_app(
    settings: MinerSettings, *, chain: ChainClient, store: FragmentStore, key: KeyPair
) -> FastAPI:
    """The miner's app over ``store``, talking to ``chain``, signing with ``key``."""
    limiter = ReadLimiter(
        ReadBudget(settings.read_requests_per_s, settings.read_bytes_per_s),
        ReadBudget(settings.bulk_read_requests_per_s, settings.bulk_read_bytes_per_s),
    )
    service = MinerService(chain=chain, store=store, key=key, read_limiter=limiter)
    app, _ = create_service_app(ROLE, title="DeOSS miner", health=service.health)
    app.state.miner = service
    app.state.verifier = RequestVerifier(public_url=settings.public_url)
    app.state.settings = settings
    app.include_router(router)
    return app
