"""deoss node chain / miner / scheduler / gateway: run a node of the network.

The service commands import their service (the web framework and more) only when they run: they
are listed lazily (``deoss.cli.lazy``), so ``deoss node --help`` imports none of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deoss.cli.lazy import LazyCommand, LazyGroup
from deoss.cli.output import fail

_C = "deoss.cli.commands"


class NodeGroup(LazyGroup):
    lazy_commands = {
        "miner": LazyCommand(
            f"{_C}.node_miner", "miner_command", "Run a storage miner until SIGINT or SIGTERM."
        ),
        "scheduler": LazyCommand(
            f"{_C}.node_scheduler", "scheduler_command", "Run a scheduler until SIGINT or SIGTERM."
        ),
        "gateway": LazyCommand(
            f"{_C}.node_gateway", "gateway_command", "Run a gateway until SIGINT or SIGTERM."
        ),
    }


app = typer.Typer(help="Run a node of the network.", cls=NodeGroup, no_args_is_help=True)


@app.command("chain")
def chain_command(
    home: Annotated[Path, typer.Option("--home", help="The home made by deoss chain init.")],
    block_ms: Annotated[
        int | None, typer.Option(help="Block interval in ms (default: node.toml).")
    ] = None,
    rpc: Annotated[
        str | None, typer.Option(help="RPC listen address HOST:PORT; port 0 = any free port.")
    ] = None,
) -> None:
    """Run the embedded chain node until SIGINT or SIGTERM.

    Once the RPC listens, HOME/rpc.addr holds HOST:PORT and one JSON line is printed.
    """
    from deoss.node.devnode import NodeError
    from deoss.node.home import HomeError
    from deoss.node.serve import run_chain_node
    from deoss.node.store import StoreError

    try:
        run_chain_node(home, block_ms=block_ms, rpc=rpc)
    except (HomeError, StoreError, NodeError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot start the chain node: {exc.strerror or exc}")
