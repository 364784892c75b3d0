"""deoss chain init / status: create a chain home, show the chain's state."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deoss.cli.node_client import NodeOpt, with_chain
from deoss.cli.output import console, fail, print_json

if TYPE_CHECKING:
    from deoss.client.chain import ChainClient

# deoss.node.home's DEFAULT_CHAIN_ID (a test keeps them equal): that module imports the chain's
# parameters, numpy and more, which --help does without.
DEFAULT_CHAIN_ID = "deoss-devnet"

app = typer.Typer(help="Create a chain home and show the chain.", no_args_is_help=True)

HomeOpt = Annotated[Path, typer.Option("--home", help="The node's home directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.command("init")
def init_command(
    home: HomeOpt,
    chain_id: Annotated[str, typer.Option(help="Chain id.")] = DEFAULT_CHAIN_ID,
    dev_accounts: Annotated[int, typer.Option(help="Endowed dev accounts to create.")] = 4,
    block_ms: Annotated[int, typer.Option(help="Block interval in milliseconds.")] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """Write HOME/genesis.json, HOME/node.toml and the dev accounts' keys (mode 0600)."""
    from deoss.node.home import HomeError, genesis_path, init_home

    try:
        genesis, key_paths = init_home(
            home, chain_id=chain_id, dev_accounts=dev_accounts, block_ms=block_ms
        )
    except HomeError as exc:
        fail(str(exc), as_json=as_json)
    except OSError as exc:
        fail(f"cannot write {home}: {exc.strerror or exc}", as_json=as_json)
    accounts = [
        {"address": account.address, "balance": account.balance, "key_file": str(path)}
        for account, path in zip(genesis.accounts, key_paths, strict=True)
    ]
    if as_json:
        print_json(
            {
                "home": str(home),
                "chain_id": genesis.chain_id,
                "genesis": str(genesis_path(home)),
                "accounts": accounts,
            }
        )
        return
    console.print(f"chain {genesis.chain_id} initialised in {home}")
    for account in accounts:
        console.print(f"  {account['address']}  {account['balance']}  {account['key_file']}")
    console.print(f"start it with: deoss node chain --home {home}")


@app.command("status")
def status_command(node: NodeOpt = None, as_json: JsonOpt = False) -> None:
    """Height, app hash, chain id and latest block time of a running node."""
    from deoss.node.rpc_json import rfc3339

    async def read(client: ChainClient) -> dict[str, Any]:
        status = await client.status()
        info = await client.app_info()
        return {
            "chain_id": status.chain_id,
            "height": info.height,
            "app_hash": info.app_hash.hex(),
            "latest_block_hash": status.block_hash.hex(),
            "latest_block_time": rfc3339(status.block_time_ns) if status.height else None,
            "node": client.url,
        }

    summary = with_chain(node, read, as_json)
    if as_json:
        print_json(summary)
        return
    for name in ("chain_id", "height", "app_hash", "latest_block_time", "node"):
        console.print(f"{name.replace('_', ' '):<18}{summary[name]}")
