"""The ``deoss`` command: one typer app; each noun's commands live in cli/commands/."""

from __future__ import annotations

import typer

from deoss.cli.commands import account, chain, data, devnet, keys, node
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


def main() -> None:
    tune_allocator()
    app()
