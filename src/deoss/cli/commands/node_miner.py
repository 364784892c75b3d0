"""deoss node miner: run a storage miner (docs/services.md, "Miner")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deoss.cli.output import fail
from deoss.client.errors import ClientError
from deoss.core.errors import InvalidKey
from deoss.services.common.config import ConfigError
from deoss.services.common.errors import ServiceError
from deoss.services.miner.main import run_miner

__all__ = ["miner_command"]


def miner_command(
    config: Annotated[Path, typer.Option("--config", help="The miner's TOML config file.")],
) -> None:
    """Run a storage miner until SIGINT or SIGTERM.

    It registers itself on chain (or updates its endpoint), then serves fragments; once it
    listens, DATA_DIR/addr holds HOST:PORT and one JSON line is printed.
    """
    try:
        run_miner(config)
    except (ConfigError, InvalidKey, ClientError, ServiceError) as exc:
        fail(str(exc))
    except FileNotFoundError as exc:
        fail(f"no such file: {exc.filename}")
    except OSError as exc:
        fail(f"cannot start the miner: {exc.strerror or exc}")
