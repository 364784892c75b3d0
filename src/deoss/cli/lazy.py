"""Commands imported when they run: ``deoss --help`` lists every command without importing one.

Importing all the command modules pulls in the web framework, numpy, the erasure and pairing
libraries: about a second of CPU before the first line of help. A ``LazyGroup`` names its
commands by module and attribute, with the one line of help to list them by; a command's module
is imported only when the command (or its own ``--help``) is invoked. tests/unit/cli checks that
each listed line is the command's own help, and that help imports nothing heavy.

typer 0.29 carries its own copy of click (``typer._click``), and a group's lookup of its
commands is not public API: this module follows the pinned typer, and those tests fail if an
upgrade breaks it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any, ClassVar

import typer
from typer._click.core import Command, Context
from typer._click.exceptions import UsageError
from typer._click.formatting import HelpFormatter
from typer.core import TyperCommand, TyperGroup

__all__ = ["LazyCommand", "LazyGroup"]


@dataclass(frozen=True)
class LazyCommand:
    module: str  # e.g. "deoss.cli.commands.objects"
    attribute: str  # a typer.Typer (a command group) or a command function in that module
    help: str  # the line `deoss --help` lists it with: the first paragraph of its own help


class LazyGroup(TyperGroup):
    """A typer group whose ``lazy_commands`` are loaded on first use (subclass and set them)."""

    lazy_commands: ClassVar[Mapping[str, LazyCommand]] = {}

    class Placeholder(TyperCommand):
        """Stands for a command not imported yet, while the group's help is printed."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._listing = False

    def list_commands(self, ctx: Context) -> list[str]:
        eager = super().list_commands(ctx)
        return eager + [name for name in self.lazy_commands if name not in eager]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in self.lazy_commands:
            return command
        if self._listing:
            return self.placeholder(cmd_name)
        command = self._load(cmd_name)
        self.commands[cmd_name] = command
        return command

    def placeholder(self, name: str) -> Command:
        return self.Placeholder(name, help=self.lazy_commands[name].help)

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def resolve_command(
        self, ctx: Context, args: list[str]
    ) -> tuple[str | None, Command | None, list[str]]:
        # typer suggests from the commands loaded so far; suggest from every name instead
        suggest, self.suggest_commands = self.suggest_commands, False
        try:
            return super().resolve_command(ctx, args)
        except UsageError as exc:
            matches = get_close_matches(args[0], self.list_commands(ctx)) if args else []
            if suggest and matches:
                names = ", ".join(repr(match) for match in matches)
                exc.message = f"{exc.message.rstrip('.')}. Did you mean {names}?"
            raise
        finally:
            self.suggest_commands = suggest

    def _load(self, name: str) -> Command:
        entry = self.lazy_commands[name]
        target = getattr(importlib.import_module(entry.module), entry.attribute)
        if isinstance(target, typer.Typer):
            command: Command = typer.main.get_group(target)
        else:
            holder = typer.Typer(add_completion=False)
            holder.command(name)(target)
            command = typer.main.get_command(holder)
        command.name = name
        return command
