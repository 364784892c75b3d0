"""The scheduler's config file: defaults, relative paths, environment overrides, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from deoss.services.common.config import ConfigError
from deoss.services.scheduler.settings import load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf" / "scheduler.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_and_paths_relative_to_the_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[service]\nkey = "keys/s.toml"\ndata_dir = "s0"\n')
    settings = load_settings(path)
    assert path.parent / "keys" / "s.toml" == settings.key_file
    assert path.parent / "s0" / "tag.key" == settings.tag_key_file
    assert path.parent / "s0" / "cursor" == settings.cursor_file
    assert (0, 2, 30.0, "") == (
        settings.stake,
        settings.tag_workers,
        settings.miner_timeout_s,
        settings.public_url,
    )


def test_scheduler_section_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path,
        '[service]\npublic_url = "http://sched.example/"\n'
        '[scheduler]\nstake = 50000000\ntag_key_file = "/secure/tag.key"\ntag_workers = 4\n',
    )
    monkeypatch.setenv("DEOSS_SCHEDULER_MINER_TIMEOUT_MS", "2500")
    settings = load_settings(path)
    assert (50_000_000, Path("/secure/tag.key"), 4, 2.5, "http://sched.example") == (
        settings.stake,
        settings.tag_key_file,
        settings.tag_workers,
        settings.miner_timeout_s,
        settings.public_url,
    )


def test_tag_key_is_another_name_of_tag_key_file(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, '[scheduler]\ntag_key = "t.key"\n'))
    assert tmp_path / "conf" / "t.key" == settings.tag_key_file
    with pytest.raises(ConfigError, match="name different files"):
        load_settings(write(tmp_path, '[scheduler]\ntag_key = "a"\ntag_key_file = "b"\n'))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[scheduler]\ntag_workers = 0\n", "tag_workers must be in 1..256"),
        ("[scheduler]\nstake = -1\n", "stake must be >= 0"),
        ('[scheduler]\nstake = "lots"\n', "scheduler.stake must be int"),
        ("[scheduler]\nmax_bytes = 1\n", "unknown setting scheduler.max_bytes"),
        ('[service]\nlisten = "nowhere"\n', "service.listen"),
        ('[service]\npublic_url = "ftp://x"\n', "not an http"),
        ("[scheduler]\nminer_timeout_ms = 0\n", "miner_timeout_ms must be positive"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text))
