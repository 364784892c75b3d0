"""deoss chain init/status, account show/transfer and node chain's refusals, via CliRunner."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deoss.chain.genesis import Genesis
from deoss.chain.modules import accounts
from deoss.cli.main import app
from deoss.keyfile import read_key_file, write_key_file
from deoss.node.home import parse_genesis
from tests.chain_fixtures import BALANCE, KEYS, RECIPIENT, ServedNode

runner = CliRunner()
UNREACHABLE = "http://127.0.0.1:9"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key.toml"
    write_key_file(path, KEYS[0])
    return path


def test_chain_init_writes_a_home(tmp_path: Path) -> None:
    """init writes a readable genesis, node.toml and 0600 keys of the endowed accounts."""
    home = tmp_path / "home"
    args = ["chain", "init", "--home", str(home), "--chain-id", "c1", "--dev-accounts", "3"]
    result = runner.invoke(app, [*args, "--block-ms", "250", "--json"])
    assert 0 == result.exit_code, result.output
    summary = json.loads(result.output)
    genesis: Genesis = parse_genesis((home / "genesis.json").read_text())
    assert ("c1", 250) == (genesis.chain_id, genesis.params.block_interval_ms)
    assert '"chain_id": "c1"' in (home / "genesis.json").read_text()  # fields by name
    assert [a.address for a in genesis.accounts] == [a["address"] for a in summary["accounts"]]
    for account in summary["accounts"]:
        path = Path(account["key_file"])
        assert 0o600 == stat.S_IMODE(path.stat().st_mode)
        assert account["address"] == read_key_file(path).address
    assert 'listen = "127.0.0.1:26657"' in (home / "node.toml").read_text()


def test_chain_init_refuses_an_existing_home_and_bad_values(tmp_path: Path) -> None:
    """An existing non-empty home is never overwritten; bad counts are refused."""
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "genesis.json").write_text("{}")
    again = runner.invoke(app, ["chain", "init", "--home", str(tmp_path / "home")])
    assert (1, "{}") == (again.exit_code, (tmp_path / "home" / "genesis.json").read_text())
    assert "refusing to overwrite" in again.output
    negative = runner.invoke(
        app, ["chain", "init", "--home", str(tmp_path / "h2"), "--dev-accounts", "-1"]
    )
    assert 1 == negative.exit_code and "--dev-accounts" in negative.output


def test_chain_status(served_node: ServedNode) -> None:
    """status prints height, app hash, chain id and block time."""
    result = runner.invoke(app, ["chain", "status", "--node", served_node.url, "--json"])
    assert 0 == result.exit_code, result.output
    status = json.loads(result.output)
    assert "test-chain" == status["chain_id"]
    assert 64 == len(status["app_hash"])
    human = runner.invoke(app, ["chain", "status", "--node", served_node.url])
    assert "chain id          test-chain" in human.output


def test_unreachable_node_is_a_clear_error() -> None:
    """No node at the URL: exit 1 and a message saying so."""
    result = runner.invoke(app, ["chain", "status", "--node", UNREACHABLE])
    assert 1 == result.exit_code
    assert f"cannot reach the chain node at {UNREACHABLE}" in result.output


def test_node_takes_several_urls_and_skips_a_dead_one(served_node: ServedNode) -> None:
    """--node with URLs separated by commas: the first dead, the command runs on the next."""
    nodes = f"{UNREACHABLE},{served_node.url}"
    result = runner.invoke(app, ["chain", "status", "--node", nodes, "--json"])
    assert 0 == result.exit_code, result.output
    assert served_node.url == json.loads(result.output)["node"]


def test_a_node_option_without_http_urls_is_a_clear_error() -> None:
    result = runner.invoke(app, ["chain", "status", "--node", "http://ok:1,node:26657"])
    assert 1 == result.exit_code
    assert "--node: chain node URL 'node:26657' is not an http(s) URL" in result.output


def test_account_transfer_and_show(served_node: ServedNode, key_file: Path) -> None:
    """transfer waits for the block; show reads balance and nonce by address or key."""
    node = ["--node", served_node.url]
    treasury_before = accounts.treasury_balance(served_node.node.machine.state)
    sent = runner.invoke(
        app, ["account", "transfer", RECIPIENT, "321", "--key", str(key_file), *node, "--json"]
    )
    assert 0 == sent.exit_code, sent.output
    assert (RECIPIENT, 321) == (json.loads(sent.output)["to"], json.loads(sent.output)["amount"])
    recipient = runner.invoke(app, ["account", "show", RECIPIENT, *node, "--json"])
    assert {
        "address": RECIPIENT,
        "balance": 321,
        "nonce": 0,
        "tx_fee": 1000,
        "state_byte_price": 10,
    } == json.loads(recipient.output)
    mine = runner.invoke(app, ["account", "show", "--key", str(key_file), *node])
    fees = accounts.treasury_balance(served_node.node.machine.state) - treasury_before
    assert served_node.node.machine.params.tx_fee <= fees  # the fee and the state price
    assert f"balance  {BALANCE - 321 - fees}" in mine.output and "nonce    1" in mine.output
    assert "fees     1000 per transaction + 10 per byte of new state" in mine.output


def test_account_transfer_refusals(served_node: ServedNode, key_file: Path) -> None:
    """A refused transfer, a bad address or a zero amount exit non-zero with the reason."""
    node = ["--node", served_node.url, "--key", str(key_file)]
    too_much = runner.invoke(app, ["account", "transfer", RECIPIENT, str(BALANCE * 2), *node])
    assert 1 == too_much.exit_code and "InsufficientFunds (code 7)" in too_much.output
    bad_address = runner.invoke(app, ["account", "transfer", "deoss1nope", "5", *node])
    assert 1 == bad_address.exit_code and "deoss1nope" in bad_address.output
    zero = runner.invoke(app, ["account", "transfer", RECIPIENT, "0", *node])
    assert 2 == zero.exit_code
    huge = runner.invoke(app, ["account", "transfer", RECIPIENT, str(2**63), *node])
    assert 2 == huge.exit_code
    no_key = runner.invoke(app, ["account", "show", "--key", "/nonexistent/key.toml"])
    assert 1 == no_key.exit_code and "no key file" in no_key.output


def test_node_chain_refuses_bad_homes(tmp_path: Path) -> None:
    """A missing home, bad genesis or bad flags stop the node before it starts."""
    missing = runner.invoke(app, ["node", "chain", "--home", str(tmp_path / "none")])
    assert 1 == missing.exit_code and "deoss chain init" in missing.output
    home = tmp_path / "home"
    assert 0 == runner.invoke(app, ["chain", "init", "--home", str(home)]).exit_code
    bad_rpc = runner.invoke(app, ["node", "chain", "--home", str(home), "--rpc", "localhost"])
    assert 1 == bad_rpc.exit_code and "HOST:PORT" in bad_rpc.output
    bad_ms = runner.invoke(app, ["node", "chain", "--home", str(home), "--block-ms", "0"])
    assert 1 == bad_ms.exit_code and "block_ms" in bad_ms.output
    genesis = home / "genesis.json"
    genesis.write_text(genesis.read_text().replace('"tx_fee": 1000', '"tx_fee": -5'))
    bad_genesis = runner.invoke(app, ["node", "chain", "--home", str(home)])
    assert 1 == bad_genesis.exit_code and "tx_fee must not be negative" in bad_genesis.output
    genesis.write_text("{")
    assert "not valid JSON" in runner.invoke(app, ["node", "chain", "--home", str(home)]).output
    (home / "node.toml").write_text("[rpc]\nport = 5\n")
    assert "unknown key 'port'" in runner.invoke(app, ["node", "chain", "--home", str(home)]).output
