"""deoss node chain: run a node of the network (the chain for now)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deoss.cli.commands.node_gateway import gateway_command
from deoss.cli.commands.node_miner import miner_command
from deoss.cli.commands.node_scheduler import scheduler_command
from deoss.cli.output import fail
from deoss.node.devnode import NodeError
from deoss.node.home import HomeError
from deoss.node.serve import run_chain_node
from deoss.node.store import StoreError

app = typer.Typer(help="Run a node of the network.", no_args_is_help=True)


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
    try:
        run_chain_node(home, block_ms=block_ms, rpc=rpc)
    except (HomeError, StoreError, NodeError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot start the chain node: {exc.strerror or exc}")


app.command("miner")(miner_command)
app.command("scheduler")(scheduler_command)
app.command("gateway")(gateway_command)
