"""deoss audit status and deoss repair status: proofs of storage and the rebuilding of fragments,
as the chain records them.

``audit status`` shows the latest challenge round, how each challenged miner answered, and the
miners' slashes and rewards. ``repair status`` lists the restoral orders: fragments of faulty or
exiting miners (or reported lost) waiting to be rebuilt on another miner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from deoss.chain.query import MAX_PAGE
from deoss.cli.commands.status import JsonOpt, with_ledger
from deoss.cli.node_client import NodeOpt
from deoss.cli.output import console, print_json
from deoss.core.keys import address_of

if TYPE_CHECKING:
    from deoss.chain.modules.audit import ChallengeEntry, Round
    from deoss.chain.modules.miners import MinerEntry
    from deoss.chain.modules.restoral import Order
    from deoss.client.chain import ChainClient

# The chain's modules import numpy and the pairing library: imported where a command reads
# from the chain, not for --help.

app = typer.Typer(help="Audit rounds: challenges, proofs, slashes.", no_args_is_help=True)
repair_app = typer.Typer(help="Restoral orders: fragments being rebuilt.", no_args_is_help=True)

DEFAULT_ORDER_LIMIT = 1000


def print_table(table: Table) -> None:
    """Print ``table`` at its natural width, even past the console's: rows hold whole
    addresses (64 characters), which rich would otherwise cut to fit 80 columns."""
    natural = Measurement.get(console, console.options.update(max_width=10_000), table).maximum
    if natural <= console.width:
        console.print(table)
        return
    Console(highlight=False, soft_wrap=True, width=natural).print(table)


def round_json(round_: Round) -> dict[str, Any]:
    return {
        "number": round_.number,
        "seed": round_.seed.hex(),
        "started_at": round_.started_at,
        "deadline": round_.deadline,
        "challenged": round_.challenged,
        "settled": round_.settled,
    }


def audit_json(
    height: int,
    round_: Round | None,
    challenges: list[ChallengeEntry],
    miners: list[MinerEntry],
) -> dict[str, Any]:
    """The document ``deoss audit status --json`` prints."""
    return {
        "height": height,
        "round": round_json(round_) if round_ is not None else None,
        "challenges": [
            {
                "miner": entry.address,
                "round": entry.challenge.round,
                "fragments": sum(len(k.items) for k in entry.challenge.keys),
                "result": entry.challenge.result.name,
                "reason": entry.challenge.reason,
            }
            for entry in challenges
        ],
        "slashes": [
            {
                "miner": m.address,
                "slashed": m.miner.slashed,
                "total_faults": m.miner.total_faults,
                "consecutive_faults": m.miner.consecutive_faults,
                "state": m.miner.state.name,
            }
            for m in miners
            if m.miner.slashed > 0
        ],
        "rewards": [
            {"miner": m.address, "rewards": m.miner.rewards} for m in miners if m.miner.rewards > 0
        ],
    }


async def read_audit(client: ChainClient) -> dict[str, Any]:
    status = await client.status()
    round_ = await client.reads.round()  # None before the first round: not an error here
    challenges = await client.reads.challenges()
    miners = await client.reads.miners()
    return audit_json(status.height, round_, challenges, miners)


def _print_audit(shown: dict[str, Any]) -> None:
    console.print(f"height {shown['height']}")
    round_ = shown["round"]
    if round_ is None:
        console.print("no challenge round yet")
    else:
        closing = "settled" if round_["settled"] else f"proofs due by block {round_['deadline']}"
        console.print(
            f"round {round_['number']}: opened at block {round_['started_at']}, "
            f"{round_['challenged']} miner(s) challenged, {closing}"
        )
        console.print(f"seed  {round_['seed']}")
    if shown["challenges"]:
        table = Table("miner", "fragments", "result", "reason", box=None, pad_edge=False)
        for entry in shown["challenges"]:
            table.add_row(entry["miner"], str(entry["fragments"]), entry["result"], entry["reason"])
        print_table(table)
    if shown["slashes"]:
        console.print("slashed miners:")
        table = Table(
            "miner", "state", "slashed", "faults (in a row/total)", box=None, pad_edge=False
        )
        for entry in shown["slashes"]:
            faults = f"{entry['consecutive_faults']}/{entry['total_faults']}"
            table.add_row(entry["miner"], entry["state"], str(entry["slashed"]), faults)
        print_table(table)
    if shown["rewards"]:
        console.print("rewarded miners:")
        table = Table("miner", "rewards", box=None, pad_edge=False)
        for entry in shown["rewards"]:
            table.add_row(entry["miner"], str(entry["rewards"]))
        print_table(table)


@app.command("status")
def audit_status_command(node: NodeOpt = None, as_json: JsonOpt = False) -> None:
    """The latest challenge round, each challenged miner's result, slashes and rewards."""
    shown = with_ledger(node, read_audit, as_json)
    if as_json:
        print_json(shown)
        return
    _print_audit(shown)


