"""deoss node scheduler: refusals to start are one clear line and exit code 1."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from deoss.cli.main import app
from deoss.core.keys import KeyPair
from deoss.keyfile import write_key_file


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["node", "scheduler", *args])
    return result.exit_code, result.output


def test_missing_config_file(tmp_path: Path) -> None:
    code, output = run("--config", str(tmp_path / "nope.toml"))
    assert 1 == code
    assert "no config file" in output


def test_unknown_setting(tmp_path: Path) -> None:
    config = tmp_path / "s.toml"
    config.write_text("[scheduler]\ncolour = 1\n")
    code, output = run("--config", str(config))
    assert (1, True) == (code, "scheduler.colour" in output)


def test_unreachable_chain(tmp_path: Path) -> None:
    write_key_file(tmp_path / "key.toml", KeyPair.generate())
    config = tmp_path / "s.toml"
    config.write_text('[service]\nchain = "http://127.0.0.1:1"\n')
    code, output = run("--config", str(config))
    assert 1 == code
    assert "cannot read the chain parameters from http://127.0.0.1:1" in output
    assert not (tmp_path / "scheduler" / "addr").exists()


def test_key_file_readable_by_others(tmp_path: Path) -> None:
    write_key_file(tmp_path / "key.toml", KeyPair.generate())
    (tmp_path / "key.toml").chmod(0o644)
    config = tmp_path / "s.toml"
    config.write_text('[service]\nchain = "http://127.0.0.1:1"\n')
    code, output = run("--config", str(config))
    assert (1, True) == (code, "accessible by others" in output)
