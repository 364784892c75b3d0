"""deoss keys new / show: the account key file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deoss.cli.commands.account import KeyOpt, locate_key
from deoss.cli.output import console, fail, print_json
from deoss.core.keys import KeyPair
from deoss.keyfile import default_key_path, write_key_file

app = typer.Typer(help="Create and show account keys.", no_args_is_help=True)

# A new key goes to $DEOSS_KEY or ~/.deoss/key.toml, never into a local network's home.
NewKeyOpt = Annotated[
    Path | None,
    typer.Option("--key", help="Where to write it (default: $DEOSS_KEY or ~/.deoss/key.toml)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _describe(key: KeyPair, path: Path, as_json: bool) -> None:
    if as_json:
        print_json({"address": key.address, "public_key": key.public_key.hex(), "file": str(path)})
    else:
        console.print(f"address     {key.address}")
        console.print(f"public key  {key.public_key.hex()}")
        console.print(f"file        {path}")


@app.command("new")
def new_command(
    key: NewKeyOpt = None,
    force: Annotated[bool, typer.Option(help="Replace an existing key file.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a new account key and write it with mode 0600."""
    path = key or default_key_path()
    pair = KeyPair.generate()
    try:
        write_key_file(path, pair, overwrite=force)
    except FileExistsError:
        fail(f"{path} already exists; use --force to replace it", as_json=as_json)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}", as_json=as_json)
    _describe(pair, path, as_json)


@app.command("show")
def show_command(key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Show the address and public key of the key commands sign with (never the secret)."""
    path, pair = locate_key(key, as_json)
    _describe(pair, path, as_json)
