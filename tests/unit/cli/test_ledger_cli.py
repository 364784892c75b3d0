"""deoss space / bucket / gateway / status / file show against a served DevNode, via CliRunner:
JSON output and the exit codes scripts rely on (0 done, 1 refused, 2 usage, 3 not found)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deoss.chain.genesis import ChainParams
from deoss.chain.modules.gateways import RegisterGateway
from deoss.cli.main import app
from deoss.client.chain import ChainClient, run
from deoss.keyfile import write_key_file
from tests.chain_fixtures import KEYS, ServedNode

runner = CliRunner()
GiB = 1024**3


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key.toml"
    write_key_file(path, KEYS[0])
    return path


def deoss(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout


def test_space_buy_show_expand_renew(served_node: ServedNode, key_file: Path) -> None:
    """No lease yet: exit 3; buy, expand and renew show the lease; a second buy: exit 1."""
    common = ["--key", str(key_file), "--node", served_node.url, "--json"]
    code, out = deoss("space", "show", *common)
    assert 3 == code and "has no space" in json.loads(out)["error"]["message"]
    code, out = deoss("space", "buy", "--gib", "2", "--days", "3", *common)
    assert (0, 2 * GiB, "ACTIVE") == (
        code,
        json.loads(out)["total_bytes"],
        json.loads(out)["state"],
    )
    code, out = deoss("space", "buy", "--gib", "1", "--days", "1", *common)
    assert 1 == code and "already has space" in json.loads(out)["error"]["message"]
    assert 0 == deoss("space", "expand", "--gib", "1", *common)[0]
    assert 0 == deoss("space", "renew", "--days", "1", *common)[0]
    code, out = deoss("space", "show", KEYS[0].address, "--node", served_node.url, "--json")
    assert (0, 3 * GiB, 3 * GiB) == (
        code,
        json.loads(out)["total_bytes"],
        json.loads(out)["free_bytes"],
    )
    code, _ = deoss("space", "buy", "--gib", "0", "--days", "1", *common)
    assert 2 == code  # below the option's minimum: a usage error


def test_bucket_create_ls_rm(served_node: ServedNode, key_file: Path) -> None:
    common = ["--key", str(key_file), "--node", served_node.url, "--json"]
    code, out = deoss("bucket", "create", "holiday-2024", *common)
    assert (0, True) == (code, json.loads(out)["created"])
    code, out = deoss("bucket", "create", "holiday-2024", *common)
    assert 1 == code and "already exists" in json.loads(out)["error"]["message"]
    code, out = deoss("bucket", "create", "Bad_Name", *common)
    assert 1 == code and "bucket name" in json.loads(out)["error"]["message"]
    code, out = deoss("bucket", "ls", *common)
    assert (0, ["holiday-2024"]) == (code, [b["name"] for b in json.loads(out)["buckets"]])
    assert 0 == deoss("bucket", "rm", "holiday-2024", *common)[0]
    assert 3 == deoss("bucket", "rm", "holiday-2024", *common)[0]
    assert 2 == deoss("bucket", "create", "--node", served_node.url)[0]  # missing NAME


def test_gateway_authorize_ls_revoke(served_node: ServedNode, key_file: Path) -> None:
    """Authorizing an unregistered gateway: 3; a registered one: 0, then 1 twice; revoke."""
    common = ["--key", str(key_file), "--node", served_node.url, "--json"]
    gateway = KEYS[1].address
    assert 3 == deoss("gateway", "authorize", gateway, *common)[0]

    async def register() -> None:
        async with ChainClient(served_node.url) as client:
            await client.submit(
                KEYS[1],
                RegisterGateway(
                    endpoint="http://127.0.0.1:8080", stake=ChainParams().gateway_stake
                ),
            )

    run(register())
    code, out = deoss("gateway", "authorize", gateway, *common)
    assert (0, True) == (code, json.loads(out)["authorized"])
    assert 1 == deoss("gateway", "authorize", gateway, *common)[0]
    code, out = deoss("gateway", "ls", *common)
    assert [{"address": gateway, "endpoint": "http://127.0.0.1:8080", "authorized": True}] == (
        json.loads(out)["gateways"]
    )
    assert 0 == deoss("gateway", "revoke", gateway, *common)[0]
    assert 3 == deoss("gateway", "revoke", gateway, *common)[0]
    code, out = deoss("gateway", "authorize", "deoss1nope", *common)
    assert 1 == code and "address" in json.loads(out)["error"]["message"]


def test_status_and_file_show(served_node: ServedNode) -> None:
    """status counts deals by state; file show of an unknown fid exits 3, of a bad one 1."""
    code, out = deoss("status", "--node", served_node.url, "--json")
    summary = json.loads(out)
    assert (0, "test-chain") == (code, summary["chain_id"])
    assert {"open": 0, "assigned": 0, "success": 0, "failed": 0} == summary["deals"]
    assert ([], [], []) == (summary["schedulers"], summary["miners"], summary["gateways"])
    human = runner.invoke(app, ["status", "--node", served_node.url])
    assert "deals: 0 open, 0 assigned, 0 success, 0 failed" in human.stdout
    assert 3 == deoss("file", "show", "ab" * 32, "--node", served_node.url)[0]
    code, out = deoss("file", "show", "xyz", "--node", served_node.url, "--json")
    assert 1 == code and "fid" in json.loads(out)["error"]["message"]


def test_unreachable_node_and_gateway_exit_1(key_file: Path) -> None:
    code, out = deoss("status", "--node", "http://127.0.0.1:9", "--json")
    assert 1 == code and "cannot reach the chain node" in json.loads(out)["error"]["message"]
    code, out = deoss("ls", "--gateway", "http://127.0.0.1:9", "--key", str(key_file), "--json")
    assert 1 == code and "cannot reach the gateway" in json.loads(out)["error"]["message"]
