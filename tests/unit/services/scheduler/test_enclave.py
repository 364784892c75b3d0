"""The enclave boundary: sealed once with mode 0600, refused when others can read it, the
secret never shown (repr, str, errors, logs), tags that verify."""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import pickle
import stat
import tomllib
from pathlib import Path

import pytest

from deoss.core.podr2 import FragmentRef, PodrParams, derive_challenge, prove, verify_proof
from deoss.services.scheduler.enclave import Enclave, EnclaveError

SECTORS = 8


def sealed_secret_hex(path: Path) -> str:
    return str(tomllib.loads(path.read_text())["secret"])


def test_first_open_seals_a_key_with_mode_0600_and_later_opens_unseal_it(tmp_path: Path) -> None:
    path = tmp_path / "data" / "tag.key"
    first = Enclave.open(path, SECTORS)
    assert 0o600 == stat.S_IMODE(path.stat().st_mode)
    assert 64 == len(sealed_secret_hex(path))
    again = Enclave.open(path, SECTORS)
    assert first.public_key == again.public_key
    assert [p.name for p in path.parent.iterdir()] == ["tag.key"]  # no temporary left behind
    first.public_key.verify_possession()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_file_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "tag.key"
    Enclave.open(path, SECTORS)
    path.chmod(mode)
    with pytest.raises(EnclaveError, match=f"accessible by others \\(mode {mode:04o}\\)"):
        Enclave.open(path, SECTORS)


def test_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo", 0o600)
    (tmp_path / "dir").mkdir(mode=0o700)
    for name in ("fifo", "dir"):
        with pytest.raises(EnclaveError, match="not a regular file"):
            Enclave.open(tmp_path / name, SECTORS)


def test_malformed_files_are_refused_without_quoting_them(tmp_path: Path) -> None:
    path = tmp_path / "tag.key"
    Enclave.open(path, SECTORS)
    secret = sealed_secret_hex(path)
    for text in (
        f'version = 1\nsecret = "{secret[:-2]}"\n',  # 31 bytes
        f'version = 2\nsecret = "{secret}"\n',
        f'version = 1\nsecret = "{"f" * 64}"\n',  # not below the group order
        f"version = 1\nsecret = {secret}\n",  # not TOML
    ):
        path.write_text(text)
        path.chmod(0o600)
        with pytest.raises(EnclaveError) as refused:
            Enclave.open(path, SECTORS)
        assert secret[:16] not in str(refused.value)
        assert refused.value.__cause__ is None


def test_the_secret_never_shows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "tag.key"
    enclave = Enclave.open(path, SECTORS)
    secret = sealed_secret_hex(path)
    shown = repr(enclave) + str(enclave) + f"{enclave!r}" + repr(vars(type(enclave)))
    assert enclave.key_id.hex() in repr(enclave)
    assert secret not in shown
    assert secret not in caplog.text
    with pytest.raises(TypeError, match="__dict__"):
        vars(enclave)  # no __dict__ to dump: the key lives in a slot
    with pytest.raises(TypeError, match="cannot leave the enclave"):
        pickle.dumps(enclave)
    with pytest.raises(TypeError, match="cannot leave the enclave"):
        copy.deepcopy(enclave)


def test_tags_verify_with_the_public_key(tmp_path: Path) -> None:
    enclave = Enclave.open(tmp_path / "tag.key", SECTORS)
    fragment = os.urandom(1000)
    digest = hashlib.sha256(fragment).digest()
    tags = enclave.tag_fragment(fragment, digest)
    params = PodrParams(sectors_per_block=SECTORS, fragments_per_challenge=4)
    items = derive_challenge(b"s" * 32, [FragmentRef(hash=digest, size=1000)], params)
    block = SECTORS * 31

    def read(_: bytes, index: int) -> tuple[bytes, bytes]:
        return fragment[index * block : (index + 1) * block], tags[48 * index : 48 * index + 48]

    verify_proof(enclave.public_key, items, prove(items, read, SECTORS))
