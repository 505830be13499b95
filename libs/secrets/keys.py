"""The master key file ``$STRATUS_HOME/secrets.key`` (created 0600 on first use)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.fernet import Fernet

from .errors import KeyFileError

KEY_FILE_NAME = "secrets.key"


def key_path(home: Path) -> Path:
    return home / KEY_FILE_NAME


def load_or_create_key(home: Path) -> bytes:
    """The Fernet key in ``<home>/secrets.key``, created (0600, atomically) on first use."""
    path = key_path(home)
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    home.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return _read_key(path)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def _read_key(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        path.chmod(0o600)
    key = path.read_bytes().strip()
    try:
        Fernet(key)
    except ValueError as exc:
        raise KeyFileError(
            f"{path} is not a valid secrets key (32 url-safe base64 bytes expected); "
            "restore the original key file, or remove it to start over (stored secrets become unreadable)"
        ) from exc
    return key
