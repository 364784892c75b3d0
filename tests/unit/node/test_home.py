"""The node's home: genesis JSON by field name, node.toml and listen addresses."""

from __future__ import annotations

from pathlib import Path

import pytest

from deoss.chain.genesis import ChainParams
from deoss.node.home import (
    HomeError,
    NodeConfig,
    format_genesis,
    init_home,
    load_node_config,
    parse_genesis,
    parse_listen,
)
from tests.chain_fixtures import make_genesis


def test_genesis_json_round_trip() -> None:
    """A genesis written as JSON reads back as the same record."""
    genesis = make_genesis()
    assert genesis == parse_genesis(format_genesis(genesis))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('"chain_id"', '"chainid"'), "unknown field 'chainid'"),
        (
            lambda t: t.replace('"data_shards": 4', '"data_shards": "4"'),
            "data_shards: Expected `int`",
        ),
        (lambda t: t.replace('"data_shards": 4', '"data_shards": 0'), "params.layout"),
        (lambda t: t.replace('"balance": 1000000000000', '"balance": -1'), "negative balance"),
        (lambda t: t.replace('"accounts": [', '"accounts": 5, "x": ['), "unknown field 'x'"),
        (lambda t: "[]", "expected an object"),
    ],
)
def test_bad_genesis_names_the_field(edit: object, message: str) -> None:
    """Each bad genesis is a HomeError naming what is wrong."""
    text = edit(format_genesis(make_genesis()))  # type: ignore[operator]
    with pytest.raises(HomeError, match=message):
        parse_genesis(text)


def test_missing_field_is_named() -> None:
    """A required field that is absent is named."""
    lines = format_genesis(make_genesis()).splitlines()
    text = "\n".join(line for line in lines if '"genesis_time_ns"' not in line)
    with pytest.raises(HomeError, match="missing field 'genesis_time_ns'"):
        parse_genesis(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:26657", ("127.0.0.1", 26657)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:80", ("::1", 80)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    """HOST:PORT, with IPv6 hosts in brackets."""
    assert expected == parse_listen(text)


@pytest.mark.parametrize("text", ["26657", ":80", "host:", "host:65536", "host:-1", 5])
def test_parse_listen_refuses(text: object) -> None:
    """Anything else is refused with the expected form."""
    with pytest.raises(HomeError, match="HOST:PORT"):
        parse_listen(text)


def test_node_config_defaults_and_values(tmp_path: Path) -> None:
    """node.toml is optional; its values are checked."""
    assert NodeConfig() == load_node_config(tmp_path)
    (tmp_path / "node.toml").write_text('[rpc]\nlisten = "127.0.0.1:0"\n[chain]\nblock_ms = 50\n')
    assert NodeConfig("127.0.0.1", 0, 50) == load_node_config(tmp_path)
    (tmp_path / "node.toml").write_text("[chain]\nblock_ms = true\n")
    with pytest.raises(HomeError, match="block_ms must be an integer"):
        load_node_config(tmp_path)
    (tmp_path / "node.toml").write_text("[p2p]\n")
    with pytest.raises(HomeError, match=r"unknown section \[p2p\]"):
        load_node_config(tmp_path)


def test_init_home_into_an_empty_directory(tmp_path: Path) -> None:
    """An existing empty directory is fine; the second init is refused."""
    genesis, keys = init_home(tmp_path, dev_accounts=1)
    assert 1 == len(keys) == len(genesis.accounts)
    with pytest.raises(HomeError, match="refusing to overwrite"):
        init_home(tmp_path)


def test_init_home_with_custom_params(tmp_path: Path) -> None:
    """Given parameters go into the genesis, with the block interval of block_ms."""
    params = ChainParams(deal_timeout_blocks=7, block_interval_ms=5)
    genesis, _ = init_home(tmp_path, dev_accounts=0, block_ms=250, params=params)
    assert (7, 250) == (genesis.params.deal_timeout_blocks, genesis.params.block_interval_ms)
    assert genesis == parse_genesis((tmp_path / "genesis.json").read_text())
