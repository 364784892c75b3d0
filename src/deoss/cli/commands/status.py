"""deoss status: the network as the chain sees it (height, schedulers, miners, deals by state),
and ``with_ledger``, the runner the chain-side commands (space, bucket, gateway, file) share.

``with_ledger`` is ``deoss.cli.node_client.with_chain`` plus exit code 3 for "not found": a
query or transaction refused with the chain's NotFound code. Other refusals exit 1.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from deoss.chain.errors import NotFound
from deoss.cli.node_client import NodeOpt, with_chain
from deoss.cli.output import console, fail, print_json
from deoss.client.errors import QueryFailed, TxRefused

if TYPE_CHECKING:
    from deoss.client.chain import ChainClient

__all__ = ["EXIT_NOT_FOUND", "JsonOpt", "status_command", "with_ledger"]

T = TypeVar("T")
EXIT_NOT_FOUND = 3
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


class _Missing(Exception):
    """A chain refusal with the NotFound code, carried out of ``with_chain``."""


def with_ledger(node: str | None, work: Callable[[ChainClient], Awaitable[T]], as_json: bool) -> T:
    """Run ``work`` against the chain node; exit 3 if it named something that does not exist,
    1 on any other failure (with the chain's message)."""

    async def guarded(client: ChainClient) -> T:
        try:
            return await work(client)
        except (QueryFailed, TxRefused) as exc:
            if exc.code == NotFound.code:
                raise _Missing(exc.log) from exc
            raise

    try:
        return with_chain(node, guarded, as_json)
    except _Missing as missing:
        fail(str(missing), as_json=as_json, code=EXIT_NOT_FOUND)


async def read_status(client: ChainClient) -> dict[str, Any]:
    status = await client.status()
    schedulers = await client.reads.schedulers()
    miners = await client.reads.miners()
    gateways = await client.reads.gateways()
    deals = await client.reads.deal_counts()
    return {
        "chain_id": status.chain_id,
        "height": status.height,
        "node": client.url,
        "deals": {
            "open": deals.open,
            "assigned": deals.assigned,
            "success": deals.success,
            "failed": deals.failed,
        },
        "schedulers": [
            {"address": s.address, "endpoint": s.endpoint, "stake": s.stake} for s in schedulers
        ],
        "miners": [
            {
                "address": m.address,
                "endpoint": m.miner.endpoint,
                "state": m.miner.state.name,
                "capacity_bytes": m.miner.capacity_bytes,
                "service_bytes": m.miner.service_bytes,
                "idle_bytes": m.miner.idle_bytes,
            }
            for m in miners
        ],
        "gateways": [{"address": g.address, "endpoint": g.endpoint} for g in gateways],
    }


def status_command(node: NodeOpt = None, as_json: JsonOpt = False) -> None:
    """Height, schedulers, miners, gateways and deals in each state."""
    summary = with_ledger(node, read_status, as_json)
    if as_json:
        print_json(summary)
        return
    deals = summary["deals"]
    console.print(f"chain {summary['chain_id']} at height {summary['height']} ({summary['node']})")
    console.print(
        f"deals: {deals['open']} open, {deals['assigned']} assigned, "
        f"{deals['success']} success, {deals['failed']} failed"
    )
    for role in ("schedulers", "gateways"):
        console.print(f"{role}: {len(summary[role])}")
        for entry in summary[role]:
            console.print(f"  {entry['address']}  {entry['endpoint']}")
    table = Table("miner", "state", "endpoint", "service", "idle", box=None, pad_edge=False)
    for miner in summary["miners"]:
        table.add_row(
            miner["address"],
            miner["state"],
            miner["endpoint"],
            str(miner["service_bytes"]),
            str(miner["idle_bytes"]),
        )
    console.print(f"miners: {len(summary['miners'])}")
    if summary["miners"]:
        console.print(table)
