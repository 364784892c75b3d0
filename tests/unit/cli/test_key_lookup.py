"""Which key file a command signs with: --key, else $DEOSS_KEY, else the local network's dev user
key (.deoss/chain/keys/dev-0.toml under the current directory), else ~/.deoss/key.toml."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deoss.cli.main import app
from deoss.core.keys import KeyPair
from deoss.devnet import DevnetSpec
from deoss.keyfile import DEVNET_USER_KEY, write_key_file

runner = CliRunner()


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A home and a working directory with no key anywhere yet; $DEOSS_KEY unset."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("DEOSS_KEY", raising=False)
    monkeypatch.chdir(work)
    return {
        "option": tmp_path / "option.toml",
        "env": tmp_path / "env.toml",
        "devnet": work / DEVNET_USER_KEY,
        "home": home / ".deoss" / "key.toml",
    }


def make_key(path: Path) -> str:
    pair = KeyPair.generate()
    write_key_file(path, pair)
    return pair.address


def shown(args: list[str]) -> dict[str, str]:
    result = runner.invoke(app, ["keys", "show", "--json", *args])
    assert 0 == result.exit_code, result.output
    answer: dict[str, str] = json.loads(result.output)
    return answer


def test_devnet_user_key_is_where_deoss_up_writes_it() -> None:
    """The lookup's path is the dev user's key of a network in the default home."""
    assert DevnetSpec(home=Path(".deoss")).key_path(0) == DEVNET_USER_KEY


def test_key_option_comes_first(places: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    addresses = {name: make_key(path) for name, path in places.items()}
    monkeypatch.setenv("DEOSS_KEY", str(places["env"]))
    assert addresses["option"] == shown(["--key", str(places["option"])])["address"]


def test_environment_comes_before_the_local_network(
    places: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    addresses = {name: make_key(path) for name, path in places.items() if name != "option"}
    monkeypatch.setenv("DEOSS_KEY", str(places["env"]))
    assert addresses["env"] == shown([])["address"]


def test_local_network_user_key_comes_before_the_home_key(places: dict[str, Path]) -> None:
    """After deoss up, commands run where it ran sign as the dev user without any export."""
    devnet = make_key(places["devnet"])
    make_key(places["home"])
    answer = shown([])
    assert devnet == answer["address"]
    assert str(DEVNET_USER_KEY) == answer["file"]


def test_home_key_comes_last(places: dict[str, Path]) -> None:
    assert make_key(places["home"]) == shown([])["address"]


def test_no_key_anywhere_names_every_place_looked(places: dict[str, Path]) -> None:
    result = runner.invoke(app, ["keys", "show", "--json"])
    assert 1 == result.exit_code
    message = json.loads(result.output)["error"]["message"]
    for place in ("--key", "$DEOSS_KEY", str(DEVNET_USER_KEY), str(places["home"])):
        assert place in message
    assert "deoss keys new" in message


@pytest.mark.parametrize("how", ["option", "env"])
def test_a_key_named_but_missing_is_an_error_not_a_fallback(
    how: str, places: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Signing as another account than the one named would be worse than stopping."""
    make_key(places["devnet"])
    make_key(places["home"])
    missing = places[how]
    args = ["--key", str(missing)] if how == "option" else []
    if how == "env":
        monkeypatch.setenv("DEOSS_KEY", str(missing))
    result = runner.invoke(app, ["keys", "show", "--json", *args])
    assert 1 == result.exit_code
    message = json.loads(result.output)["error"]["message"]
    assert str(missing) in message
    assert ("--key" if how == "option" else "$DEOSS_KEY") in message


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_object_commands_sign_with_the_local_network_key(
    places: dict[str, Path], tmp_path: Path
) -> None:
    """deoss get (like put) finds the dev user key: it gets as far as the gateway."""
    make_key(places["devnet"])
    gateway = f"http://127.0.0.1:{closed_port()}"
    out = str(tmp_path / "out")
    args = ["get", "default/readme.md", "-o", out, "--gateway", gateway, "--deadline", "0"]
    result = runner.invoke(app, [*args, "--json"])
    assert 1 == result.exit_code
    message = json.loads(result.stdout)["error"]["message"]
    assert "cannot reach the gateway" in message and gateway in message


def test_chain_commands_report_every_place_looked(places: dict[str, Path]) -> None:
    result = runner.invoke(app, ["account", "show", "--json"])
    assert 1 == result.exit_code
    message = json.loads(result.output)["error"]["message"]
    assert str(DEVNET_USER_KEY) in message and str(places["home"]) in message
