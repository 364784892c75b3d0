"""A chain node's home directory: genesis, node configuration, dev keys, data.

    HOME/genesis.json      the Genesis record as readable JSON (objects with field names)
    HOME/node.toml         [rpc] listen = "127.0.0.1:26657", [chain] block_ms = 1000
                           ([rpc] also takes the slow-client bounds of deoss.http_server)
    HOME/keys/dev-<i>.toml the endowed dev accounts' keys (mode 0600)
    HOME/data/chain.sqlite the node's store
    HOME/rpc.addr          "HOST:PORT" the RPC listens on, written once it listens

Everything read from disk is validated here; every error is a ``HomeError`` whose message names
the file and what was wrong. Records are canonical msgpack arrays on the wire, so the JSON file
is converted field by field (names in, names out) and then checked by a canonical round trip.
"""

from __future__ import annotations

import time
import tomllib
import typing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgspec

from deoss.atomic import write_atomic
from deoss.chain.genesis import ChainParams, Genesis, GenesisAccount, GenesisError, validate_genesis
from deoss.core import codec
from deoss.core.errors import DataPathError
from deoss.core.keys import KeyPair
from deoss.http_server import DEFAULT_HTTP_LIMITS, HTTP_LIMIT_DEFAULTS, HttpLimits, read_http_limits
from deoss.keyfile import write_key_file
from deoss.serving import parse_host_port

__all__ = [
    "DEFAULT_CHAIN_ID",
    "DEFAULT_RPC_PORT",
    "HomeError",
    "NodeConfig",
    "init_home",
    "load_genesis",
    "load_node_config",
    "parse_listen",
]

DEFAULT_CHAIN_ID = "deoss-devnet"
DEFAULT_RPC_HOST = "127.0.0.1"
DEFAULT_RPC_PORT = 26657
DEFAULT_DEV_BALANCE = 10**15
MAX_CONFIG_BYTES = 16 * 1024 * 1024


class HomeError(Exception):
    """A home directory, genesis or configuration that cannot start a node."""


@dataclass(frozen=True)
class NodeConfig:
    rpc_host: str = DEFAULT_RPC_HOST
    rpc_port: int = DEFAULT_RPC_PORT
    block_ms: int = 1000
    http_limits: HttpLimits = DEFAULT_HTTP_LIMITS


def genesis_path(home: Path) -> Path:
    return home / "genesis.json"


def config_path(home: Path) -> Path:
    return home / "node.toml"


def store_path(home: Path) -> Path:
    return home / "data" / "chain.sqlite"


def rpc_addr_path(home: Path) -> Path:
    return home / "rpc.addr"


def dev_key_path(home: Path, index: int) -> Path:
    return home / "keys" / f"dev-{index}.toml"


# --- creating a home ---------------------------------------------------------------------


def init_home(
    home: Path,
    *,
    chain_id: str = DEFAULT_CHAIN_ID,
    dev_accounts: int = 4,
    block_ms: int = 1000,
    dev_balance: int = DEFAULT_DEV_BALANCE,
    params: ChainParams | None = None,
) -> tuple[Genesis, list[Path]]:
    """Create a home with a fresh genesis and ``dev_accounts`` endowed keys.

    ``params`` replaces the default chain parameters; its block interval is set to
    ``block_ms`` either way, so genesis and node.toml agree.

    Raises:
        HomeError: the directory exists and is not empty, or a value is out of range.
    """
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise HomeError(f"{home} already exists and is not empty; refusing to overwrite it")
    if not 0 <= dev_accounts <= 1000:
        raise HomeError(f"--dev-accounts must be in 0..1000, got {dev_accounts}")
    if not 1 <= block_ms <= 3_600_000:
        raise HomeError(f"--block-ms must be in 1..3600000, got {block_ms}")
    keys = [KeyPair.generate() for _ in range(dev_accounts)]
    genesis = Genesis(
        chain_id=chain_id,
        genesis_time_ns=time.time_ns(),
        params=msgspec.structs.replace(params or ChainParams(), block_interval_ms=block_ms),
        accounts=[GenesisAccount(address=key.address, balance=dev_balance) for key in keys],
    )
    try:
        validate_genesis(genesis)
    except GenesisError as exc:
        raise HomeError(f"invalid genesis: {exc}") from exc
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths = [dev_key_path(home, i) for i in range(len(keys))]
    for path, key in zip(paths, keys, strict=True):
        write_key_file(path, key)
    write_atomic(genesis_path(home), format_genesis(genesis).encode())
    write_atomic(config_path(home), render_node_config(NodeConfig(block_ms=block_ms)).encode())
    return genesis, paths


def render_node_config(config: NodeConfig) -> str:
    return (
        "# DeOSS chain node (deoss node chain). Command-line flags override these values.\n"
        "[rpc]\n"
        f'listen = "{config.rpc_host}:{config.rpc_port}"\n'
        "\n[chain]\n"
        f"block_ms = {config.block_ms}\n"
    )


