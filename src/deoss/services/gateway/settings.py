"""The gateway's settings: the ``[service]`` and ``[gateway]`` sections of its TOML file.

    [service]
    chain = "http://127.0.0.1:26657"
    key = "key.toml"              # the gateway's account key (mode 0600)
    listen = "127.0.0.1:8080"
    data_dir = "gateway"          # addr, spool/
    public_url = ""               # registered on chain; default http://<bound host:port>

    [gateway]
    max_object_bytes = 1099511627776   # 1 TiB: larger bodies are refused with 413
    spool_dir = ""                     # default <data_dir>/spool
    hedge_after_ms = 500               # a fragment slower than this: fetch another one too
    fragment_parallelism = 12          # fragment requests in flight per segment, at most
    poll_interval_ms = 100             # how often a deal's state is read while waiting
    deal_wait_s = 900                  # give up waiting for a deal after this long (504)
    scheduler_timeout_s = 120          # one segment PUT to a scheduler
    miner_timeout_s = 30               # one fragment GET from a miner
    auth_cache_ms = 1000               # how long "user X authorized this gateway" is trusted
    max_uploads = 32                   # uploads in flight on this gateway; beyond: 429
    max_uploads_per_user = 8           # uploads in flight of one user; beyond: 429
    planning_slots = 2                 # segments coded and hashed at once, for all uploads

An upload is in flight from its request until its spool file is deleted (the deal's end, also
after ``?wait=false``). Memory per upload is a few MiB; planning adds a stripe of each
fragment per slot (about 16 MiB at 4+8), whatever the segment size.

Invariants: paths are absolute once loaded (relative ones are relative to the config file);
every value has been checked, so a bad file stops the process naming the key. The layout
(segment size, k, m) is not a setting: the gateway reads the chain's (``/chain/params``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deoss.http_server import DEFAULT_HTTP_LIMITS, HttpLimits
from deoss.services.common.config import (
    ConfigError,
    load_config,
    read_service_section,
    resolve,
    service_defaults,
)

__all__ = ["DEFAULT_MAX_OBJECT_BYTES", "GatewaySettings", "load_settings"]

DEFAULT_MAX_OBJECT_BYTES = 1024**4
DEFAULT_LISTEN = "127.0.0.1:8080"

DEFAULTS: dict[str, dict[str, Any]] = {
    "service": service_defaults(listen=DEFAULT_LISTEN, data_dir="gateway"),
    "gateway": {
        "max_object_bytes": DEFAULT_MAX_OBJECT_BYTES,
        "spool_dir": "",
        "hedge_after_ms": 500,
        "fragment_parallelism": 12,
        "poll_interval_ms": 100,
        "deal_wait_s": 900,
        "scheduler_timeout_s": 120,
        "miner_timeout_s": 30,
        "auth_cache_ms": 1000,
        "max_uploads": 32,
        "max_uploads_per_user": 8,
        "planning_slots": 2,
    },
}

_POSITIVE = (
    "max_object_bytes",
    "hedge_after_ms",
    "fragment_parallelism",
    "poll_interval_ms",
    "deal_wait_s",
    "scheduler_timeout_s",
    "miner_timeout_s",
    "max_uploads",
    "max_uploads_per_user",
    "planning_slots",
)


@dataclass(frozen=True)
class GatewaySettings:
    chain_url: str
    key_path: Path
    data_dir: Path
    listen: str = DEFAULT_LISTEN
    public_url: str = ""
    http_limits: HttpLimits = DEFAULT_HTTP_LIMITS
    max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES
    spool_dir: Path | None = None  # None: <data_dir>/spool
    hedge_after_ms: int = 500
    fragment_parallelism: int = 12
    poll_interval_ms: int = 100
    deal_wait_s: int = 900
    scheduler_timeout_s: int = 120
    miner_timeout_s: int = 30
    auth_cache_ms: int = 1000
    max_uploads: int = 32
    max_uploads_per_user: int = 8
    planning_slots: int = 2

    @property
    def spool_path(self) -> Path:
        return self.spool_dir or self.data_dir / "spool"

    @property
    def addr_path(self) -> Path:
        return self.data_dir / "addr"


def _check_gateway(gateway: dict[str, Any]) -> None:
    for name in _POSITIVE:
        if gateway[name] <= 0:
            raise ConfigError(f"gateway.{name} must be positive, got {gateway[name]}")
    if gateway["max_uploads_per_user"] > gateway["max_uploads"]:
        raise ConfigError(
            f"gateway.max_uploads_per_user ({gateway['max_uploads_per_user']}) must not exceed "
            f"gateway.max_uploads ({gateway['max_uploads']})"
        )
    if gateway["auth_cache_ms"] < 0:
        value = gateway["auth_cache_ms"]
        raise ConfigError(f"gateway.auth_cache_ms must be 0 or more, got {value}")


def load_settings(config_path: Path) -> GatewaySettings:
    """Read and check the gateway's config file (and DEOSS_* environment overrides).

    Raises:
        ConfigError: a missing file, bad TOML, an unknown key or a bad value (named).
    """
    config = load_config(config_path, DEFAULTS)
    service = read_service_section(config_path, config["service"])
    gateway = config["gateway"]
    _check_gateway(gateway)
    spool = gateway["spool_dir"]
    return GatewaySettings(
        chain_url=service.chain_url,
        key_path=service.key_path,
        data_dir=service.data_dir,
        listen=service.listen,
        public_url=service.public_url,
        http_limits=service.http_limits,
        max_object_bytes=gateway["max_object_bytes"],
        spool_dir=resolve(config_path, spool).absolute() if spool else None,
        hedge_after_ms=gateway["hedge_after_ms"],
        fragment_parallelism=gateway["fragment_parallelism"],
        poll_interval_ms=gateway["poll_interval_ms"],
        deal_wait_s=gateway["deal_wait_s"],
        scheduler_timeout_s=gateway["scheduler_timeout_s"],
        miner_timeout_s=gateway["miner_timeout_s"],
        auth_cache_ms=gateway["auth_cache_ms"],
        max_uploads=gateway["max_uploads"],
        max_uploads_per_user=gateway["max_uploads_per_user"],
        planning_slots=gateway["planning_slots"],
    )
