"""deoss up / down: the local network of real processes (deoss.devnet)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from deoss.cli.output import console, fail, print_json
from deoss.keyfile import DEVNET_USER_KEY, read_key_file

# deoss.devnet imports the chain, its client and numpy: imported when a command runs.

HomeOpt = Annotated[Path, typer.Option("--home", help="Where the network keeps its data.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def up_command(
    home: HomeOpt = Path(".deoss"),
    detach: Annotated[bool, typer.Option(help="Return once the network is ready.")] = False,
    schedulers: Annotated[int, typer.Option(min=1, max=16)] = 2,
    miners: Annotated[int, typer.Option(min=1, max=64)] = 16,  # as DevnetSpec: room to repair
    block_ms: Annotated[int, typer.Option(min=50, max=60_000)] = 500,
    chain_port: Annotated[int, typer.Option(min=0, max=65535)] = 26657,
    gateway_port: Annotated[int, typer.Option(min=0, max=65535)] = 8080,
    as_json: JsonOpt = False,
) -> None:
    """Start a local network: chain, schedulers, miners, gateway (Ctrl-C stops it)."""
    from deoss.client.chain import DEFAULT_NODE_URL
    from deoss.devnet import DEV_BUCKET, DevnetError, DevnetSpec, up

    spec = DevnetSpec(
        home=home.resolve(),
        schedulers=schedulers,
        miners=miners,
        block_ms=block_ms,
        chain_port=chain_port,
        gateway_port=gateway_port,
    )
    try:
        net = up(spec, detach=detach)
    except DevnetError as exc:
        fail(str(exc), as_json=as_json)
    user = read_key_file(spec.key_path(0))
    info = {
        "home": str(spec.home),
        "chain": net.chain_url,
        "gateway": net.gateway_url,
        "user": user.address,
        "user_key": str(spec.key_path(0)),
        "bucket": DEV_BUCKET,
        "processes": {p.name: p.url for p in net.processes},
    }
    if as_json:
        print_json(info)
    else:
        # run from here, commands find this network's gateway and user key in .deoss/ and
        # its chain at the default address; from elsewhere they need the exports
        found = spec.key_path(0) == DEVNET_USER_KEY.resolve() and net.chain_url == DEFAULT_NODE_URL
        _print_ready(info, found)
    if detach:
        return
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    console.print("stopping the network…")
    net.stop()


def _print_ready(info: Mapping[str, object], found_here: bool) -> None:
    console.print(f"[bold green]DeOSS local network is up[/] (data in {info['home']})")
    console.print(f"  chain RPC   {info['chain']}")
    console.print(f"  gateway     {info['gateway']}")
    console.print(f"  dev user    {info['user']} (key {info['user_key']})")
    exports = (
        f"export DEOSS_KEY={info['user_key']} DEOSS_NODE={info['chain']} "
        f"DEOSS_GATEWAY={info['gateway']}"
    )
    console.print("Try, from this directory:" if found_here else f"Try:\n  {exports}")
    console.print("  deoss status")
    console.print(f"  deoss put README.md {info['bucket']}/readme.md")
    console.print(f"  deoss get {info['bucket']}/readme.md -o /tmp/readme.md")
    if found_here:
        console.print(f"From another directory, first: {exports}")
    console.print("Ctrl-C stops every process; data stays for the next deoss up.")


def down_command(home: HomeOpt = Path(".deoss"), as_json: JsonOpt = False) -> None:
    """Stop a network started with deoss up --detach."""
    from deoss.devnet import DevnetError, down

    try:
        count = down(home.resolve())
    except DevnetError as exc:
        fail(str(exc), as_json=as_json)
    if as_json:
        print_json({"stopped": count})
    else:
        console.print(f"stopped {count} processes")
