"""The ``deoss node miner`` process: load settings and key, bind, register on chain, serve,
follow the chain, stop cleanly on SIGINT/SIGTERM (docs/services.md, "Common to every service").
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
from dataclasses import asdict
from pathlib import Path

from deoss.client.chain import ChainClient
from deoss.core.keys import KeyPair
from deoss.keyfile import read_key_file
from deoss.services.common.runner import listen_address, serve_app
from deoss.services.miner.app import create_app
from deoss.services.miner.confirm import TagConfirmer
from deoss.services.miner.follower import ChainFollower
from deoss.services.miner.peers import Peers
from deoss.services.miner.prover import Prover
from deoss.services.miner.register import ensure_registered
from deoss.services.miner.repair import Repairer
from deoss.services.miner.scrub import Scrubber
from deoss.services.miner.service import MinerService
from deoss.services.miner.settings import MinerSettings, load_settings
from deoss.services.miner.store import FragmentStore
from deoss.serving import bind_socket

__all__ = ["run_miner"]


def run_miner(config_path: Path) -> None:
    """Run a miner until SIGINT or SIGTERM.

    Raises:
        ConfigError, InvalidKey, OSError: it cannot start. ClientError, ServiceError: the
            chain refused its registration or could not be reached at start.
    """
    settings = load_settings(config_path)
    key = read_key_file(settings.key_path)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("deoss").setLevel(logging.INFO)  # our JSON lines; not httpx's per request
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    host, port = listen_address(settings.listen)
    sock = bind_socket(host, port)
    store = FragmentStore(settings.fragments_dir)
    try:
        asyncio.run(_serve(settings, key, store, sock))
    finally:
        store.close()
        sock.close()


async def _serve(
    settings: MinerSettings, key: KeyPair, store: FragmentStore, sock: socket.socket
) -> None:
    async with ChainClient(settings.chain_url) as chain:
        service = MinerService.from_settings(settings, chain=chain, store=store, key=key)
        app = create_app(service)
        peers = Peers(chain, key)
        prover = Prover(service, peers, poll_s=settings.poll_s)
        repairer = Repairer(service, peers, slots=settings.repair_slots, poll_s=settings.poll_s)
        confirmer = TagConfirmer(service, peers)
        scrubber = Scrubber(
            service, rate_bytes_per_s=settings.scrub_bytes_per_s, pause_s=settings.scrub_pause_s
        )
        service.status_sources.update(
            prover=lambda: {
                "answered_round": prover.answered_round,
                "last_proof_s": round(prover.last_proof_s, 3),
            },
            repair=lambda: {"active": repairer.active(), **asdict(repairer.stats)},
            scrub=lambda: asdict(scrubber.stats),
            tags=lambda: {"confirmed": confirmer.confirmed},
        )
        follower = ChainFollower(
            service,
            settings.cursor_path,
            listeners={
                "audit.round": prover.wake,
                "restoral.order": repairer.wake,
                "restoral.expired": repairer.wake,
                "file.tagged": confirmer.wake,
                "restoral.completed": confirmer.wake,
            },
        )

        async def on_started(url: str) -> None:
            await follower.ensure_cursor()  # before registering: no event of ours is missed
            await ensure_registered(chain, key, settings, url)
            line = {"event": "miner_listening", "url": url, "address": key.address}
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()

        try:
            await serve_app(
                app,
                sock,
                settings.addr_path,
                on_started=on_started,
                background=[
                    follower.run,
                    prover.run,
                    repairer.run,
                    scrubber.run,
                    confirmer.run,
                ],
                http_limits=settings.http_limits,
            )
        finally:
            await peers.aclose()
