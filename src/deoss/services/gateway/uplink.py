"""What an upload needs from the gateway (``Uplink``: the chain, the layout, the key, HTTP to
schedulers, the settings) and the upload path's counters."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx
from prometheus_client import CollectorRegistry, Counter

from deoss.client.chain import ChainClient
from deoss.client.scheduler import SchedulerClient
from deoss.core.keys import KeyPair
from deoss.core.layout import LayoutParams
from deoss.services.gateway.settings import GatewaySettings

__all__ = ["UploadMetrics", "Uplink"]


class UploadMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.bytes_received = Counter(
            "deoss_gateway_upload_bytes_total", "Object bytes spooled", registry=registry
        )
        self.segments_sent = Counter(
            "deoss_gateway_segments_sent_total", "Segments sent to schedulers", registry=registry
        )
        self.reassigns = Counter(
            "deoss_gateway_reassigns_total",
            "Deals reassigned because the scheduler was unreachable",
            registry=registry,
        )
        self.deduplicated = Counter(
            "deoss_gateway_deduplicated_total", "Uploads of a stored fid", registry=registry
        )


@dataclass(frozen=True)
class Uplink:
    """What an upload needs: the chain and its layout, the gateway's key, HTTP to schedulers."""

    chain: ChainClient
    layout: LayoutParams
    key: KeyPair
    http: httpx.AsyncClient
    settings: GatewaySettings
    metrics: UploadMetrics
    planning: asyncio.Semaphore  # the gateway's planning slots, shared by its uploads

    @property
    def schedulers(self) -> SchedulerClient:
        return SchedulerClient(self.http)
