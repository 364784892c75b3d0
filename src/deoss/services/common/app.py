"""The FastAPI app every service starts from: errors, /healthz, /metrics, one log line per request.

Apps are built by factories (``create_service_app``), never module globals, so tests run many
services in one process. Each app has its own Prometheus registry.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from deoss.services.common.errors import install_error_handlers

__all__ = ["ServiceMetrics", "create_service_app", "log_event"]

log = logging.getLogger("deoss.service")


def log_event(role: str, event: str, **fields: Any) -> None:
    """One structured (JSON) log line: requests, chain events acted on, failures; ``ts`` is
    the UTC time to the millisecond."""
    ts = datetime.now(UTC).isoformat(timespec="milliseconds")
    line = {"ts": ts, "role": role, "event": event, **fields}
    log.info(json.dumps(line, default=str, sort_keys=True))


class ServiceMetrics:
    """Counters every service exports; services add their own to ``registry``."""

    def __init__(self, role: str) -> None:
        self.registry = CollectorRegistry()
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


def create_service_app(
    role: str,
    *,
    title: str,
    health: Callable[[], Awaitable[dict[str, Any]]] | None = None,
) -> tuple[FastAPI, ServiceMetrics]:
    """A FastAPI app with error handlers, request logging, /healthz and /metrics."""
    app = FastAPI(title=title)
    metrics = ServiceMetrics(role)
    install_error_handlers(app)

    @app.middleware("http")
    async def _log_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - start
        metrics.requests.labels(role, request.method, str(response.status_code)).inc()
        metrics.latency.labels(role, request.method).observe(elapsed)
        if request.url.path not in ("/healthz", "/metrics"):
            log_event(
                role,
                "http",
                method=request.method,
                path=request.url.path,
                status=response.status_code,
                ms=round(elapsed * 1000, 1),
            )
        return response

    @app.get("/healthz", include_in_schema=False)
    async def _healthz() -> dict[str, Any]:
        return {"status": "ok", "role": role, **(await health() if health else {})}

    @app.get("/metrics", include_in_schema=False)
    async def _metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app, metrics
