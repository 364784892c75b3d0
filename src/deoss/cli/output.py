"""Printing for the CLI: rich tables for people, JSON for scripts, one error path."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

from rich.console import Console

__all__ = ["EXIT_ERROR", "EXIT_USAGE", "console", "fail", "print_json"]

EXIT_ERROR = 1  # the input was read but refused (bad file, bad key, bad parameters)
EXIT_USAGE = 2  # the command line itself was wrong (typer/click's code)

console = Console(highlight=False, soft_wrap=True)
error_console = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def fail(message: str, *, as_json: bool = False, code: int = EXIT_ERROR) -> NoReturn:
    """Print an error (to stderr, or as a JSON object on stdout with --json) and exit."""
    if as_json:
        print_json({"error": {"message": message}})
    else:
        error_console.print(f"[bold red]error:[/] {message}")
    raise SystemExit(code)
