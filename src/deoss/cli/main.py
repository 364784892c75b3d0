"""The ``deoss`` command: one typer app; each noun's commands live in cli/commands/."""

from __future__ import annotations

import typer

from deoss.cli.commands import (
    account,
    audit,
    bucket,
    chain,
    data,
    devnet,
    files,
    gateway,
    keys,
    miner,
    node,
    objects,
    space,
    status,
)
from deoss.runtime import tune_allocator

app = typer.Typer(
    name="deoss",
    help="DeOSS: decentralized object storage. Use --json on any command for scripts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("fid")(data.fid_command)
app.command("inspect")(data.inspect_command)
app.add_typer(keys.app, name="keys")
app.add_typer(chain.app, name="chain")
app.add_typer(node.app, name="node")
app.add_typer(account.app, name="account")
app.command("up")(devnet.up_command)
app.command("down")(devnet.down_command)
app.command("status")(status.status_command)
app.command("put")(objects.put_command)
app.command("get")(objects.get_command)
app.command("ls")(objects.ls_command)
app.command("rm")(objects.rm_command)
app.add_typer(space.app, name="space")
app.add_typer(bucket.app, name="bucket")
app.add_typer(gateway.app, name="gateway")
app.add_typer(files.app, name="file")
app.add_typer(miner.app, name="miner")
app.add_typer(audit.app, name="audit")
app.add_typer(audit.repair_app, name="repair")


def main() -> None:
    tune_allocator()
    app()
