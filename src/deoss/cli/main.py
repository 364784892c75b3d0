"""The ``deoss`` command: one typer app; each noun's commands live in cli/commands/.

Commands are listed here by module and attribute and imported only when they run
(``deoss.cli.lazy``), so ``deoss --help`` imports none of them. A new command goes into
``COMMANDS`` with the first paragraph of its help (tests/unit/cli/test_startup.py checks it).
"""

from __future__ import annotations

import typer

from deoss.cli.lazy import LazyCommand, LazyGroup

__all__ = ["app", "main"]

_C = "deoss.cli.commands"
COMMANDS = {
    "fid": LazyCommand(
        f"{_C}.data", "fid_command", "Print the fid and size of a file, without uploading anything."
    ),
    "inspect": LazyCommand(
        f"{_C}.data",
        "inspect_command",
        "Print the segment and fragment plan of a file: sizes and SHA-256 hashes.",
    ),
    "up": LazyCommand(
        f"{_C}.devnet",
        "up_command",
        "Start a local network: chain, schedulers, miners, gateway (Ctrl-C stops it).",
    ),
    "down": LazyCommand(
        f"{_C}.devnet", "down_command", "Stop a network started with deoss up --detach."
    ),
    "status": LazyCommand(
        f"{_C}.status",
        "status_command",
        "Height, schedulers, miners, gateways and deals in each state.",
    ),
    "put": LazyCommand(
        f"{_C}.objects",
        "put_command",
        "Store FILE as an object; prints its fid once the network holds it.",
    ),
    "get": LazyCommand(
        f"{_C}.objects", "get_command", "Download an object (or a file by fid), streamed to OUT."
    ),
    "ls": LazyCommand(
        f"{_C}.objects",
        "ls_command",
        "List your buckets, or the objects of a bucket (with a name prefix).",
    ),
    "rm": LazyCommand(
        f"{_C}.objects", "rm_command", "Delete an object (its storage goes with its last object)."
    ),
    "keys": LazyCommand(f"{_C}.keys", "app", "Create and show account keys."),
    "chain": LazyCommand(f"{_C}.chain", "app", "Create a chain home and show the chain."),
    "node": LazyCommand(f"{_C}.node", "app", "Run a node of the network."),
    "account": LazyCommand(f"{_C}.account", "app", "Show accounts and transfer funds."),
    "space": LazyCommand(f"{_C}.space", "app", "Buy and show storage space."),
    "bucket": LazyCommand(f"{_C}.bucket", "app", "Create, list and delete buckets."),
    "gateway": LazyCommand(f"{_C}.gateway", "app", "Authorize and revoke gateways."),
    "file": LazyCommand(f"{_C}.files", "app", "Show stored files."),
    "miner": LazyCommand(
        f"{_C}.miner",
        "app",
        "Show storage miners; top up a miner's stake; recover a faulty miner; exit as a miner.",
    ),
    "audit": LazyCommand(f"{_C}.audit", "app", "Audit rounds: challenges, proofs, slashes."),
    "repair": LazyCommand(f"{_C}.audit", "repair_app", "Restoral orders: fragments being rebuilt."),
}


class DeossGroup(LazyGroup):
    lazy_commands = COMMANDS


app = typer.Typer(
    name="deoss",
    help="DeOSS: decentralized object storage. Use --json on any command for scripts.",
    cls=DeossGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    # A callback makes typer build a group although no command is registered on the app itself.
    pass


def main() -> None:
    from deoss.runtime import tune_allocator  # ctypes: only for commands that run

    tune_allocator()
    app()
