"""The enclave boundary: the one holder of the scheduler's PoDR² tag secret.

Invariants:

* The secret exists only inside ``Enclave`` (in its ``TagKey``), in the enclave's worker
  processes, and in the sealed file. The class exposes the public key and tagging
  (``tag``, ``tag_fragment``), nothing else; a real TEE could replace it.
* Tags are computed in worker processes that ``start_workers`` spawns (the secret reaches them
  through their start-up pipe, never through a file or the environment), at idle CPU priority
  (SCHED_IDLE where Linux offers it, a nice value otherwise); they exit when the service does,
  even one killed with SIGKILL. Processes, not threads: a low-priority thread that holds the
  GIL stalls the scheduler's event loop whenever the machine is busy (measured: uploads placed
  at 2.5 MB/s and failed while the scheduler tagged, docs/benchmarks.md); a worker process
  yields the CPU without holding anything the service needs.
* The sealed file is created once, atomically (temporary file, fsync, link: an existing file is
  never overwritten), with mode 0600. A file that the group or others may access, or that is not
  a regular file, is refused, as account key files are (``deoss.keyfile``).
* ``repr``/``str`` show the key id only, and no error message quotes the file's content, so the
  secret never reaches a log. An enclave cannot be pickled or copied.

Sealed file format (TOML)::

    # DeOSS scheduler PoDR2 tag key. ...
    version = 1
    secret = "<64 hex digits: the 32-byte little-endian scalar>"
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import multiprocessing
import os
import signal
import stat
import threading
import time
import tomllib
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import nacl.utils

from deoss.core.errors import DataPathError, InvalidParameters
from deoss.core.podr2 import SECTOR_BYTES, TagKey, TagPublicKey, block_count
from deoss.keyfile import write_private_file

__all__ = ["Enclave", "EnclaveError"]

FORMAT_VERSION = 1
MAX_SEALED_BYTES = 4096
# Blocks per task sent to a worker: 16 blocks of 512 sectors are 248 KiB and about 0.2 s of work,
# small enough to spread one fragment over the workers, large enough to hide the pipe.
BLOCKS_PER_TASK = 16
PARENT_CHECK_S = 0.5  # how often a worker checks that the service that started it still runs
_HEADER = (
    "# DeOSS scheduler PoDR2 tag key. Keep this file secret: whoever reads it can forge\n"
    "# possession proofs for every fragment this scheduler tagged.\n"
)


class EnclaveError(Exception):
    """The sealed tag key cannot be used; the message names the file and what is wrong."""


class Enclave:
    """Holds the tag key; computes tags. Open it with ``Enclave.open``."""

    __slots__ = ("_key", "_workers", "_worker_count", "_worker_nice")

    def __init__(self, key: TagKey) -> None:
        self._key = key
        self._workers: ProcessPoolExecutor | None = None
        self._worker_count = 0
        self._worker_nice = 0

    @classmethod
    def open(cls, path: Path, sectors_per_block: int) -> Enclave:
        """Unseal the key at ``path``, or generate and seal a new one if there is none.

        Raises:
            EnclaveError: unsafe permissions, not a regular file, or malformed content.
        """
        path = Path(path)
        if not path.exists():
            try:
                _seal(path, TagKey.generate(sectors_per_block, nacl.utils.random))
            except FileExistsError:
                pass  # another process sealed one first: use that one
        return cls(_unseal(path, sectors_per_block))

    @property
    def public_key(self) -> TagPublicKey:
        """What the chain holds: v, sectors per block, proof of possession."""
        return self._key.public

    @property
    def key_id(self) -> bytes:
        return self._key.public.key_id

    @property
    def sectors_per_block(self) -> int:
        return self._key.sectors_per_block

    def start_workers(self, count: int, nice: int) -> None:
        """Tag from now on in ``count`` worker processes (started when first needed) that
        raise their nice value by ``nice``."""
        self.stop_workers()
        self._worker_count, self._worker_nice = count, nice
        self._workers = self._new_pool()

    def stop_workers(self) -> None:
        """Stop the worker processes (a tag computation in progress fails); tag in the
        calling thread from now on."""
        workers, self._workers = self._workers, None
        if workers is not None:
            workers.shutdown(wait=False, cancel_futures=True)

    def tag_fragment(self, fragment: bytes | memoryview, fragment_hash: bytes) -> bytes:
        """The PoDR² tags of a fragment (48 bytes per block), computed in the calling thread;
        ``fragment_hash`` is checked. A service uses ``tag``."""
        return self._key.tag_fragment(fragment, fragment_hash)

    async def tag(self, fragment: bytes | memoryview, fragment_hash: bytes) -> bytes:
        """``tag_fragment`` in the workers (in a thread when none were started), awaited
        without holding a thread: tag jobs once waited in ``asyncio.to_thread`` and filled the
        loop's default executor, so a scheduler busy tagging could not code a segment for
        seconds. A worker that died is replaced and the fragment tagged again once."""
        workers = self._workers
        if workers is None:
            return await asyncio.to_thread(self.tag_fragment, fragment, fragment_hash)
        data = await asyncio.to_thread(_checked, fragment, fragment_hash)
        try:
            return await self._tag_in(workers, data, fragment_hash)
        except BrokenProcessPool:
            return await self._tag_in(self._replace(workers), data, fragment_hash)

    async def _tag_in(
        self, workers: ProcessPoolExecutor, data: bytes, fragment_hash: bytes
    ) -> bytes:
        """One task per BLOCKS_PER_TASK blocks of the fragment."""
        block = self._key.sectors_per_block * SECTOR_BYTES
        count = block_count(len(data), self._key.sectors_per_block)
        tasks = [
            workers.submit(
                _worker_tag,
                data[first * block : (first + BLOCKS_PER_TASK) * block],
                fragment_hash,
                first,
            )
            for first in range(0, count, BLOCKS_PER_TASK)
        ]
        return b"".join(await asyncio.gather(*map(asyncio.wrap_future, tasks)))

    def _replace(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        """A new pool for one that lost a worker (unless the workers were stopped)."""
        if self._workers is broken:
            self._workers = self._new_pool()
            broken.shutdown(wait=False, cancel_futures=True)
        if self._workers is None:
            raise BrokenProcessPool("the tagging workers were stopped")
        return self._workers

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self._worker_count,
            # spawn: a fork of a process running threads and an event loop is not safe
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_start,
            initargs=(self._key.export_secret(), self._key.sectors_per_block, self._worker_nice),
        )

    def __repr__(self) -> str:
        return f"Enclave(key_id={self.key_id.hex()}, sectors_per_block={self.sectors_per_block})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("the tag key cannot leave the enclave (no pickling)")

    def __copy__(self) -> Enclave:
        raise TypeError("the tag key cannot leave the enclave (no copies)")

    def __deepcopy__(self, memo: object) -> Enclave:
        raise TypeError("the tag key cannot leave the enclave (no copies)")


def _checked(fragment: bytes | memoryview, fragment_hash: bytes) -> bytes:
    data = bytes(fragment)
    if hashlib.sha256(data).digest() != fragment_hash:
        raise InvalidParameters("fragment_hash is not the SHA-256 of the fragment")
    return data


# --- inside a worker process ---------------------------------------------------------------

_worker_key: TagKey | None = None


def _worker_start(secret: bytes, sectors_per_block: int, nice: int) -> None:
    global _worker_key
    _worker_key = TagKey.from_secret(secret, sectors_per_block)
    with contextlib.suppress(OSError):
        os.nice(nice)
    # Linux: run only when no normal task wants the CPU, and give way at once when one wakes
    # (a download's hops wake up all the time; a nice value alone left them waiting)
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    # Ctrl-C reaches the whole process group; the service stops its workers itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # a worker outlives a service killed with SIGKILL (its queues stay open): leave with it
    parent = os.getppid()
    threading.Thread(target=_exit_with, args=(parent,), name="deoss-parent", daemon=True).start()


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _worker_tag(blocks: bytes, fragment_hash: bytes, first: int) -> bytes:
    if _worker_key is None:
        raise RuntimeError("a tagging worker was not started with a key")
    return _worker_key.tag_blocks(blocks, fragment_hash, first)


def _seal(path: Path, key: TagKey) -> None:
    """Write ``key`` to ``path`` (mode 0600), atomically; FileExistsError if it exists."""
    text = f'{_HEADER}version = {FORMAT_VERSION}\nsecret = "{key.export_secret().hex()}"\n'
    write_private_file(path, text)


def _unseal(path: Path, sectors_per_block: int) -> TagKey:
    # O_NONBLOCK: opening a FIFO planted at the path must not hang the process
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise EnclaveError(f"tag key file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise EnclaveError(
                f"tag key file {path} is accessible by others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
            )
        raw = os.read(fd, MAX_SEALED_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_SEALED_BYTES:
        raise EnclaveError(f"tag key file {path} is larger than {MAX_SEALED_BYTES} bytes")
    try:
        document = tomllib.loads(raw.decode("ascii"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        raise EnclaveError(f"tag key file {path} is not ASCII TOML") from None
    if document.get("version") != FORMAT_VERSION:
        raise EnclaveError(f"tag key file {path}: version must be {FORMAT_VERSION}")
    try:
        secret = bytes.fromhex(str(document.get("secret", "")))
        return TagKey.from_secret(secret, sectors_per_block)
    except (ValueError, DataPathError):
        # ``from None``: the cause could quote the secret
        raise EnclaveError(f"tag key file {path}: secret is not a valid 32-byte key") from None
