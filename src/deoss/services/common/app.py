"""The FastAPI app every service starts from: errors, /healthz, /metrics, one log line per request,
and the one way a route learns who signed its request (``SignerDep``).

Apps are built by factories (``create_service_app``), never module globals, so tests run many
services in one process. Each app has its own Prometheus registry (the service's, if it keeps
its own counters). Every service's ``create_app(service)`` takes its opened service object; the
caller owns the chain client and the service (opens and closes them), the app only serves it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deoss.services.common.auth import RequestVerifier
from deoss.services.common.errors import install_error_handlers
from deoss.services.common.signing import Signer, verify_request

__all__ = ["ServiceMetrics", "SignerDep", "create_service_app", "log_event", "signed_request"]

log = logging.getLogger("deoss.service")


def log_event(role: str, event: str, **fields: Any) -> None:
    """One structured (JSON) log line: requests, chain events acted on, failures; ``ts`` is
    the UTC time to the millisecond."""
    ts = datetime.now(UTC).isoformat(timespec="milliseconds")
    line = {"ts": ts, "role": role, "event": event, **fields}
    log.info(json.dumps(line, default=str, sort_keys=True))


class ServiceMetrics:
    """Counters every service exports; services add their own to ``registry``."""

    def __init__(self, role: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "deoss_http_requests_total",
            "HTTP requests served",
            ["role", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "deoss_http_request_seconds",
            "HTTP request latency",
            ["role", "method"],
            registry=self.registry,
        )
        self.role = role


class _RequestLog:
    """Counts, times and logs every request once its response is sent (the whole transfer).

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` runs a task group for every
    message of the request body, and bodies cross every hop in 64 KiB messages.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the server answers if the app fails before starting a response

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self._record(scope, status, time.perf_counter() - start)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        role, method, path = self.metrics.role, scope["method"], scope["path"]
        self.metrics.requests.labels(role, method, str(status)).inc()
        self.metrics.latency.labels(role, method).observe(elapsed)
        if path not in ("/healthz", "/metrics"):
            log_event(
                role, "http", method=method, path=path, status=status, ms=round(elapsed * 1000, 1)
            )


def signed_request(request: Request) -> Signer:
    """The verified signer of the request, by the app's own verifier (replays are refused per
    app). Raises AuthError (HTTP 401) unless signed, addressed to this server, fresh and new."""
    verifier: RequestVerifier = request.app.state.verifier
    return verify_request(request, verifier)


SignerDep = Annotated[Signer, Depends(signed_request)]


def create_service_app(
    role: str,
    *,
    title: str,
    health: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    verifier: RequestVerifier | None = None,
    registry: CollectorRegistry | None = None,
) -> tuple[FastAPI, ServiceMetrics]:
    """A FastAPI app with error handlers, request logging, /healthz and /metrics; routes that
    depend on ``SignerDep`` check signatures with ``verifier``; the request counters go to
    ``registry`` (a new one if not given)."""
    app = FastAPI(title=title)
    app.state.role = role  # for the runner's log lines about the app's background tasks
    app.state.verifier = verifier
    metrics = ServiceMetrics(role, registry)
    install_error_handlers(app)

    app.add_middleware(_RequestLog, metrics=metrics)

    @app.get("/healthz", include_in_schema=False)
    async def _healthz() -> dict[str, Any]:
        return {"status": "ok", "role": role, **(await health() if health else {})}

    @app.get("/metrics", include_in_schema=False)
    async def _metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app, metrics
