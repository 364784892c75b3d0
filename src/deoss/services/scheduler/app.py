"""The scheduler's FastAPI app, built around one opened ``SchedulerService`` (never a global)."""

from __future__ import annotations

from fastapi import FastAPI

from deoss.services.common.app import create_service_app
from deoss.services.scheduler.routes import router
from deoss.services.scheduler.service import SchedulerService

__all__ = ["create_app"]


def create_app(service: SchedulerService) -> FastAPI:
    """The app: common errors, signatures, /healthz (with the scheduler's address and key id),
    /metrics, and the scheduler routes. The caller owns the service (open, register, close)."""
    app, _ = create_service_app(
        "scheduler", title="DeOSS scheduler", health=service.health, verifier=service.verifier
    )
    app.state.service = service
    app.include_router(router)
    return app
