"""The master key file ``$STRATUS_HOME/secrets.key`` (created 0600 on first use).

The file holds one Fernet key a line. The first is the primary: it encrypts new data keys.
Every line decrypts, so during a rotation (``rotate.py``) the file holds the new key first and
the old one after it; once every data key is re-encrypted the old line goes. A file written
before rotation existed (a single key) is a keyring of one.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.fernet import Fernet, MultiFernet

from .errors import KeyFileError

KEY_FILE_NAME = "secrets.key"


def key_path(home: Path) -> Path:
    return home / KEY_FILE_NAME


def load_or_create_keys(home: Path) -> list[bytes]:
    """Every key in ``<home>/secrets.key``, primary first; the file is created on first use."""
    path = key_path(home)
    try:
        return _read_keys(path)
    except FileNotFoundError:
        pass
    home.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return _read_keys(path)
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
    return [key]


def load_or_create_key(home: Path) -> bytes:
    """The primary key (creating the file on first use)."""
    return load_or_create_keys(home)[0]


def master_keyring(home: Path) -> MultiFernet:
    """Encrypts with the primary key, decrypts with any key in the file."""
    return MultiFernet([Fernet(k) for k in load_or_create_keys(home)])


def write_keys(home: Path, keys: list[bytes]) -> None:
    """Replace the key file atomically (0600): readers see the old file or the new one."""
    if not keys:
        raise KeyFileError("refusing to write an empty secrets key file")
    path = key_path(home)
    tmp = path.with_name(f".{KEY_FILE_NAME}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(b"".join(k + b"\n" for k in keys))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_keys(path: Path) -> list[bytes]:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        path.chmod(0o600)
    keys = [line.strip() for line in path.read_bytes().splitlines() if line.strip()]
    if not keys:
        raise KeyFileError(f"{path} is empty; restore the original key file, or remove it to start over")
    for number, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except ValueError as exc:
            raise KeyFileError(
                f"{path} line {number} is not a valid secrets key (32 url-safe base64 bytes expected); "
                "restore the original key file, or remove it to start over (stored secrets become unreadable)"
            ) from exc
    return keys
