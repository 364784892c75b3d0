"""deoss put / get / ls / rm: objects through a gateway (docs/api.md), with progress bars.

The gateway is ``--gateway URL``, else ``$DEOSS_GATEWAY``, else the address a local network
wrote (``.deoss/gateway/addr`` or ``.deoss/gateway/data/addr``), else http://127.0.0.1:8080.
Requests are signed with ``--key``, else ``$DEOSS_KEY``, else the local network's dev user key
(``.deoss/chain/keys/dev-0.toml``), else ~/.deoss/key.toml (``deoss.keyfile``). Exit codes:
0 done, 1 refused or failed, 2 bad command line, 3 not found. Downloads are written to
``OUT.part`` and renamed once complete, so OUT is never a partial object.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO, TypeVar

import msgspec
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from deoss.cli.commands.account import KEY_HELP, load_key
from deoss.cli.output import console, fail, print_json
from deoss.client.retry import RetryPolicy
from deoss.core.keys import KeyPair

if TYPE_CHECKING:
    # the gateway client imports httpx and the web framework: imported when a command runs
    from deoss.client.gateway import GatewayClient

__all__ = [
    "EXIT_NOT_FOUND",
    "gateway_url",
    "get_command",
    "ls_command",
    "put_command",
    "rm_command",
]

T = TypeVar("T")
EXIT_NOT_FOUND = 3
DEFAULT_GATEWAY_URL = "http://127.0.0.1:8080"
DEVNET_ADDR_FILES = (Path(".deoss/gateway/addr"), Path(".deoss/gateway/data/addr"))
FID = re.compile(r"^[0-9a-f]{64}$")

GatewayOpt = Annotated[
    str | None,
    typer.Option(
        "--gateway",
        help="Gateway URL (default: $DEOSS_GATEWAY, .deoss/gateway/addr, http://127.0.0.1:8080).",
    ),
]
KeyOpt = Annotated[Path | None, typer.Option("--key", help=KEY_HELP)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]

progress_console = Console(stderr=True)

# How long a command keeps trying a gateway that is restarting or busy: put and get take
# --deadline (a put waits for its deal too); listing and deleting give up sooner.
TRANSFER_DEADLINE_S = 300.0
QUICK_DEADLINE_S = 10.0
DeadlineOpt = Annotated[
    float,
    typer.Option(
        "--deadline",
        min=0,
        help="Seconds to keep trying while the gateway restarts or is busy (a put: until its "
        "deal is SUCCESS).",
    ),
]


def gateway_url(option: str | None) -> str:
    """The gateway to talk to (see the module docstring for the order)."""
    if option:
        return option
    if os.environ.get("DEOSS_GATEWAY"):
        return os.environ["DEOSS_GATEWAY"]
    for addr_file in DEVNET_ADDR_FILES:
        with contextlib.suppress(OSError):
            address = addr_file.read_text().strip()
            if address:
                return f"http://{address}"
    return DEFAULT_GATEWAY_URL


def with_gateway(
    url: str | None,
    key: Path | None,
    work: Callable[[GatewayClient], Awaitable[T]],
    as_json: bool,
    *,
    deadline_s: float = QUICK_DEADLINE_S,
) -> T:
    """Run ``work`` with a client of the gateway; print a failure once and exit (1, or 3).
    What is safe to try again is tried again until ``deadline_s``, each wait said on stderr."""
    from deoss.client.gateway import GatewayClient, GatewayError, NotFound

    target = gateway_url(url)
    user: KeyPair = load_key(key, as_json)

    async def main() -> T:
        async with GatewayClient(
            target, user, retry=RetryPolicy(deadline_s=deadline_s), on_wait=_say_waiting
        ) as client:
            return await work(client)

    try:
        return asyncio.run(main())  # not client.chain's run: that imports the chain
    except NotFound as exc:
        fail(exc.message, as_json=as_json, code=EXIT_NOT_FOUND)
    except GatewayError as exc:
        if exc.code == "unreachable":
            fail(
                f"cannot reach the gateway at {target} (tried for {deadline_s:g} s); is it "
                "running? (deoss up, or deoss node gateway --config FILE)",
                as_json=as_json,
            )
        fail(str(exc), as_json=as_json)


def _say_waiting(message: str) -> None:
    progress_console.print(f"[dim]{message}[/]", highlight=False)


def split_target(text: str) -> tuple[str, str]:
    """ "bucket/name" -> (bucket, name); name may be empty ("bucket" or "bucket/")."""
    bucket, _, name = text.partition("/")
    if not bucket:
        raise typer.BadParameter(f"{text!r} does not start with a bucket name")
    return bucket, name


@contextlib.contextmanager
def transfer_bar(what: str, total: int, hidden: bool) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on standard error (none with --json or when it is not a terminal)."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=progress_console,
        transient=True,
        disable=hidden or not progress_console.is_terminal,
    )
    with bar:
        task = bar.add_task(what, total=total or None)

        def update(done: int, all_bytes: int) -> None:
            bar.update(task, completed=done, total=all_bytes or None)

        yield update


def put_command(
    file: Annotated[Path, typer.Argument(help="The file to store.")],
    target: Annotated[
        str | None,
        typer.Argument(help="BUCKET or BUCKET/NAME (default: $DEOSS_BUCKET; NAME: the file's)."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait until the deal is SUCCESS.")
    ] = True,
    gateway: GatewayOpt = None,
    key: KeyOpt = None,
    deadline: DeadlineOpt = TRANSFER_DEADLINE_S,
    as_json: JsonOpt = False,
) -> None:
    """Store FILE as an object; prints its fid once the network holds it."""
    where = target or os.environ.get("DEOSS_BUCKET")
    if not where:
        raise typer.BadParameter("name a bucket: deoss put FILE BUCKET[/NAME]", param_hint="TARGET")
    bucket, name = split_target(where)
    name = name or file.name
    try:
        size = file.stat().st_size
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}", as_json=as_json)
    if file.is_dir():
        fail(f"{file} is a directory, not a file", as_json=as_json)

    async def put(client: GatewayClient) -> dict[str, Any]:
        with transfer_bar(f"put {name}", size, as_json) as progress:
            result = await client.put_object(bucket, name, file, wait=wait, progress=progress)
        return dataclasses.asdict(result)

    stored = with_gateway(gateway, key, put, as_json, deadline_s=deadline)
    if as_json:
        print_json(stored)
        return
    how = (
        "deduplicated"
        if stored["deduplicated"]
        else f"deal {stored['deal_id']} {stored['state']}"
        if stored["deal_id"] is not None
        else "stored by an earlier try"
    )
    console.print(f"{bucket}/{name}  {stored['fid']}  {stored['size']} bytes  ({how})")


def get_command(
    source: Annotated[str, typer.Argument(help="BUCKET/NAME, or the fid of a stored file.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Where to write it (default: NAME's last part; - stdout)."
        ),
    ] = None,
    byte_range: Annotated[
        str | None, typer.Option("--range", help="Only these bytes: START-END, START-, -COUNT.")
    ] = None,
    size: Annotated[
        int | None, typer.Option("--size", help="With a fid: the object size to cut to.", min=0)
    ] = None,
    gateway: GatewayOpt = None,
    key: KeyOpt = None,
    deadline: DeadlineOpt = TRANSFER_DEADLINE_S,
    as_json: JsonOpt = False,
) -> None:
    """Download an object (or a file by fid), streamed to OUT."""
    by_fid = FID.match(source) is not None
    if not by_fid:
        bucket, name = split_target(source)
        if not name:
            raise typer.BadParameter(f"{source!r}: expected BUCKET/NAME or a fid")
    out = output or Path(source.rpartition("/")[2])
    if str(out) == "-" and as_json:
        raise typer.BadParameter("--json prints to standard output; write the object to a file")

    async def get(client: GatewayClient) -> dict[str, Any]:
        with (
            _sink(out) as sink,
            transfer_bar(f"get {out}", 0, as_json or sink is sys.stdout.buffer) as progress,
        ):
            if by_fid:
                done = await client.download_file(
                    source, sink, size=size, byte_range=byte_range, progress=progress
                )
            else:
                done = await client.download_object(
                    bucket, name, sink, byte_range=byte_range, progress=progress
                )
        return {"source": source, "output": str(out), **msgspec.structs.asdict(done)}

    got = with_gateway(gateway, key, get, as_json, deadline_s=deadline)
    if as_json:
        print_json(got)
    elif str(out) != "-":
        console.print(f"{source} -> {out}  {got['written']} bytes  {got['fid']}")


@contextlib.contextmanager
def _sink(out: Path) -> Iterator[BinaryIO]:
    """Standard output, or OUT.part renamed to OUT when the block ends without error."""
    if str(out) == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    partial = out.with_name(f"{out.name}.part")
    try:
        with open(partial, "wb") as handle:
            yield handle
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)


def ls_command(
    target: Annotated[
        str | None, typer.Argument(help="BUCKET or BUCKET/PREFIX (default: list the buckets).")
    ] = None,
    gateway: GatewayOpt = None,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List your buckets, or the objects of a bucket (with a name prefix)."""
    if target is None:
        buckets = with_gateway(gateway, key, lambda c: c.list_buckets(), as_json)
        rows = [
            {"name": b.name, "objects": b.object_count, "created_at": b.created_at} for b in buckets
        ]
        if as_json:
            print_json({"buckets": rows})
            return
        _table(["bucket", "objects", "created at block"], [list(r.values()) for r in rows])
        return
    bucket, prefix = split_target(target)

    async def listing(client: GatewayClient) -> list[dict[str, Any]]:
        return [
            {"name": o.name, "size": o.size, "fid": o.fid, "created_at": o.created_at}
            async for o in client.iter_objects(bucket, prefix=prefix)
        ]

    objects = with_gateway(gateway, key, listing, as_json)
    if as_json:
        print_json({"bucket": bucket, "prefix": prefix, "objects": objects})
        return
    _table(["size", "fid", "name"], [[o["size"], o["fid"], o["name"]] for o in objects])


def rm_command(
    target: Annotated[str, typer.Argument(help="BUCKET/NAME of the object to delete.")],
    gateway: GatewayOpt = None,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete an object (its storage goes with its last object)."""
    bucket, name = split_target(target)
    if not name:
        raise typer.BadParameter(
            f"{target!r}: expected BUCKET/NAME (deoss bucket rm deletes buckets)"
        )
    deleted = with_gateway(gateway, key, lambda c: c.delete_object(bucket, name), as_json)
    if as_json:
        print_json({"bucket": bucket, "name": name, "deleted": True, "height": deleted.height})
        return
    console.print(f"deleted {bucket}/{name} (block {deleted.height})")


def _table(headers: list[str], rows: list[list[Any]]) -> None:
    table = Table(*headers, box=None, pad_edge=False)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    console.print(table)
