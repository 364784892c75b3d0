"""The chain node process (``deoss node chain``): a DevNode and its RPC under uvicorn.

    load HOME (genesis.json, node.toml) -> open the store -> DevNode (init_chain on first start)
    -> bind the RPC socket -> serve -> write HOME/rpc.addr and one JSON line on stdout
    -> produce blocks until SIGINT/SIGTERM -> stop serving -> stop producing -> close the store

Invariants: HOME/rpc.addr exists only while the RPC listens and names the real port (port 0
picks a free one); it is written atomically, so a reader never sees half an address. On a
signal the node stops cleanly (exit 0): in-flight requests get a short grace period, the
current block finishes, the store is closed. A failed block (NodeHalted) stops the process
with an error. kill -9 at any moment is safe: the store holds whole blocks only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from deoss.atomic import write_atomic
from deoss.http_server import DEFAULT_HTTP_LIMITS, HttpLimits, raise_open_file_limit
from deoss.node.devnode import DevNode
from deoss.node.home import (
    HomeError,
    check_block_ms,
    load_genesis,
    load_node_config,
    parse_listen,
    rpc_addr_path,
    store_path,
)
from deoss.node.rpc import RpcSettings, create_app
from deoss.node.store import open_store
from deoss.serving import bind_socket, guarded_server

__all__ = ["bind_socket", "run_chain_node", "serve_node"]

log = logging.getLogger(__name__)


async def serve_node(
    node: DevNode,
    sock: socket.socket,
    stop: asyncio.Event,
    *,
    on_listening: Callable[[str, int], None] | None = None,
    settings: RpcSettings | None = None,
    http_limits: HttpLimits = DEFAULT_HTTP_LIMITS,
) -> None:
    """Serve ``node``'s RPC on ``sock`` and produce blocks until ``stop`` is set.

    Raises:
        NodeHalted: block production failed (the server is stopped first).
    """
    settings = settings or RpcSettings()
    raise_open_file_limit()  # every held connection is a file
    server = guarded_server(
        create_app(node, settings),
        http_limits,
        ws="websockets-sansio",
        ws_max_size=settings.max_body_bytes,
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            await serving  # startup failed: raise its error
            raise RuntimeError("the RPC server stopped during startup")
        await asyncio.sleep(0.01)
    host, port = sock.getsockname()[:2]
    if on_listening is not None:
        on_listening(host, port)
    stop_producing = asyncio.Event()  # apart from ``stop``: in-flight commits need blocks
    producing = asyncio.create_task(node.run(stop_producing))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({serving, producing, stopping}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True  # stop taking requests; let the in-flight ones finish
        await serving
    finally:
        server.should_exit = True
        stop_producing.set()
        stopping.cancel()
        await producing  # re-raises NodeHalted if a block failed


def run_chain_node(home: Path, *, block_ms: int | None = None, rpc: str | None = None) -> None:
    """The ``deoss node chain`` process: runs until SIGINT or SIGTERM.

    Raises:
        HomeError, StoreError, NodeError, OSError: the node cannot start (the CLI prints them).
    """
    if not home.is_dir():
        raise HomeError(
            f"{home} is not a chain home; create one with: deoss chain init --home {home}"
        )
    config = load_node_config(home)
    genesis = load_genesis(home)
    host, port = parse_listen(rpc, "--rpc") if rpc else (config.rpc_host, config.rpc_port)
    interval_ms = (
        check_block_ms(block_ms, "--block-ms") if block_ms is not None else config.block_ms
    )
    address_file = rpc_addr_path(home)
    address_file.unlink(missing_ok=True)
    store = open_store(store_path(home))
    try:
        node = DevNode(store, genesis=genesis, block_ms=interval_ms)
        sock = bind_socket(host, port)
        asyncio.run(_main(node, sock, address_file, config.http_limits))
    finally:
        address_file.unlink(missing_ok=True)
        store.close()


async def _main(
    node: DevNode, sock: socket.socket, address_file: Path, http_limits: HttpLimits
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def announce(host: str, port: int) -> None:
        write_atomic(address_file, f"{host}:{port}\n".encode())
        line = {
            "event": "rpc_listening",
            "rpc": f"http://{host}:{port}",
            "chain_id": node.chain_id,
            "height": node.height,
            "block_ms": node.block_ms,
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    with sock:
        await serve_node(node, sock, stop, on_listening=announce, http_limits=http_limits)
    log.info("chain node stopped at height %d", node.height)
