"""deoss bucket create / ls / rm: buckets on chain, with the user's key (not through a gateway)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from deoss.chain.modules.buckets import CreateBucket, DeleteBucket
from deoss.chain.types import Call
from deoss.cli.commands.account import KeyOpt, check_address, load_key
from deoss.cli.commands.status import JsonOpt, with_ledger
from deoss.cli.node_client import NodeOpt
from deoss.cli.output import console, print_json

if TYPE_CHECKING:
    from deoss.client.chain import ChainClient

app = typer.Typer(help="Create, list and delete buckets.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="Bucket name (3..63 of a-z 0-9 . -).")]


def _submit(call: Call, verb: str, name: str, key: KeyOpt, node: str | None, as_json: bool) -> None:
    user = load_key(key, as_json)

    async def submit(client: ChainClient) -> dict[str, Any]:
        outcome = await client.submit(user, call)
        return {"bucket": name, "owner": user.address, verb: True, "height": outcome.height}

    done = with_ledger(node, submit, as_json)
    if as_json:
        print_json(done)
        return
    console.print(f"bucket {name} {verb} (block {done['height']})")


@app.command("create")
def create_command(
    name: NameArg, key: KeyOpt = None, node: NodeOpt = None, as_json: JsonOpt = False
) -> None:
    """Create a bucket."""
    _submit(CreateBucket(name=name), "created", name, key, node, as_json)


@app.command("rm")
def rm_command(
    name: NameArg, key: KeyOpt = None, node: NodeOpt = None, as_json: JsonOpt = False
) -> None:
    """Delete an empty bucket (exit 3 if there is none of that name)."""
    _submit(DeleteBucket(name=name), "deleted", name, key, node, as_json)


@app.command("ls")
def ls_command(
    owner: Annotated[
        str | None, typer.Option("--owner", help="Whose buckets (default: the key file's).")
    ] = None,
    key: KeyOpt = None,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the buckets of an account, with their object counts."""
    address = check_address(owner, as_json) if owner else load_key(key, as_json).address

    async def read(client: ChainClient) -> list[dict[str, Any]]:
        entries = await client.reads.buckets(address)
        return [
            {"name": e.name, "object_count": e.object_count, "created_at": e.created_at}
            for e in entries
        ]

    buckets = with_ledger(node, read, as_json)
    if as_json:
        print_json({"owner": address, "buckets": buckets})
        return
    for bucket in buckets:
        console.print(
            f"{bucket['name']:<40} {bucket['object_count']:>8} objects  "
            f"created at block {bucket['created_at']}"
        )
