"""The local admin token file: ``STRATUS_HOME/auth/admin.token``, mode 0600, written atomically."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from .errors import TokenFileError


def token_file(home: Path) -> Path:
    return home / "auth" / "admin.token"


def write_token_file(path: Path, token: str) -> None:
    """Create or replace ``path`` with ``token``; it is never readable by others, not even briefly."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise TokenFileError(f"cannot write the token file {path}: {exc}") from exc


def read_token_file(path: Path) -> str | None:
    """The token in ``path``, or None if there is no such file; refuses a file others may read."""
    try:
        st = path.stat()
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise TokenFileError(
                f"the token file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); "
                f"run `chmod 600 {path}`"
            )
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TokenFileError(f"cannot read the token file {path}: {exc}") from exc
