"""Account key files on disk: written atomically with mode 0600, refused when others can read them.

The text format belongs to ``deoss.core.keys``; this module owns only the file system side, and
which file a command signs with (``find_key_path``): ``--key``, else ``$DEOSS_KEY``, else the
local network's dev user key when the current directory holds one
(``.deoss/chain/keys/dev-0.toml``, written by ``deoss up``), else ``~/.deoss/key.toml``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from deoss.atomic import write_atomic
from deoss.core.errors import InvalidKey
from deoss.core.keys import KeyPair, parse_key_file, render_key_file

__all__ = [
    "DEVNET_USER_KEY",
    "KeyFileNotFound",
    "default_key_path",
    "find_key_path",
    "read_key_file",
    "write_key_file",
    "write_private_file",
]

MAX_KEY_FILE_BYTES = 4096
# The dev user's key in a local network's home, relative to the directory `deoss up` ran in
# (the layout of deoss.devnet, whose default home is .deoss; a unit test keeps them in step).
DEVNET_USER_KEY = Path(".deoss/chain/keys/dev-0.toml")


class KeyFileNotFound(FileNotFoundError):
    """No key file where the lookup order leads; the message names every place looked."""


def home_key_path() -> Path:
    return Path.home() / ".deoss" / "key.toml"


def default_key_path() -> Path:
    """Where a new key goes: $DEOSS_KEY, or ~/.deoss/key.toml."""
    override = os.environ.get("DEOSS_KEY")
    return Path(override) if override else home_key_path()


def find_key_path(option: Path | None = None) -> Path:
    """The key file a command signs with: ``option`` (--key), else $DEOSS_KEY, else the local
    network's dev user key if this directory holds one, else ~/.deoss/key.toml.

    A key named explicitly (--key, $DEOSS_KEY) must exist: signing with another account than the
    one asked for would be worse than stopping.

    Raises:
        KeyFileNotFound: the chosen file does not exist; the message says where it looked.
    """
    create = "create one with: deoss keys new"
    if option is not None:
        if not os.path.exists(option):
            raise KeyFileNotFound(f"no key file at {option} (--key); {create}")
        return option
    override = os.environ.get("DEOSS_KEY")
    if override:
        if not os.path.exists(override):
            raise KeyFileNotFound(f"no key file at {override} ($DEOSS_KEY); {create}")
        return Path(override)
    for candidate in (DEVNET_USER_KEY, home_key_path()):
        if os.path.exists(candidate):  # os.path: False, never an error, on any Python
            return candidate
    raise KeyFileNotFound(
        "no key file found; looked at: --key (not given), $DEOSS_KEY (not set), "
        f"{DEVNET_USER_KEY} (the dev user of a local network started here by deoss up: absent), "
        f"{home_key_path()} (absent); {create}, or run deoss up and use its network from this "
        "directory"
    )


def write_key_file(path: Path, key: KeyPair, *, overwrite: bool = False) -> None:
    """Write ``key`` to ``path`` with mode 0600, atomically and durably.

    Raises:
        FileExistsError: the file exists and ``overwrite`` is false.
    """
    write_private_file(Path(path), render_key_file(key), overwrite=overwrite)


def write_private_file(path: Path, text: str, *, overwrite: bool = False) -> None:
    """Write a secret's text with mode 0600: temporary file, fsync, link or rename, fsync the
    directory. A crash leaves the old file or the new one, never a partial one.

    Raises:
        FileExistsError: the file exists and ``overwrite`` is false (never clobber a secret).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, text.encode("ascii"), mode=0o600, overwrite=overwrite, sync_directory=True)


def read_key_file(path: Path) -> KeyPair:
    """Load a key file, refusing one that the group or others can read or write.

    Raises:
        InvalidKey: unsafe permissions, not a regular file, too large, or malformed content.
        FileNotFoundError: no such file.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InvalidKey(f"key file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise InvalidKey(
                f"key file {path} is accessible by others (mode {stat.S_IMODE(info.st_mode):04o});"
                f" run: chmod 600 {path}"
            )
        raw = handle.read(MAX_KEY_FILE_BYTES + 1)
    if len(raw) > MAX_KEY_FILE_BYTES:
        raise InvalidKey(f"key file {path} is larger than {MAX_KEY_FILE_BYTES} bytes")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise InvalidKey(f"key file {path} is not ASCII text") from exc
    return parse_key_file(text)
