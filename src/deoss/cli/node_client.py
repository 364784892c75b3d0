"""How CLI commands talk to the chain node: one ChainClient per command, errors printed once.

Every client error becomes a clear message and exit code 1 (``fail``); tracebacks never reach
the user. Commands pass the work as an async function of the client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from deoss.cli.output import fail
from deoss.client.errors import ClientError, NodeUnavailable

if TYPE_CHECKING:
    from deoss.client.chain import ChainClient

__all__ = ["NodeOpt", "with_chain"]

T = TypeVar("T")

NodeOpt = Annotated[
    str | None,
    typer.Option(
        "--node",
        help="Chain node RPC URL, or several separated by commas, tried in turn"
        " (default: $DEOSS_NODE or http://127.0.0.1:26657).",
    ),
]


def with_chain(url: str | None, work: Callable[[ChainClient], Awaitable[T]], as_json: bool) -> T:
    """Run ``work`` with a client of the node at ``url``; exit 1 with a message on failure."""
    from deoss.client.chain import (  # heavy: not for --help
        ChainClient,
        default_node_url,
        node_urls,
        run,
    )

    node_url = url or default_node_url()
    try:
        node_urls(node_url)
    except ValueError as exc:  # a --node or $DEOSS_NODE that names no http(s) URL
        fail(f"--node: {exc}", as_json=as_json)

    async def main() -> T:
        async with ChainClient(node_url) as client:
            return await work(client)

    try:
        return run(main())
    except NodeUnavailable:
        fail(
            f"cannot reach the chain node at {node_url}; is it running? "
            "(start one with: deoss node chain --home DIR)",
            as_json=as_json,
        )
    except ClientError as exc:
        fail(str(exc), as_json=as_json)
