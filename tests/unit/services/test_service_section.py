"""The ``[service]`` section is read and checked once (services/common/config.py), the same way
for every role; each role checks only its own section."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deoss.services.common.config import ConfigError
from deoss.services.gateway.settings import load_settings as load_gateway
from deoss.services.miner.settings import load_settings as load_miner
from deoss.services.scheduler.settings import load_settings as load_scheduler

LOADERS: dict[str, Callable[[Path], Any]] = {
    "gateway": load_gateway,
    "miner": load_miner,
    "scheduler": load_scheduler,
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf" / "service.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("role", sorted(LOADERS))
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('listen = "nowhere"', r"service.listen: expected \"HOST:PORT\""),
        ('listen = "127.0.0.1:70000"', "service.listen: .*0..65535"),
        ('chain = "ws://node:26657"', r"service.chain must be an http\(s\) URL"),
        ('public_url = "ftp://x"', r"service.public_url 'ftp://x' is not an http\(s\) URL"),
        ("header_timeout_s = 0", "service.header_timeout_s"),
        ("listen = 8080", "service.listen must be str"),
    ],
)
def test_every_role_refuses_a_bad_service_section_alike(
    tmp_path: Path, role: str, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        LOADERS[role](write(tmp_path, f"[service]\n{text}\n"))


@pytest.mark.parametrize("role", sorted(LOADERS))
def test_every_role_reads_the_service_section_alike(tmp_path: Path, role: str) -> None:
    path = write(
        tmp_path,
        '[service]\nchain = "https://node.example"\nkey = "k.toml"\nlisten = "[::1]:9000"\n'
        'data_dir = "d"\npublic_url = "http://me.example/"\n',
    )
    settings = LOADERS[role](path)
    key_path = getattr(settings, "key_path", None) or settings.key_file
    assert (
        "https://node.example",
        tmp_path / "conf" / "k.toml",
        tmp_path / "conf" / "d",
        "[::1]:9000",
        "http://me.example",
    ) == (settings.chain_url, key_path, settings.data_dir, settings.listen, settings.public_url)


@pytest.mark.parametrize("role", sorted(LOADERS))
@pytest.mark.parametrize(
    "chain",
    [
        '["http://a:26657", "https://b:26657"]',
        '"http://a:26657, https://b:26657"',
    ],
)
def test_service_chain_takes_several_nodes(tmp_path: Path, role: str, chain: str) -> None:
    """A list of URLs, or URLs separated by commas: the ChainClient fails over between them."""
    settings = LOADERS[role](write(tmp_path, f"[service]\nchain = {chain}\n"))
    assert "http://a:26657,https://b:26657" == settings.chain_url


@pytest.mark.parametrize("role", sorted(LOADERS))
@pytest.mark.parametrize(
    ("chain", "message"),
    [
        ('["http://a", "ws://b"]', r"service.chain must be an http\(s\) URL, got 'ws://b'"),
        ("[]", "service.chain must be a string or a list of strings"),
        ('["http://a", 5]', "service.chain must be a string or a list of strings"),
        ('" , "', "service.chain names no URL"),
    ],
)
def test_service_chain_refuses_bad_lists(
    tmp_path: Path, role: str, chain: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        LOADERS[role](write(tmp_path, f"[service]\nchain = {chain}\n"))


def test_service_chain_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEOSS_SERVICE_CHAIN", "http://a:1,http://b:2")
    settings = load_miner(write(tmp_path, "[service]\n"))
    assert "http://a:1,http://b:2" == settings.chain_url
