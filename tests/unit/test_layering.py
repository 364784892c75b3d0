"""Imports between deoss's packages point one way: down the layers, never up or sideways.

Layers, bottom up (a module may import its own layer and the layers listed for it):

- ``deoss.core``: records, keys, Merkle, erasure, layout, PoDR²; imports nothing else of deoss.
- ``deoss.chain``: the state machine; imports core.
- Process support for the servers, importing nothing of deoss above core: ``deoss.atomic``
  (atomic small-file writes), ``deoss.keyfile`` (key files on disk; imports core and atomic),
  ``deoss.http_server`` (uvicorn's HTTP protocol with slow-client bounds), ``deoss.serving``
  (host:port, bind, the uvicorn server; imports http_server) and ``deoss.runtime`` (allocator
  tuning). Core, chain and client never use them.
- ``deoss.client``: what talks to a node or a service over the network; imports core, chain.
- ``deoss.node``: the chain node; imports core, chain and the process support.
- ``deoss.services.common``: what every service shares; imports core, chain, client and the
  process support (not node).
- ``deoss.services.<name>`` (gateway, miner, scheduler): common and its own package; no service
  imports another.
- ``deoss.cli``, ``deoss.devnet``, ``deoss.__main__``: the top; they may import anything.
- ``deoss`` itself (its ``__init__``) holds only ``__version__`` and imports nothing of deoss, so
  every layer may import it.

Every import counts: at module level, inside functions and under ``TYPE_CHECKING`` (a type-only
import upward still ties the lower layer to the upper one's names).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src"
PACKAGE = SRC / "deoss"

SUPPORT = (
    "deoss.atomic",
    "deoss.keyfile",
    "deoss.http_server",
    "deoss.serving",
    "deoss.runtime",
)
COMMON = ("deoss.core", "deoss.chain", "deoss.client", "deoss.services.common", *SUPPORT)
SERVICES = ("gateway", "miner", "scheduler")

#: Layer (a module name prefix) -> the prefixes its modules may import. The longest prefix
#: that names a module decides its layer.
ALLOWED: dict[str, tuple[str, ...]] = {
    "deoss.core": ("deoss.core",),
    "deoss.chain": ("deoss.core", "deoss.chain"),
    "deoss.atomic": ("deoss.atomic",),
    "deoss.keyfile": ("deoss.core", "deoss.atomic", "deoss.keyfile"),
    "deoss.http_server": ("deoss.http_server",),
    "deoss.serving": ("deoss.http_server", "deoss.serving"),
    "deoss.runtime": ("deoss.runtime",),
    "deoss.client": ("deoss.core", "deoss.chain", "deoss.client"),
    "deoss.node": ("deoss.core", "deoss.chain", "deoss.node", *SUPPORT),
    "deoss.services.common": COMMON,
    **{f"deoss.services.{name}": (*COMMON, f"deoss.services.{name}") for name in SERVICES},
    "deoss.services": ("deoss.services",),  # the bare package (__init__)
    "deoss.cli": ("deoss",),
    "deoss.devnet": ("deoss",),
    "deoss.__main__": ("deoss",),
    "deoss": (),  # the bare package (__init__): only metadata, so any layer may import it
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, name: str, is_package: bool = False) -> set[str]:
    """Every deoss module that module ``name`` (its ``source``) imports, wherever the import
    statement is."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from deoss.services.common import auth` imports the module deoss.services.common.auth
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add(submodule if is_module(submodule) else target)
    return {module for module in found if module == "deoss" or module.startswith("deoss.")}


def is_module(name: str) -> bool:
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> str:
    layers = [prefix for prefix in ALLOWED if within(module, prefix)]
    if not layers:
        raise AssertionError(f"{module} is in no layer: add it to ALLOWED in {__file__}")
    return max(layers, key=len)


def violations(module: str, imports: set[str]) -> set[tuple[str, str]]:
    """The imports of ``module`` that its layer does not allow."""
    allowed = ALLOWED[layer_of(module)]
    return {
        (module, imported)
        for imported in imports
        if imported != "deoss" and not any(within(imported, prefix) for prefix in allowed)
    }


def all_violations() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        imports = imported_modules(path.read_text(), name, path.name == "__init__.py")
        found |= violations(name, imports)
    return found


def test_no_import_points_upward() -> None:
    new = all_violations()
    assert not new, "imports against the layers (see this test's docstring): " + ", ".join(
        f"{importer} imports {imported}" for importer, imported in sorted(new)
    )


def test_every_module_has_a_layer() -> None:
    for path in PACKAGE.rglob("*.py"):
        layer_of(module_name(path))


# --- the checker itself ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "imported"),
    [
        ("deoss.core.codec", "deoss.chain.types"),
        ("deoss.core.podr2", "deoss.keyfile"),
        ("deoss.chain.machine", "deoss.client.chain"),
        ("deoss.chain.state", "deoss.runtime"),
        ("deoss.client.chain", "deoss.node.rpc"),
        ("deoss.client.chain", "deoss.services.common.errors"),
        ("deoss.client.chain", "deoss.keyfile"),
        ("deoss.node.serve", "deoss.client.chain"),
        ("deoss.node.serve", "deoss.services.common.runner"),
        ("deoss.services.common.app", "deoss.services.gateway.app"),
        ("deoss.services.gateway.upload", "deoss.services.miner.store"),
        ("deoss.services.miner.app", "deoss.cli.main"),
        ("deoss.services.scheduler.app", "deoss.devnet"),
        ("deoss", "deoss.core.codec"),
    ],
)
def test_an_upward_or_sideways_import_is_a_violation(module: str, imported: str) -> None:
    assert {(module, imported)} == violations(module, {imported})


@pytest.mark.parametrize(
    ("module", "imported"),
    [
        ("deoss.core.podr2", "deoss.core.codec"),
        ("deoss.chain.machine", "deoss.core.codec"),
        ("deoss.client.chain", "deoss.chain.types"),
        ("deoss.node.serve", "deoss.http_server"),
        ("deoss.node.rpc", "deoss"),
        ("deoss.services.common.runner", "deoss.client.chain"),
        ("deoss.services.miner.app", "deoss.services.common.app"),
        ("deoss.services.miner.app", "deoss.services.miner.store"),
        ("deoss.cli.main", "deoss.services.gateway.main"),
        ("deoss.devnet", "deoss.node.serve"),
    ],
)
def test_a_downward_import_is_allowed(module: str, imported: str) -> None:
    assert set() == violations(module, {imported})


def test_imports_are_found_in_functions_under_type_checking_and_relative() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import deoss.core.codec\n"
        "from deoss.services.common import auth\n"
        "from . import store\n"
        "if TYPE_CHECKING:\n"
        "    from deoss.node.serve import serve\n"
        "def later() -> None:\n"
        "    from deoss.client.chain import ChainClient\n"
    )
    assert {
        "deoss.core.codec",
        "deoss.services.common.auth",
        "deoss.services.miner.store",
        "deoss.node.serve",
        "deoss.client.chain",
    } == imported_modules(source, "deoss.services.miner.probe")


def test_relative_imports_resolve_from_a_package_init() -> None:
    source = "from .store import Area\nfrom .. import common\n"
    assert {"deoss.services.miner.store", "deoss.services.common"} == imported_modules(
        source, "deoss.services.miner", is_package=True
    )
