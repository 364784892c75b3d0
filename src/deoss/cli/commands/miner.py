"""deoss miner status / stake / recover / exit: storage miners as the chain records them, topping
up a miner's stake, bringing a FAULTY miner back, and a graceful exit.

Slashes take a share of the stake; once it is under what the miner's capacity requires, the
miner gets no new fragments and may not claim restoral orders until ``deoss miner stake`` tops it
up.

A FAULTY miner (too many missed or failed proofs in a row) gets no new fragments and restoral
orders rebuild what it held elsewhere. ``deoss miner recover`` brings it back to ACTIVE once one
audit interval has passed since it went FAULTY and its stake covers its capacity (``deoss miner
stake`` first if slashes took it under). It comes back holding none of the fragments still being
rebuilt: it earns and is challenged only for what it receives from then on.

An exit is announced on chain with the miner's account key: from then on the miner receives no
new fragments, restoral orders move the fragments it holds to other miners, and once it holds
nothing its stake comes back and it is EXITED.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from deoss.chain.types import Call
from deoss.cli.commands.account import MAX_AMOUNT, KeyOpt, check_address, load_key
from deoss.cli.commands.audit import print_table
from deoss.cli.commands.status import JsonOpt, with_ledger
from deoss.cli.node_client import NodeOpt
from deoss.cli.output import console, print_json

if TYPE_CHECKING:
    from deoss.chain.modules.miners import Miner
    from deoss.client.chain import ChainClient

# The chain's modules import numpy and the pairing library: imported where a command runs,
# not for --help.

app = typer.Typer(
    help="Show storage miners; top up a miner's stake; recover a faulty miner; exit as a miner.",
    no_args_is_help=True,
)


def miner_json(address: str, miner: Miner) -> dict[str, Any]:
    return {
        "address": address,
        "endpoint": miner.endpoint,
        "state": miner.state.name,
        "capacity_bytes": miner.capacity_bytes,
        "service_bytes": miner.service_bytes,
        "locked_bytes": miner.locked_bytes,
        "idle_bytes": miner.idle_bytes,
        "stake": miner.stake,
        "consecutive_faults": miner.consecutive_faults,
        "total_faults": miner.total_faults,
        "rewards": miner.rewards,
        "slashed": miner.slashed,
        "registered_at": miner.registered_at,
    }


async def _read_one(client: ChainClient, address: str) -> dict[str, Any]:
    from deoss.chain.modules.miners import MinerState, recovery_height, required_stake

    miner = await client.reads.miner.required(address)
    holdings = await client.reads.holdings(address)
    params = await client.reads.params()
    required = required_stake(params, miner.capacity_bytes)
    faulty = miner.state == MinerState.FAULTY
    return {
        **miner_json(address, miner),
        "fragments": len(holdings),
        "required_stake": required,
        # the first block a FAULTY miner may recover in (null in any other state)
        "recover_from": recovery_height(params, miner) if faulty else None,
    }


def _submit_as_miner(
    key: Path | None, node: str | None, call: Call, as_json: bool
) -> dict[str, Any]:
    """Submit ``call`` with the key file's account and wait for its block; the miner as it is
    after it, with the block ``height``."""
    account = load_key(key, as_json)

    async def submit(client: ChainClient) -> dict[str, Any]:
        outcome = await client.submit(account, call)
        shown = await _read_one(client, account.address)
        return {**shown, "height": outcome.height}

    return with_ledger(node, submit, as_json)


def _print_one(shown: dict[str, Any]) -> None:
    console.print(f"address     {shown['address']}")
    console.print(f"endpoint    {shown['endpoint']}")
    console.print(f"state       {shown['state']} (registered at block {shown['registered_at']})")
    console.print(
        f"space       {shown['capacity_bytes']} capacity, {shown['service_bytes']} service, "
        f"{shown['locked_bytes']} locked, {shown['idle_bytes']} idle (bytes)"
    )
    console.print(f"fragments   {shown['fragments']}")
    short = " (UNDER IT: no new fragments; top up with deoss miner stake)"
    console.print(
        f"stake       {shown['stake']}, {shown['required_stake']} required"
        f"{short if shown['stake'] < shown['required_stake'] else ''}"
    )
    console.print(
        f"faults      {shown['consecutive_faults']} in a row, {shown['total_faults']} in all"
    )
    console.print(f"rewards     {shown['rewards']}")
    console.print(f"slashed     {shown['slashed']}")
    if shown["recover_from"] is not None:
        _print_way_back(shown)


def _print_way_back(shown: dict[str, Any]) -> None:
    """What a FAULTY miner's operator does to come back."""
    console.print("FAULTY: no new fragments; restoral orders rebuild what it held elsewhere.")
    console.print("To come back to ACTIVE (fix the node first, and keep it running):")
    missing = shown["required_stake"] - shown["stake"]
    if missing > 0:
        console.print(f"  - top up the stake: deoss miner stake {missing}")
    console.print(f"  - from block {shown['recover_from']} on: deoss miner recover")
    console.print(
        "It comes back without the fragments being rebuilt: it is paid and challenged only for "
        "what it receives from then on."
    )


