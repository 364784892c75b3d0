"""deoss node scheduler: run a scheduler (checks, codes, places and tags uploads)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deoss.cli.output import fail
from deoss.services.scheduler.main import SchedulerStartError, run_scheduler

__all__ = ["scheduler_command"]


def scheduler_command(
    config: Annotated[Path, typer.Option("--config", help="The scheduler's TOML config file.")],
) -> None:
    """Run a scheduler until SIGINT or SIGTERM.

    It registers on chain (stake, endpoint, PoDR² tag key) if it is not registered yet; once it
    listens, DATA_DIR/addr holds HOST:PORT and one JSON line is printed.
    """
    try:
        run_scheduler(config)
    except SchedulerStartError as exc:
        fail(str(exc))
