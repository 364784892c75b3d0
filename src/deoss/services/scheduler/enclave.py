"""The enclave boundary: the one holder of the scheduler's PoDR² tag secret.

Invariants:

* The secret exists only inside ``Enclave`` (in its ``TagKey``) and in the sealed file. The class
  exposes the public key and ``tag_fragment``, nothing else; a real TEE could replace it.
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

import os
import stat
import tomllib
from concurrent.futures import Executor
from pathlib import Path

from deoss.core.errors import DataPathError
from deoss.core.podr2 import TagKey, TagPublicKey
from deoss.keyfile import write_private_file

__all__ = ["Enclave", "EnclaveError"]

FORMAT_VERSION = 1
MAX_SEALED_BYTES = 4096
_HEADER = (
    "# DeOSS scheduler PoDR2 tag key. Keep this file secret: whoever reads it can forge\n"
    "# possession proofs for every fragment this scheduler tagged.\n"
)


class EnclaveError(Exception):
    """The sealed tag key cannot be used; the message names the file and what is wrong."""


class Enclave:
    """Holds the tag key; computes tags. Open it with ``Enclave.open``."""

    __slots__ = ("_key",)

    def __init__(self, key: TagKey) -> None:
        self._key = key

    @classmethod
    def open(cls, path: Path, sectors_per_block: int) -> Enclave:
        """Unseal the key at ``path``, or generate and seal a new one if there is none.

        Raises:
            EnclaveError: unsafe permissions, not a regular file, or malformed content.
        """
        path = Path(path)
        if not path.exists():
            try:
                _seal(path, TagKey.generate(sectors_per_block))
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

    def tag_fragment(
        self, fragment: bytes | memoryview, fragment_hash: bytes, executor: Executor | None = None
    ) -> bytes:
        """The PoDR² tags of a fragment (48 bytes per block); ``fragment_hash`` is checked."""
        return self._key.tag_fragment(fragment, fragment_hash, executor)

    def __repr__(self) -> str:
        return f"Enclave(key_id={self.key_id.hex()}, sectors_per_block={self.sectors_per_block})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("the tag key cannot leave the enclave (no pickling)")

    def __copy__(self) -> Enclave:
        raise TypeError("the tag key cannot leave the enclave (no copies)")

    def __deepcopy__(self, memo: object) -> Enclave:
        raise TypeError("the tag key cannot leave the enclave (no copies)")


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
