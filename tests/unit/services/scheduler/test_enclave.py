"""The enclave boundary: sealed once with mode 0600, refused when others can read it, the
secret never shown (repr, str, errors, logs), tags that verify, computed in worker processes
of lower priority that are replaced when they die."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
import os
import pickle
import signal
import stat
import subprocess
import sys
import textwrap
import time
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deoss.core.errors import InvalidParameters
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


def worker_pids(enclave: Enclave) -> list[int]:
    """The enclave's worker processes (a peek at the pool: the enclave exposes no such thing)."""
    pool = enclave._workers
    assert pool is not None
    return list(pool._processes or {})


def nice_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


@pytest.fixture
def working(tmp_path: Path) -> Iterator[Enclave]:
    enclave = Enclave.open(tmp_path / "tag.key", SECTORS)
    enclave.start_workers(2, nice=5)
    yield enclave
    enclave.stop_workers()


@pytest.mark.anyio
@pytest.mark.parametrize("size", [0, 1, 30 * SECTORS * 31 + 7])
async def test_workers_tag_as_the_key_itself_does(working: Enclave, size: int) -> None:
    """Empty, one byte, and a fragment spread over several tasks of BLOCKS_PER_TASK blocks."""
    fragment = os.urandom(size)
    digest = hashlib.sha256(fragment).digest()
    assert working.tag_fragment(fragment, digest) == await working.tag(fragment, digest)
    with pytest.raises(InvalidParameters, match="SHA-256"):
        await working.tag(fragment + b"x", digest)


@pytest.mark.anyio
async def test_workers_are_processes_of_lower_priority(working: Enclave) -> None:
    fragment = os.urandom(4000)
    await working.tag(fragment, hashlib.sha256(fragment).digest())
    pids = worker_pids(working)
    assert pids and os.getpid() not in pids
    expected = nice_of(os.getpid()) + 5
    deadline = time.monotonic() + 10  # a worker spawned last may still be starting
    while any(nice_of(pid) != expected for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(nice_of(pid) == expected for pid in pids)
    if hasattr(os, "SCHED_IDLE"):
        assert all(os.SCHED_IDLE == os.sched_getscheduler(pid) for pid in pids)


def test_workers_leave_with_a_service_killed_by_sigkill(tmp_path: Path) -> None:
    """A service that dies without stopping its workers (SIGKILL, OOM) leaves no worker behind
    holding the tag secret."""
    script = textwrap.dedent(
        f"""
        import asyncio, hashlib, os, sys, time
        from pathlib import Path
        from deoss.services.scheduler.enclave import Enclave
        enclave = Enclave.open(Path({str(tmp_path / "tag.key")!r}), {SECTORS})
        enclave.start_workers(2, nice=0)
        data = os.urandom(40 * {SECTORS} * 31)
        asyncio.run(enclave.tag(data, hashlib.sha256(data).digest()))
        print(*enclave._workers._processes, flush=True)
        time.sleep(600)
        """
    )
    service = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert service.stdout is not None
    try:
        pids = [int(pid) for pid in service.stdout.readline().split()]
        assert pids and all(Path(f"/proc/{pid}").exists() for pid in pids)
    finally:
        service.kill()
        service.wait()
        service.stdout.close()  # not communicate(): a worker left behind holds this pipe too
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in pids if alive(pid)]
    for pid in left:  # a failing run must not leave them behind either
        os.kill(pid, signal.SIGKILL)
    assert [] == left


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; only its (dead) parent could reap it


@pytest.mark.anyio
async def test_tagging_holds_no_thread_while_the_workers_compute(tmp_path: Path) -> None:
    """Tag jobs waiting for the workers leave the event loop's default executor free (jobs
    that waited in threads once starved a scheduler's segment coding for seconds)."""
    enclave = Enclave.open(tmp_path / "tag.key", SECTORS)
    enclave.start_workers(1, nice=0)
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(2))  # as many threads as jobs below
    try:
        fragments = [os.urandom(400 * SECTORS * 31) for _ in range(3)]  # about 0.5 s each
        jobs = [
            asyncio.create_task(enclave.tag(fragment, hashlib.sha256(fragment).digest()))
            for fragment in fragments
        ]
        await asyncio.sleep(0.3)  # the worker has started: every job is waiting for it
        started = time.monotonic()
        assert 1 == await asyncio.to_thread(lambda: 1)
        waited = time.monotonic() - started
        assert not all(job.done() for job in jobs)
        tags = await asyncio.gather(*jobs)
    finally:
        loop.set_default_executor(ThreadPoolExecutor())
        enclave.stop_workers()
    assert waited < 0.2
    digest = hashlib.sha256(fragments[2]).digest()
    assert Enclave.open(tmp_path / "tag.key", SECTORS).tag_fragment(fragments[2], digest) == tags[2]


@pytest.mark.anyio
async def test_tag_replaces_a_killed_worker(working: Enclave) -> None:
    fragment = os.urandom(20 * SECTORS * 31)
    digest = hashlib.sha256(fragment).digest()
    expected = await working.tag(fragment, digest)
    for pid in worker_pids(working):
        os.kill(pid, signal.SIGKILL)
    assert expected == await working.tag(fragment, digest)
    with pytest.raises(InvalidParameters, match="SHA-256"):
        await working.tag(fragment + b"x", digest)
