"""The gateway process: load the config and key, bind, announce ``<data_dir>/addr``, register on
chain (or update the endpoint), serve until SIGINT/SIGTERM (docs/services.md, "Start")."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

from deoss.client.chain import ChainClient
from deoss.core.keys import KeyPair
from deoss.keyfile import read_key_file
from deoss.services.common.app import log_event
from deoss.services.common.runner import listen_address, serve_app
from deoss.services.gateway.app import create_app
from deoss.services.gateway.service import Gateway, register_gateway
from deoss.services.gateway.settings import GatewaySettings, load_settings
from deoss.serving import bind_socket

__all__ = ["run_gateway"]


def run_gateway(config_path: Path) -> None:
    """Run a gateway from its config file until a signal stops it.

    Raises:
        ConfigError, InvalidKey, OSError (key file or socket): the process cannot start.
    """
    settings = load_settings(config_path)
    key = read_key_file(settings.key_path)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("deoss").setLevel(logging.INFO)  # our JSON lines; not httpx's per request
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(_serve(settings, key))


async def _serve(settings: GatewaySettings, key: KeyPair) -> None:
    async with ChainClient(settings.chain_url) as chain:
        gateway = Gateway(settings, chain=chain, key=key)
        app = create_app(gateway)
        sock = bind_socket(*listen_address(settings.listen))

        async def on_started(url: str) -> None:
            endpoint = settings.public_url or url
            submitted = await register_gateway(chain, key, endpoint)
            log_event(
                "gateway", "started", address=key.address, endpoint=endpoint, registered=submitted
            )
            print(json.dumps({"role": "gateway", "address": key.address, "url": url}), flush=True)

        try:
            await serve_app(
                app,
                sock,
                settings.addr_path,
                on_started=on_started,
                http_limits=settings.http_limits,
            )
        finally:
            await gateway.aclose()  # cancels uploads in progress, closes its HTTP client
            sock.close()
