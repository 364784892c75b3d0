"""Service configuration: one TOML file per node, environment overrides, defaults for one machine.

    [service]
    chain = "http://127.0.0.1:26657"   # the chain node's RPC; several nodes of one chain:
                                       # a list, or URLs separated by commas (fail-over)
    key = "keys/miner-0.toml"          # the account key (relative to the config file)
    listen = "127.0.0.1:0"             # port 0 picks a free port
    data_dir = "miner-0"               # relative to the config file
    public_url = ""                    # the endpoint registered on chain (default: http://listen)

    [miner] / [scheduler] / [gateway]  # role-specific settings

Environment: DEOSS_<SECTION>_<KEY> (e.g. DEOSS_SERVICE_CHAIN, DEOSS_MINER_CAPACITY_BYTES)
overrides the file. Unknown keys and wrong types are refused with the key's name.

The ``[service]`` section is the same for every role: ``service_defaults`` gives its defaults
and ``read_service_section`` checks it once (``ServiceSection``); each role's settings module
checks only its own section.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deoss.http_server import HTTP_LIMIT_DEFAULTS, HttpLimits, read_http_limits
from deoss.serving import parse_host_port

__all__ = [
    "DEFAULT_CHAIN_URL",
    "ConfigError",
    "ServiceSection",
    "load_config",
    "read_service_section",
    "service_defaults",
]

DEFAULT_CHAIN_URL = "http://127.0.0.1:26657"
# String settings that may also be given as a list of strings (kept joined by commas).
_LIST_SETTINGS = {("service", "chain")}


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key."""


def load_config(path: Path, defaults: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Read ``path`` over ``defaults`` (section -> key -> value), then the environment.

    Values keep the type of their default; paths stay strings (resolve with ``resolve``).
    """
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"no config file at {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    merged = {section: dict(values) for section, values in defaults.items()}
    for section, values in raw.items():
        if section not in merged or not isinstance(values, dict):
            raise ConfigError(f"{path}: unknown section [{section}]")
        for key, value in values.items():
            merged[section][key] = _typed(section, key, value, merged[section])
    for section, values in merged.items():
        for key in list(values):
            env = os.environ.get(f"DEOSS_{section}_{key}".upper())
            if env is not None:
                values[key] = _typed(section, key, _parse_env(env, values[key]), values)
    return merged


def _typed(section: str, key: str, value: Any, current: dict[str, Any]) -> Any:
    if key not in current:
        raise ConfigError(f"unknown setting {section}.{key}")
    if (section, key) in _LIST_SETTINGS and isinstance(value, list):
        if not value or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{section}.{key} must be a string or a list of strings")
        value = ",".join(value)
    expected = type(current[key])
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # "5" where "5.0" is meant
    if expected is int and isinstance(value, bool) or not isinstance(value, expected):
        raise ConfigError(f"{section}.{key} must be {expected.__name__}, got {value!r}")
    return value


def _parse_env(text: str, default: Any) -> Any:
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes")
    for number in (int, float):
        if isinstance(default, number):
            try:
                return number(text)
            except ValueError:
                return text
    return text


def resolve(config_path: Path, value: str) -> Path:
    """A path setting relative to the config file's directory."""
    candidate = Path(value)
    return candidate if candidate.is_absolute() else Path(config_path).parent / candidate


def service_defaults(*, listen: str, data_dir: str) -> dict[str, Any]:
    """The ``[service]`` section's defaults; roles differ only in where they listen and keep
    their data."""
    return {
        "chain": DEFAULT_CHAIN_URL,
        "key": "key.toml",
        "listen": listen,
        "data_dir": data_dir,
        "public_url": "",
        **HTTP_LIMIT_DEFAULTS,  # header_timeout_s, body_idle_timeout_s, max_header_bytes
    }


@dataclass(frozen=True)
class ServiceSection:
    """The checked ``[service]`` section; paths absolute (relative ones are relative to the
    config file), ``public_url`` without a trailing slash."""

    chain_url: str  # one URL, or several separated by commas (ChainClient takes either)
    key_path: Path
    data_dir: Path
    listen: str
    public_url: str
    http_limits: HttpLimits


def read_service_section(config_path: Path, service: dict[str, Any]) -> ServiceSection:
    """Check the ``[service]`` section of a loaded config (``load_config``).

    Raises:
        ConfigError: a bad listen address, chain URL, public URL or HTTP limit, named
            ``service.<key>``.
    """
    try:
        parse_host_port(service["listen"])
    except ValueError as exc:
        raise ConfigError(f"service.listen: {exc}") from exc
    chain_urls = [url.strip() for url in service["chain"].split(",") if url.strip()]
    if not chain_urls:
        raise ConfigError(f"service.chain names no URL: {service['chain']!r}")
    for url in chain_urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"service.chain must be an http(s) URL, got {url!r}")
    public = service["public_url"]
    if public and not public.startswith(("http://", "https://")):
        raise ConfigError(f"service.public_url {public!r} is not an http(s) URL")
    try:
        http_limits = read_http_limits(service, "service")
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return ServiceSection(
        chain_url=",".join(chain_urls),
        key_path=resolve(config_path, service["key"]).absolute(),
        data_dir=resolve(config_path, service["data_dir"]).absolute(),
        listen=service["listen"],
        public_url=public.rstrip("/"),
        http_limits=http_limits,
    )
