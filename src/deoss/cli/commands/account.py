"""deoss account show / transfer: an account's balance and nonce; move funds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deoss.cli.node_client import NodeOpt, with_chain
from deoss.cli.output import console, fail, print_json
from deoss.core.errors import DataPathError
from deoss.core.keys import KeyPair, parse_address
from deoss.keyfile import KeyFileNotFound, find_key_path, read_key_file

if TYPE_CHECKING:
    from deoss.client.chain import ChainClient

app = typer.Typer(help="Show accounts and transfer funds.", no_args_is_help=True)

# The chain refuses amounts of 2^63 and more (they do not fit its integers).
MAX_AMOUNT = 2**63 - 1

KEY_HELP = (
    "Key file (default: $DEOSS_KEY, else the local network's .deoss/chain/keys/dev-0.toml,"
    " else ~/.deoss/key.toml)."
)
KeyOpt = Annotated[Path | None, typer.Option("--key", help=KEY_HELP)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def load_key(path: Path | None, as_json: bool) -> KeyPair:
    """The key to sign with; exit 1 with a message if there is none or it cannot be used."""
    return locate_key(path, as_json)[1]


def locate_key(path: Path | None, as_json: bool) -> tuple[Path, KeyPair]:
    """The key file to sign with (``deoss.keyfile.find_key_path``: --key, $DEOSS_KEY, the local
    network's dev user, ~/.deoss/key.toml) and its key; exit 1 naming every place looked if none
    has one, or saying why the file cannot be used."""
    try:
        key_path = find_key_path(path)
    except KeyFileNotFound as exc:
        fail(str(exc), as_json=as_json)
    try:
        return key_path, read_key_file(key_path)
    except FileNotFoundError:  # removed since it was found
        fail(f"no key file at {key_path}; create one with: deoss keys new", as_json=as_json)
    except DataPathError as exc:
        fail(str(exc), as_json=as_json)
    except OSError as exc:
        fail(f"cannot read {key_path}: {exc.strerror}", as_json=as_json)


def check_address(address: str, as_json: bool) -> str:
    try:
        parse_address(address)
    except DataPathError as exc:
        fail(str(exc), as_json=as_json)
    return address


@app.command("show")
def show_command(
    address: Annotated[
        str | None, typer.Argument(help="Account address (default: the key file's).")
    ] = None,
    key: KeyOpt = None,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Balance and nonce of an account."""
    target = check_address(address, as_json) if address else load_key(key, as_json).address

    async def read(client: ChainClient) -> dict[str, Any]:
        account = await client.account(target)
        params = await client.reads.params()
        return {
            "address": target,
            "balance": account.balance,
            "nonce": account.nonce,
            "tx_fee": params.tx_fee,
            "state_byte_price": params.state_byte_price,
        }

    shown = with_chain(node, read, as_json)
    if as_json:
        print_json(shown)
        return
    console.print(f"address  {shown['address']}")
    console.print(f"balance  {shown['balance']}")
    console.print(f"nonce    {shown['nonce']}")
    console.print(
        f"fees     {shown['tx_fee']} per transaction"
        f" + {shown['state_byte_price']} per byte of new state"
    )


@app.command("transfer")
def transfer_command(
    to: Annotated[str, typer.Argument(help="Recipient address.")],
    amount: Annotated[int, typer.Argument(help="Amount in base units.", min=1, max=MAX_AMOUNT)],
    key: KeyOpt = None,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send AMOUNT to TO and wait until the transfer is in a block."""
    from deoss.chain.modules.accounts import Transfer  # numpy and more: only when it runs

    recipient = check_address(to, as_json)
    sender = load_key(key, as_json)

    async def send(client: ChainClient) -> dict[str, Any]:
        outcome = await client.submit(sender, Transfer(to=recipient, amount=amount))
        return {
            "hash": outcome.hash.hex().upper(),
            "height": outcome.height,
            "from": sender.address,
            "to": recipient,
            "amount": amount,
        }

    sent = with_chain(node, send, as_json)
    if as_json:
        print_json(sent)
        return
    console.print(f"sent {amount} to {recipient} in block {sent['height']} (tx {sent['hash']})")
