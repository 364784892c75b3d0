"""deoss.core stays pure: no network, clock, process randomness or file system of its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).parents[3] / "src" / "deoss" / "core"
FORBIDDEN = {
    "os",
    "time",
    "random",
    "asyncio",
    "socket",
    "subprocess",
    "pathlib",
    "shutil",
    "tempfile",
    "httpx",
    "fastapi",
    "uvicorn",
    "sqlite3",
    "datetime",
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("module", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_nothing_impure(module: Path) -> None:
    assert set() == imported_roots(module) & FORBIDDEN


def test_core_has_the_modules_of_the_design() -> None:
    names = {p.stem for p in CORE.glob("*.py")}
    assert {"codec", "keys", "merkle", "erasure", "layout", "podr2", "errors"} <= names