def _print_all(miners: list[dict[str, Any]]) -> None:
    console.print(f"miners: {len(miners)}")
    if not miners:
        return
    table = Table(
        "miner",
        "state",
        "capacity",
        "service",
        "idle",
        "stake",
        "faults",
        "rewards",
        "slashed",
        box=None,
        pad_edge=False,
    )
    for m in miners:
        table.add_row(
            m["address"],
            m["state"],
            str(m["capacity_bytes"]),
            str(m["service_bytes"]),
            str(m["idle_bytes"]),
            str(m["stake"]),
            f"{m['consecutive_faults']}/{m['total_faults']}",
            str(m["rewards"]),
            str(m["slashed"]),
        )
    print_table(table)
    console.print("faults: in a row / in all; space in bytes")


@app.command("status")
def status_command(
    address: Annotated[
        str | None, typer.Argument(help="A miner's account address (default: every miner).")
    ] = None,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every miner, or one (exit 3: not a miner): state, space, stake, faults, rewards, slashes."""
    if address is not None:
        target = check_address(address, as_json)
        shown = with_ledger(node, lambda client: _read_one(client, target), as_json)
        if as_json:
            print_json(shown)
            return
        _print_one(shown)
        return

    async def read_all(client: ChainClient) -> list[dict[str, Any]]:
        entries = await client.reads.miners()
        return [miner_json(e.address, e.miner) for e in entries]

    miners = with_ledger(node, read_all, as_json)
    if as_json:
        print_json({"miners": miners})
        return
    _print_all(miners)


@app.command("stake")
def stake_command(
    amount: Annotated[
        int, typer.Argument(min=1, max=MAX_AMOUNT, help="How much to move from the balance.")
    ],
    key: KeyOpt = None,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add AMOUNT to the stake of the miner whose account key is in the key file.

    Exit 3 if the key is not a miner's, 1 if the balance is too low or the miner has exited.
    """
    from deoss.chain.modules.miners import AddStake

    shown = _submit_as_miner(key, node, AddStake(amount=amount), as_json)
    if as_json:
        print_json(shown)
        return
    console.print(
        f"miner {shown['address']} staked {amount} in block {shown['height']}: its stake is "
        f"{shown['stake']}, {shown['required_stake']} required for its capacity"
    )


@app.command("recover")
def recover_command(key: KeyOpt = None, node: NodeOpt = None, as_json: JsonOpt = False) -> None:
    """Bring the FAULTY miner whose account key is in the key file back to ACTIVE.

    Exit 3 if the key is not a miner's; 1 if the miner is not FAULTY, is still in its cool-down,
    or its stake is under what its capacity requires (top up with deoss miner stake first).
    """
    from deoss.chain.modules.miners import RecoverMiner

    shown = _submit_as_miner(key, node, RecoverMiner(), as_json)
    if as_json:
        print_json(shown)
        return
    console.print(
        f"miner {shown['address']} recovered in block {shown['height']}: it is {shown['state']} "
        f"and holds {shown['fragments']} fragment(s)"
    )
    console.print(
        "Its former fragments stay with the restoral orders (deoss repair status); the miner "
        "drops each copy once it is rebuilt elsewhere. It receives new fragments and is "
        "challenged like any miner."
    )


@app.command("exit")
def exit_command(key: KeyOpt = None, node: NodeOpt = None, as_json: JsonOpt = False) -> None:
    """Announce a graceful exit of the miner whose account key is in the key file.

    Exit 3 if the key is not a miner's, 1 if the miner is already exiting or exited.
    """
    from deoss.chain.modules.miners import ExitMiner, MinerState

    shown = _submit_as_miner(key, node, ExitMiner(), as_json)
    if as_json:
        print_json(shown)
        return
    console.print(f"miner {shown['address']} announced its exit in block {shown['height']}")
    if shown["state"] == MinerState.EXITED.name:
        console.print("it held no fragments: it has exited and its stake is back in its account")
        return
    console.print(f"it is {shown['state']} and holds {shown['fragments']} fragment(s). Next:")
    console.print("  - it receives no new fragments;")
    console.print(
        "  - restoral orders move each of its fragments to other miners "
        "(follow them with: deoss repair status);"
    )
    console.print(
        f"  - once it holds nothing, its stake ({shown['stake']}) comes back to its account "
        "and it becomes EXITED."
    )
    console.print(
        "Keep the miner running until then: it is still challenged for what it holds, "
        "and missed proofs are slashed."
    )