# --- genesis as JSON ---------------------------------------------------------------------


def format_genesis(genesis: Genesis) -> str:
    """The genesis as indented JSON objects with field names."""
    return msgspec.json.format(msgspec.json.encode(to_named(genesis)), indent=2).decode() + "\n"


def parse_genesis(text: bytes | str, source: str = "genesis") -> Genesis:
    """Read a genesis from JSON and check it.

    Raises:
        HomeError: bad JSON, unknown or missing fields, wrong types, or a GenesisError.
    """
    try:
        document = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise HomeError(f"{source}: not valid JSON: {exc}") from exc
    genesis = from_named(document, Genesis, "genesis")
    try:
        genesis = codec.decode(codec.encode(genesis), Genesis)
        validate_genesis(genesis)
    except (DataPathError, GenesisError) as exc:
        raise HomeError(f"{source}: {exc}") from exc
    return genesis


def load_genesis(home: Path) -> Genesis:
    path = genesis_path(home)
    return parse_genesis(_read(path), str(path))


def to_named(value: Any) -> Any:
    """Records as dicts of field names (recursively), for readable JSON."""
    if isinstance(value, msgspec.Struct):
        return {f.name: to_named(getattr(value, f.name)) for f in msgspec.structs.fields(value)}
    if isinstance(value, list | tuple):
        return [to_named(item) for item in value]
    return value


def from_named(value: Any, type_: Any, where: str) -> Any:
    """The inverse of ``to_named`` for ``type_``; raises HomeError naming the bad field."""
    if isinstance(type_, type) and issubclass(type_, msgspec.Struct):
        return _struct_from_named(value, type_, where)
    if typing.get_origin(type_) is list:
        (item_type,) = typing.get_args(type_)
        if not isinstance(value, list):
            raise HomeError(f"{where}: expected a list, got {type(value).__name__}")
        return [from_named(item, item_type, f"{where}[{i}]") for i, item in enumerate(value)]
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as exc:
        raise HomeError(f"{where}: {exc}") from exc


def _struct_from_named(value: Any, type_: type[msgspec.Struct], where: str) -> Any:
    if not isinstance(value, dict):
        raise HomeError(f"{where}: expected an object, got {type(value).__name__}")
    fields = {f.name: f for f in msgspec.structs.fields(type_)}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise HomeError(f"{where}: unknown field {unknown[0]!r}")
    arguments: dict[str, Any] = {}
    for name, info in fields.items():
        if name in value:
            arguments[name] = from_named(value[name], info.type, f"{where}.{name}")
        elif info.required:
            raise HomeError(f"{where}: missing field {name!r}")
    try:
        return type_(**arguments)
    except (DataPathError, TypeError, ValueError) as exc:
        raise HomeError(f"{where}: {exc}") from exc


# --- node.toml ---------------------------------------------------------------------------


def load_node_config(home: Path) -> NodeConfig:
    """Read HOME/node.toml (every key optional).

    Raises:
        HomeError: unreadable file, bad TOML, unknown keys or values out of range.
    """
    path = config_path(home)
    if not path.exists():
        return NodeConfig()
    try:
        document = tomllib.loads(_read(path).decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise HomeError(f"{path}: not valid TOML: {exc}") from exc
    allowed = {"rpc": {"listen", *HTTP_LIMIT_DEFAULTS}, "chain": {"block_ms"}}
    for section, table in document.items():
        if section not in allowed or not isinstance(table, dict):
            raise HomeError(f"{path}: unknown section [{section}]")
        for key in table:
            if key not in allowed[section]:
                raise HomeError(f"{path}: unknown key {key!r} in [{section}]")
    config = NodeConfig()
    listen = document.get("rpc", {}).get("listen")
    if listen is not None:
        host, port = parse_listen(listen, f"{path}: rpc.listen")
        config = NodeConfig(rpc_host=host, rpc_port=port, block_ms=config.block_ms)
    block_ms = document.get("chain", {}).get("block_ms")
    if block_ms is not None:
        config = NodeConfig(config.rpc_host, config.rpc_port, check_block_ms(block_ms, path.name))
    try:
        limits = read_http_limits(document.get("rpc", {}), "rpc")
    except ValueError as exc:
        raise HomeError(f"{path}: {exc}") from exc
    return replace(config, http_limits=limits)


def check_block_ms(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 3_600_000:
        raise HomeError(f"{where}: block_ms must be an integer in 1..3600000, got {value!r}")
    return value


def parse_listen(text: object, where: str = "listen address") -> tuple[str, int]:
    """("host", port) from "HOST:PORT" (port 0: any free port)."""
    if not isinstance(text, str):
        raise HomeError(f'{where}: expected "HOST:PORT", got {text!r}')
    try:
        return parse_host_port(text)
    except ValueError as exc:
        raise HomeError(f"{where}: {exc}") from exc


def _read(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise HomeError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise HomeError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes")
    return data
