"""The miner's settings: the ``[service]`` and ``[miner]`` sections of its TOML file.

    [service]
    chain = "http://127.0.0.1:26657"
    key = "key.toml"            # the miner's account key (mode 0600)
    listen = "127.0.0.1:0"
    data_dir = "miner"          # fragments/, cursor, addr
    public_url = ""             # registered on chain; default http://<bound host:port>

    [miner]
    capacity_bytes = 68719476736   # 64 GiB declared on chain
    stake = 0                      # 0: twice the stake the chain requires for that capacity
    repair_slots = 2               # restoral orders repaired at once; 0: claim none
    scrub_bytes_per_s = 8388608    # background re-reading of stored fragments; 0: off
    scrub_pause_s = 3600.0         # pause between two scrub passes
    poll_s = 5.0                   # how often the prover and repairer look without an event
    read_requests_per_s = 100.0    # per reader (a gateway, an owner): fragment/tag reads
    read_bytes_per_s = 268435456   # per reader: 256 MiB/s (a 2 s burst is allowed)
    bulk_read_requests_per_s = 500.0   # per restorer / tagger (reason restoral, tagging)
    bulk_read_bytes_per_s = 1073741824 # per restorer / tagger: 1 GiB/s; 0 in any: unlimited

Invariants: paths are absolute once loaded (relative ones are relative to the config file);
every value has been checked, so a bad file stops the process naming the key.
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
    service_defaults,
)

__all__ = ["DEFAULT_CAPACITY_BYTES", "MinerSettings", "load_settings"]

DEFAULT_CAPACITY_BYTES = 64 * 1024**3

DEFAULTS: dict[str, dict[str, Any]] = {
    "service": service_defaults(listen="127.0.0.1:0", data_dir="miner"),
    "miner": {
        "capacity_bytes": DEFAULT_CAPACITY_BYTES,
        "stake": 0,
        "repair_slots": 2,
        "scrub_bytes_per_s": 8 * 1024 * 1024,
        "scrub_pause_s": 3600.0,
        "poll_s": 5.0,
        "read_requests_per_s": 100.0,
        "read_bytes_per_s": 256 * 1024 * 1024,
        "bulk_read_requests_per_s": 500.0,
        "bulk_read_bytes_per_s": 1024 * 1024 * 1024,
    },
}


@dataclass(frozen=True)
class MinerSettings:
    chain_url: str
    key_path: Path
    listen: str
    data_dir: Path
    public_url: str = ""
    http_limits: HttpLimits = DEFAULT_HTTP_LIMITS
    capacity_bytes: int = DEFAULT_CAPACITY_BYTES
    stake: int = 0  # 0: STAKE_HEADROOM x the chain's required stake for capacity_bytes
    repair_slots: int = 2
    scrub_bytes_per_s: int = 8 * 1024 * 1024
    scrub_pause_s: float = 3600.0
    poll_s: float = 5.0
    read_requests_per_s: float = 100.0
    read_bytes_per_s: int = 256 * 1024 * 1024
    bulk_read_requests_per_s: float = 500.0
    bulk_read_bytes_per_s: int = 1024 * 1024 * 1024

    @property
    def fragments_dir(self) -> Path:
        return self.data_dir / "fragments"

    @property
    def cursor_path(self) -> Path:
        return self.data_dir / "cursor"

    @property
    def addr_path(self) -> Path:
        return self.data_dir / "addr"


def load_settings(config_path: Path) -> MinerSettings:
    """Read and check the miner's config file (and DEOSS_* environment overrides).

    Raises:
        ConfigError: a missing file, bad TOML, an unknown key or a bad value (named).
    """
    config = load_config(config_path, DEFAULTS)
    service = read_service_section(config_path, config["service"])
    miner = config["miner"]
    if miner["capacity_bytes"] <= 0:
        raise ConfigError(f"miner.capacity_bytes must be positive, got {miner['capacity_bytes']}")
    if miner["stake"] < 0:
        raise ConfigError(
            f"miner.stake must be 0 (the chain's minimum) or more, got {miner['stake']}"
        )
    for name in (
        "repair_slots",
        "scrub_bytes_per_s",
        "read_requests_per_s",
        "read_bytes_per_s",
        "bulk_read_requests_per_s",
        "bulk_read_bytes_per_s",
    ):
        if miner[name] < 0:
            raise ConfigError(f"miner.{name} must be 0 (off) or more, got {miner[name]}")
    for name in ("scrub_pause_s", "poll_s"):
        if not 0 < miner[name] <= 86_400:
            raise ConfigError(f"miner.{name} must be in (0, 86400] seconds, got {miner[name]}")
    return MinerSettings(
        chain_url=service.chain_url,
        key_path=service.key_path,
        listen=service.listen,
        data_dir=service.data_dir,
        public_url=service.public_url,
        http_limits=service.http_limits,
        capacity_bytes=miner["capacity_bytes"],
        stake=miner["stake"],
        repair_slots=miner["repair_slots"],
        scrub_bytes_per_s=miner["scrub_bytes_per_s"],
        scrub_pause_s=float(miner["scrub_pause_s"]),
        poll_s=float(miner["poll_s"]),
        read_requests_per_s=float(miner["read_requests_per_s"]),
        read_bytes_per_s=miner["read_bytes_per_s"],
        bulk_read_requests_per_s=float(miner["bulk_read_requests_per_s"]),
        bulk_read_bytes_per_s=miner["bulk_read_bytes_per_s"],
    )
