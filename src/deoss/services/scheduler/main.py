"""The scheduler process (``deoss node scheduler --config FILE``).

    read the config -> open the chain client -> read the chain's parameters, unseal (or create)
    the tag key -> bind -> serve -> write <data_dir>/addr -> register on chain (or update the
    endpoint) -> resume unfinished reports and tag jobs -> follow the chain until SIGINT/SIGTERM

The cursor is read (or set to the chain's next block) before registering, so no event that
concerns this scheduler can pass unseen. A failure to start raises ``SchedulerStartError``
with a message for the operator; a failure of the follower later stops the process with it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import httpx

from deoss.client.chain import ChainClient
from deoss.core.errors import DataPathError
from deoss.services.common.config import ConfigError
from deoss.services.common.cursor import CursorError
from deoss.services.common.runner import listen_address, serve_app
from deoss.services.scheduler.app import create_app
from deoss.services.scheduler.enclave import EnclaveError
from deoss.services.scheduler.follower import Follower
from deoss.services.scheduler.service import SchedulerError, SchedulerService
from deoss.services.scheduler.settings import SchedulerSettings, load_settings
from deoss.serving import bind_socket

__all__ = ["SchedulerStartError", "run_scheduler", "serve_scheduler"]


class SchedulerStartError(Exception):
    """The scheduler process cannot start; the message says why."""


def run_scheduler(config: Path) -> None:
    """Run the scheduler described by ``config`` until SIGINT or SIGTERM.

    Raises:
        SchedulerStartError: a bad config, key file, tag key file, or an unusable chain.
    """
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        raise SchedulerStartError(str(exc)) from exc
    _configure_logging()
    try:
        asyncio.run(serve_scheduler(settings))
    except (SchedulerError, EnclaveError, DataPathError, ConfigError, CursorError) as exc:
        raise SchedulerStartError(str(exc)) from exc
    except FileNotFoundError as exc:
        raise SchedulerStartError(f"no such file: {exc.filename}") from exc
    except OSError as exc:
        raise SchedulerStartError(f"cannot start the scheduler: {exc.strerror or exc}") from exc


async def serve_scheduler(
    settings: SchedulerSettings, *, miner_transport: httpx.AsyncBaseTransport | None = None
) -> None:
    """Serve one scheduler until a signal (see the module docstring)."""
    host, port = listen_address(settings.listen)
    async with ChainClient(settings.chain_url) as chain:
        service = await SchedulerService.open(settings, chain, miner_transport=miner_transport)
        try:
            follower = Follower(service)
            await follower.prepare()
            sock = bind_socket(host, port)

            async def started(url: str) -> None:
                await service.register(url)
                await service.resume()
                _announce(url, service)

            await serve_app(
                create_app(service),
                sock,
                settings.addr_file,
                on_started=started,
                background=[follower.run],
                http_limits=settings.http_limits,
            )
        finally:
            await service.aclose()


def _announce(url: str, service: SchedulerService) -> None:
    line = {
        "event": "scheduler_listening",
        "url": url,
        "address": service.address,
        "tag_key_id": service.enclave.key_id.hex(),
    }
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def _configure_logging() -> None:
    logger = logging.getLogger("deoss.service")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
