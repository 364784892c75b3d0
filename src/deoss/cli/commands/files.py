"""deoss file show FID: a stored file as the chain records it (scheduler, fragment holders, tags).

A file exists on chain only once its deal reached SUCCESS, so its state is SUCCESS; a fid
with no file (never stored, still in progress, failed or deleted) exits 3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from deoss.cli.commands.status import JsonOpt, with_ledger
from deoss.cli.node_client import NodeOpt
from deoss.cli.output import console, print_json
from deoss.core.keys import address_of

if TYPE_CHECKING:
    from deoss.chain.modules.files import FileRecord
    from deoss.chain.modules.miners import MinerEntry
    from deoss.client.chain import ChainClient

app = typer.Typer(help="Show stored files.", no_args_is_help=True)


def file_json(
    record: FileRecord, miners: dict[str, MinerEntry], schedulers: dict[str, str]
) -> dict[str, Any]:
    def holder(pubkey: bytes) -> dict[str, Any]:
        address = address_of(pubkey)
        entry = miners.get(address)
        return {
            "miner": address,
            "endpoint": entry.miner.endpoint if entry else None,
            "state": entry.miner.state.name if entry else "UNKNOWN",
        }

    reporter = address_of(record.reporter)
    return {
        "fid": record.fid,
        "state": "SUCCESS",
        "size": sum(s.size for s in record.segments),
        "owners": record.owners,
        "created_at": record.created_at,
        "scheduler": {"address": reporter, "endpoint": schedulers.get(reporter)},
        "tagger": address_of(record.tagger),
        "tagged": record.tagged,
        "tag_deadline": record.tag_deadline,
        "segments": [
            {
                "index": s.index,
                "size": s.size,
                "padded_size": s.padded_size,
                "hash": s.hash.hex(),
                "fragments": [
                    {"index": i, "hash": h.hex(), **holder(p)}
                    for i, (h, p) in enumerate(zip(s.fragment_hashes, row, strict=True))
                ],
            }
            for s, row in zip(record.segments, record.holders, strict=True)
        ],
    }


@app.command("show")
def show_command(
    fid: Annotated[str, typer.Argument(help="The file's fid (64 hex digits).")],
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Deal state, placing scheduler, fragment holders and whether the file is tagged."""

    async def read(client: ChainClient) -> dict[str, Any]:
        record = await client.reads.file.required(fid)
        miners = await client.reads.miners()
        schedulers = await client.reads.schedulers()
        return file_json(
            record,
            {m.address: m for m in miners},
            {s.address: s.endpoint for s in schedulers},
        )

    shown = with_ledger(node, read, as_json)
    if as_json:
        print_json(shown)
        return
    scheduler = shown["scheduler"]
    tags = "tagged" if shown["tagged"] else f"not tagged yet (due at block {shown['tag_deadline']})"
    console.print(f"fid        {shown['fid']}")
    console.print(f"state      {shown['state']}, {shown['size']} bytes, {shown['owners']} owner(s)")
    console.print(f"stored at  block {shown['created_at']}, {tags}")
    console.print(f"scheduler  {scheduler['address']}  {scheduler['endpoint'] or ''}")
    for segment in shown["segments"]:
        console.print(
            f"segment {segment['index']}: {segment['size']} bytes ({segment['padded_size']} padded)"
        )
        for fragment in segment["fragments"]:
            console.print(
                f"  {fragment['index']:>3}  {fragment['hash'][:16]}…  {fragment['miner']}"
                f"  {fragment['state']}"
            )
