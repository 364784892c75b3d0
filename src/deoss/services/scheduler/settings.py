"""The scheduler's settings: ``[service]`` and ``[scheduler]`` of its TOML file (docs/services.md).

    [scheduler]
    stake = 0               # base units staked at registration; 0 = the chain's minimum
    tag_key_file = ""       # the sealed PoDR² tag secret; default <data_dir>/tag.key
    tag_workers = 2         # threads computing tags
    miner_timeout_ms = 30000  # one fragment PUT (or GET) to a miner, start to end
    tag_mirrors = 2         # other holders of a segment that keep a copy of each tag set

``tag_key`` is accepted as another name of ``tag_key_file`` (docs/services.md calls it that).
Paths are relative to the config file. Every value is checked here, and a bad one stops the
process with a ``ConfigError`` naming the key.
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
from deoss.services.common.runner import listen_address

__all__ = ["DEFAULTS", "SchedulerSettings", "load_settings"]

MAX_TAG_WORKERS = 256
MAX_TAG_MIRRORS = 16

DEFAULTS: dict[str, dict[str, Any]] = {
    "service": service_defaults(listen="127.0.0.1:0", data_dir="scheduler"),
    "scheduler": {
        "stake": 0,
        "tag_key_file": "",
        "tag_key": "",
        "tag_workers": 2,
        "miner_timeout_ms": 30_000,
        "tag_mirrors": 2,
    },
}


@dataclass(frozen=True)
class SchedulerSettings:
    """Everything a scheduler process needs to start; paths are absolute or cwd-relative."""

    chain_url: str
    key_file: Path
    data_dir: Path
    listen: str = "127.0.0.1:0"
    public_url: str = ""
    http_limits: HttpLimits = DEFAULT_HTTP_LIMITS
    stake: int = 0
    tag_key_path: Path | None = None
    tag_workers: int = 2
    miner_timeout_s: float = 30.0
    report_attempts: int = 10
    retry_delay_s: float = 0.5
    tag_mirrors: int = 2

    def __post_init__(self) -> None:
        listen_address(self.listen)  # raises ValueError naming the address
        if self.stake < 0:
            raise ConfigError(f"scheduler.stake must be >= 0, got {self.stake}")
        if not 1 <= self.tag_workers <= MAX_TAG_WORKERS:
            raise ConfigError(
                f"scheduler.tag_workers must be in 1..{MAX_TAG_WORKERS}, got {self.tag_workers}"
            )
        if not 0 <= self.tag_mirrors <= MAX_TAG_MIRRORS:
            raise ConfigError(
                f"scheduler.tag_mirrors must be in 0..{MAX_TAG_MIRRORS}, got {self.tag_mirrors}"
            )
        if self.miner_timeout_s <= 0:
            raise ConfigError("scheduler.miner_timeout_ms must be positive")
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise ConfigError(f"service.public_url {self.public_url!r} is not an http(s) URL")

    @property
    def tag_key_file(self) -> Path:
        return self.tag_key_path or self.data_dir / "tag.key"

    @property
    def addr_file(self) -> Path:
        return self.data_dir / "addr"

    @property
    def cursor_file(self) -> Path:
        return self.data_dir / "cursor"


def load_settings(path: Path) -> SchedulerSettings:
    """Read a scheduler's config file (and DEOSS_* overrides).

    Raises:
        ConfigError: a missing file, unknown key, wrong type or value out of range.
    """
    config = load_config(path, DEFAULTS)
    service = read_service_section(path, config["service"])
    scheduler = config["scheduler"]
    tag_key = _tag_key_setting(scheduler["tag_key_file"], scheduler["tag_key"])
    return SchedulerSettings(
        chain_url=service.chain_url,
        key_file=service.key_path,
        data_dir=service.data_dir,
        listen=service.listen,
        public_url=service.public_url,
        http_limits=service.http_limits,
        stake=scheduler["stake"],
        tag_key_path=resolve(path, tag_key) if tag_key else None,
        tag_workers=scheduler["tag_workers"],
        miner_timeout_s=scheduler["miner_timeout_ms"] / 1000,
        tag_mirrors=scheduler["tag_mirrors"],
    )


def _tag_key_setting(tag_key_file: str, tag_key: str) -> str:
    if tag_key_file and tag_key and tag_key_file != tag_key:
        raise ConfigError(
            "scheduler.tag_key and scheduler.tag_key_file name different files; set only one"
        )
    return tag_key_file or tag_key
