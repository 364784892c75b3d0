"""deoss gateway authorize / revoke / ls: which gateways may act for you, on chain.

A gateway stores and deletes objects for a user only while the user authorizes it; these
commands go straight to the chain with the user's key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from deoss.chain.modules.gateways import AuthorizeGateway, RevokeGateway
from deoss.chain.types import Call
from deoss.cli.commands.account import KeyOpt, check_address, load_key
from deoss.cli.commands.status import JsonOpt, with_ledger
from deoss.cli.node_client import NodeOpt
from deoss.cli.output import console, print_json

if TYPE_CHECKING:
    from deoss.client.chain import ChainClient

app = typer.Typer(help="Authorize and revoke gateways.", no_args_is_help=True)

GatewayArg = Annotated[str, typer.Argument(help="The gateway's account address.")]


def _submit(
    call: Call, verb: str, gateway: str, key: KeyOpt, node: str | None, as_json: bool
) -> None:
    user = load_key(key, as_json)

    async def submit(client: ChainClient) -> dict[str, Any]:
        outcome = await client.submit(user, call)
        return {"user": user.address, "gateway": gateway, verb: True, "height": outcome.height}

    done = with_ledger(node, submit, as_json)
    if as_json:
        print_json(done)
        return
    console.print(f"gateway {gateway} {verb} (block {done['height']})")


@app.command("authorize")
def authorize_command(
    gateway: GatewayArg, key: KeyOpt = None, node: NodeOpt = None, as_json: JsonOpt = False
) -> None:
    """Let a registered gateway act for you (exit 3 if it is not registered)."""
    address = check_address(gateway, as_json)
    _submit(AuthorizeGateway(gateway=address), "authorized", address, key, node, as_json)


@app.command("revoke")
def revoke_command(
    gateway: GatewayArg, key: KeyOpt = None, node: NodeOpt = None, as_json: JsonOpt = False
) -> None:
    """Withdraw a gateway's authorization (exit 3 if it had none)."""
    address = check_address(gateway, as_json)
    _submit(RevokeGateway(gateway=address), "revoked", address, key, node, as_json)


@app.command("ls")
def ls_command(key: KeyOpt = None, node: NodeOpt = None, as_json: JsonOpt = False) -> None:
    """The registered gateways, and whether you authorized each."""
    user = load_key(key, as_json)

    async def read(client: ChainClient) -> list[dict[str, Any]]:
        registered = await client.reads.gateways()
        mine = await client.reads.authorized_gateways(user.address)
        return [
            {"address": g.address, "endpoint": g.endpoint, "authorized": g.address in mine}
            for g in registered
        ]

    gateways = with_ledger(node, read, as_json)
    if as_json:
        print_json({"user": user.address, "gateways": gateways})
        return
    for gateway in gateways:
        mark = "authorized" if gateway["authorized"] else "-"
        console.print(f"{gateway['address']}  {gateway['endpoint']}  {mark}")
