"""Account key files on disk: written atomically with mode 0600, refused when others can read them.

The text format belongs to ``deoss.core.keys``; this module owns only the file system side.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from deoss.core.errors import InvalidKey
from deoss.core.keys import KeyPair, parse_key_file, render_key_file

__all__ = ["default_key_path", "read_key_file", "write_key_file", "write_private_file"]

MAX_KEY_FILE_BYTES = 4096


def default_key_path() -> Path:
    """$DEOSS_KEY, or ~/.deoss/key.toml."""
    override = os.environ.get("DEOSS_KEY")
    return Path(override) if override else Path.home() / ".deoss" / "key.toml"


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
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # fails if the file exists
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


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
