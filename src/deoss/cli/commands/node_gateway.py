"""deoss node gateway: run a gateway, the users' REST API (docs/services.md, docs/api.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deoss.cli.output import fail
from deoss.client.errors import ClientError
from deoss.core.errors import InvalidKey
from deoss.services.common.config import ConfigError
from deoss.services.gateway.main import run_gateway

__all__ = ["gateway_command"]


def gateway_command(
    config: Annotated[Path, typer.Option("--config", help="The gateway's TOML config file.")],
) -> None:
    """Run a gateway until SIGINT or SIGTERM.

    It registers itself on chain (or updates its endpoint), then serves the REST API (OpenAPI
    at /docs); once it listens, DATA_DIR/addr holds HOST:PORT and one JSON line is printed.
    """
    try:
        run_gateway(config)
    except (ConfigError, InvalidKey, ClientError) as exc:
        fail(str(exc))
    except FileNotFoundError as exc:
        fail(f"no such file: {exc.filename}")
    except OSError as exc:
        fail(f"cannot start the gateway: {exc.strerror or exc}")
