"""Account keys: addresses with checksums, signatures, key files with safe permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from deoss.core.errors import BadSignature, InvalidKey
from deoss.core.keys import (
    KeyPair,
    address_of,
    parse_address,
    parse_key_file,
    render_key_file,
    verify,
)
from deoss.keyfile import read_key_file, write_key_file

SEED = bytes(range(32))


def test_known_address_for_fixed_seed() -> None:
    """The address format is frozen: bech32, prefix deoss, the raw public key."""
    key = KeyPair.from_seed(SEED)
    assert (
        "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8" == key.public_key.hex()
    )
    assert "deoss1qwss00lnecgtu8tsm5vwwj7qn9n7f43snwjs6hcamjrxgyj4xxuq7qmn2p" == key.address
    assert key.public_key == parse_address(key.address)


def test_address_round_trip_for_many_keys() -> None:
    for _ in range(20):
        key = KeyPair.generate()
        assert key.public_key == parse_address(address_of(key.public_key))


@pytest.mark.parametrize("position", [6, 20, 40, 63])
def test_single_character_typo_is_caught(position: int) -> None:
    address = KeyPair.from_seed(SEED).address
    replacement = "q" if address[position] != "q" else "p"
    typo = address[:position] + replacement + address[position + 1 :]
    with pytest.raises(InvalidKey, match="checksum"):
        parse_address(typo)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("DEOSS1QQQQ", "lowercase"),
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "prefix"),
        ("deoss1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq", "bech32"),
    ],
)
def test_malformed_addresses_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidKey, match=message):
        parse_address(text)


def test_address_of_wrong_length_key_is_refused() -> None:
    with pytest.raises(InvalidKey, match="32 bytes"):
        address_of(b"\x01" * 31)


def test_sign_and_verify() -> None:
    key = KeyPair.from_seed(SEED)
    signature = key.sign(b"message")
    verify(key.public_key, b"message", signature)
    with pytest.raises(BadSignature):
        verify(key.public_key, b"messagf", signature)
    with pytest.raises(BadSignature):
        verify(KeyPair.generate().public_key, b"message", signature)
    with pytest.raises(InvalidKey, match="64 bytes"):
        verify(key.public_key, b"message", signature[:-1])


def test_seed_never_shows_in_repr() -> None:
    key = KeyPair.from_seed(SEED)
    assert SEED.hex() not in repr(key)
    assert str(list(SEED)) not in repr(key)


def test_key_file_text_round_trip_and_mismatch() -> None:
    key = KeyPair.from_seed(SEED)
    key_text = render_key_file(key)
    assert key == parse_key_file(key_text)
    other = KeyPair.generate().address
    with pytest.raises(InvalidKey, match="does not match"):
        parse_key_file(key_text.replace(key.address, other))
    with pytest.raises(InvalidKey, match="no seed"):
        parse_key_file("# nothing\n")
    with pytest.raises(InvalidKey, match="hexadecimal"):
        parse_key_file('seed = "zz"\n')
    with pytest.raises(InvalidKey, match="32 bytes"):
        parse_key_file('seed = "00"\n')


def test_key_file_written_0600_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "me.toml"
    key = KeyPair.generate()
    write_key_file(path, key)
    assert 0o600 == stat.S_IMODE(path.stat().st_mode)
    assert key == read_key_file(path)
    assert [path.name] == os.listdir(path.parent)  # no temporary file left behind


def test_existing_key_file_is_not_replaced_without_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "me.toml"
    first = KeyPair.generate()
    write_key_file(path, first)
    with pytest.raises(FileExistsError):
        write_key_file(path, KeyPair.generate())
    assert first == read_key_file(path)
    second = KeyPair.generate()
    write_key_file(path, second, overwrite=True)
    assert second == read_key_file(path)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "me.toml"
    write_key_file(path, KeyPair.generate())
    path.chmod(mode)
    with pytest.raises(InvalidKey, match="chmod 600"):
        read_key_file(path)


def test_key_file_that_is_not_a_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises((InvalidKey, IsADirectoryError)):
        read_key_file(tmp_path)


def test_oversized_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text("#" * 5000)
    path.chmod(0o600)
    with pytest.raises(InvalidKey, match="larger"):
        read_key_file(path)
