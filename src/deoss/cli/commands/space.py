"""deoss space buy / expand / renew / show: storage space bought on chain (GiB x days x price).

These go straight to the chain with the user's key (not through a gateway).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from deoss.chain.types import Call
from deoss.cli.commands.account import KeyOpt, check_address, load_key
from deoss.cli.commands.status import JsonOpt, with_ledger
from deoss.cli.node_client import NodeOpt
from deoss.cli.output import console, print_json
from deoss.core.keys import KeyPair

if TYPE_CHECKING:
    from deoss.chain.modules.space import Lease
    from deoss.client.chain import ChainClient

# deoss.chain.modules.space imports numpy and more: imported in the commands, not for --help.

app = typer.Typer(help="Buy and show storage space.", no_args_is_help=True)

GiB = 1024**3


def lease_json(address: str, lease: Lease) -> dict[str, Any]:
    return {
        "address": address,
        "state": lease.state.name,
        "total_bytes": lease.total_bytes,
        "used_bytes": lease.used_bytes,
        "locked_bytes": lease.locked_bytes,
        "free_bytes": lease.free_bytes,
        "expires_at": lease.expires_at,
    }


def _print_lease(shown: dict[str, Any]) -> None:
    console.print(f"address     {shown['address']}")
    console.print(f"state       {shown['state']}")
    for name in ("total", "used", "locked", "free"):
        value = shown[f"{name}_bytes"]
        console.print(f"{name:<12}{value} bytes ({value / GiB:.3f} GiB)")
    console.print(f"expires at  block {shown['expires_at']}")


def _change(user: KeyPair, call: Call, node: str | None, as_json: bool) -> None:
    """Submit ``call``, then show the lease as it is after the block."""

    async def submit(client: ChainClient) -> dict[str, Any]:
        outcome = await client.submit(user, call)
        lease = await client.reads.lease.required(user.address)
        return {**lease_json(user.address, lease), "height": outcome.height}

    shown = with_ledger(node, submit, as_json)
    if as_json:
        print_json(shown)
        return
    console.print(f"done in block {shown['height']}")
    _print_lease(shown)


@app.command("buy")
def buy_command(
    gib: Annotated[int, typer.Option("--gib", help="GiB to buy.", min=1)],
    days: Annotated[int, typer.Option("--days", help="For how many days.", min=1)],
    key: KeyOpt = None,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Buy GIB GiB of space for DAYS days (one lease per account; then expand or renew)."""
    from deoss.chain.modules.space import BuySpace

    _change(load_key(key, as_json), BuySpace(gib=gib, days=days), node, as_json)


@app.command("expand")
def expand_command(
    gib: Annotated[int, typer.Option("--gib", help="GiB to add.", min=1)],
    key: KeyOpt = None,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add GIB GiB to your lease, paying for the days it has left."""
    from deoss.chain.modules.space import ExpandSpace

    _change(load_key(key, as_json), ExpandSpace(gib=gib), node, as_json)


@app.command("renew")
def renew_command(
    days: Annotated[int, typer.Option("--days", help="Days to add.", min=1)],
    key: KeyOpt = None,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Extend your lease by DAYS days (a frozen lease becomes active again)."""
    from deoss.chain.modules.space import RenewSpace

    _change(load_key(key, as_json), RenewSpace(days=days), node, as_json)


@app.command("show")
def show_command(
    address: Annotated[
        str | None, typer.Argument(help="Account address (default: the key file's).")
    ] = None,
    key: KeyOpt = None,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Total, used, locked and free space of an account, and when it expires (exit 3: none)."""
    target = check_address(address, as_json) if address else load_key(key, as_json).address

    async def read(client: ChainClient) -> dict[str, Any]:
        lease = await client.reads.lease.required(target)
        return lease_json(target, lease)

    shown = with_ledger(node, read, as_json)
    if as_json:
        print_json(shown)
        return
    _print_lease(shown)