def order_json(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "fid": order.fid,
        "segment": order.segment,
        "fragment": order.fragment,
        "state": order.state.name,
        "former": address_of(order.former),
        "claimer": address_of(order.claimer) if order.claimer else "",
        "deadline": order.deadline,
        "reason": order.reason,
        "created_at": order.created_at,
    }


async def read_orders(client: ChainClient, limit: int) -> tuple[list[Order], bool]:
    """Up to ``limit`` orders in id order, page by page; and whether more exist."""
    orders: list[Order] = []
    next_id = 0
    while True:
        # one more than the limit, to tell "exactly limit" from "more than limit"
        wanted = min(MAX_PAGE, limit + 1 - len(orders))
        page = await client.reads.orders(next_id, wanted)
        orders.extend(page)
        if len(page) < wanted or len(orders) > limit:
            break
        next_id = page[-1].id + 1
    return orders[:limit], len(orders) > limit


def repair_json(height: int, orders: list[Order], truncated: bool) -> dict[str, Any]:
    """The document ``deoss repair status --json`` prints."""
    from deoss.chain.modules.restoral import OrderState

    return {
        "height": height,
        "orders": [order_json(o) for o in orders],
        "open": sum(1 for o in orders if o.state == OrderState.OPEN),
        "claimed": sum(1 for o in orders if o.state == OrderState.CLAIMED),
        "truncated": truncated,
    }


@repair_app.command("status")
def repair_status_command(
    node: NodeOpt = None,
    as_json: JsonOpt = False,
    limit: Annotated[
        int, typer.Option("--limit", help="Show at most this many orders.", min=1)
    ] = DEFAULT_ORDER_LIMIT,
) -> None:
    """The restoral orders (open or claimed), oldest first, and how many are in each state."""

    async def read(client: ChainClient) -> dict[str, Any]:
        status = await client.status()
        orders, truncated = await read_orders(client, limit)
        return repair_json(status.height, orders, truncated)

    shown = with_ledger(node, read, as_json)
    if as_json:
        print_json(shown)
        return
    more = f" (the first {limit}; there are more)" if shown["truncated"] else ""
    console.print(
        f"height {shown['height']}: {len(shown['orders'])} restoral order(s){more}, "
        f"{shown['open']} open, {shown['claimed']} claimed"
    )
    if not shown["orders"]:
        return
    table = Table(
        "id",
        "fid",
        "segment",
        "fragment",
        "state",
        "former",
        "claimer",
        "deadline",
        "reason",
        "created",
        box=None,
        pad_edge=False,
    )
    for order in shown["orders"]:
        table.add_row(
            str(order["id"]),
            f"{order['fid'][:16]}…",
            str(order["segment"]),
            str(order["fragment"]),
            order["state"],
            order["former"],
            order["claimer"] or "-",
            str(order["deadline"]) if order["state"] == "CLAIMED" else "-",
            order["reason"],
            str(order["created_at"]),
        )
    print_table(table)
