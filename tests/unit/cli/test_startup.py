"""The deoss command starts quickly: help imports no heavy module (the web framework, numpy,
the erasure and pairing libraries); commands are imported when they run, listed without it."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest
import typer
from typer._click.core import Context
from typer.testing import CliRunner

from deoss.cli.lazy import LazyGroup
from deoss.cli.main import app

HEAVY = ("fastapi", "numpy", "pyeclib", "py_arkworks_bls12381", "uvicorn", "httpx", "starlette")
GROUPS = [
    "keys",
    "chain",
    "node",
    "account",
    "space",
    "bucket",
    "gateway",
    "file",
    "miner",
    "audit",
    "repair",
]
runner = CliRunner()

# Runs `deoss ARGS...` as the entry point does, then prints the heavy modules it imported.
PROBE = """
import json, sys
from deoss.cli.main import main
args, watched = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
sys.argv = ["deoss", *args]
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = sorted({name.partition(".")[0] for name in sys.modules} & watched)
print(json.dumps({"code": code, "heavy": heavy}))
"""


def imported_by(args: list[str]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize(
    "args",
    [["--help"], []] + [[group, "--help"] for group in GROUPS] + [["put", "--help"]],
    ids=lambda args: " ".join(args) or "no-args",
)
def test_help_imports_no_heavy_module(args: list[str]) -> None:
    assert {"code": 0 if args else 2, "heavy": []} == imported_by(args)


def test_top_level_help_lists_every_command_with_its_own_help() -> None:
    """The one-line help shown before a command is imported is the command's own."""
    group = typer.main.get_command(app)
    assert isinstance(group, LazyGroup)
    ctx = Context(group, info_name="deoss")
    listed = runner.invoke(app, ["--help"]).output
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None and not isinstance(command, LazyGroup.Placeholder)
        summary = inspect.cleandoc(command.help or "").split("\n\n")[0]
        assert summary
        assert group.placeholder(name).help == summary, name
        assert name in listed


def test_unknown_command_still_gets_a_suggestion() -> None:
    result = runner.invoke(app, ["pt"])
    assert 2 == result.exit_code
    assert "No such command" in result.output and "put" in result.output


def test_lazily_loaded_groups_list_their_commands() -> None:
    result = runner.invoke(app, ["file", "--help"])
    assert 0 == result.exit_code and "show" in result.output
    result = runner.invoke(app, ["node", "--help"])
    assert 0 == result.exit_code
    for name in ("chain", "miner", "scheduler", "gateway"):
        assert name in result.output


def test_chain_init_default_chain_id_is_the_node_homes() -> None:
    """deoss chain init names its default without importing deoss.node.home."""
    from deoss.cli.commands.chain import DEFAULT_CHAIN_ID
    from deoss.node import home

    assert home.DEFAULT_CHAIN_ID == DEFAULT_CHAIN_ID
