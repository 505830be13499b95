"""Small file helpers of the local provider: reading its status files, its log notes, a private dir."""

from __future__ import annotations

import contextlib
import os
import stat
import time
from pathlib import Path

from .errors import LaunchError


def check_private_dir(path: Path) -> None:
    """A socket directory outside the state dir (in /tmp, say) could have been made by someone
    else, who could then swap our sockets for theirs: it must be ours and private."""
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise LaunchError(
            f"{path} holds replica sockets: it must be a directory of uid {os.geteuid()} with mode 0700"
        )


def read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def read_int(path: Path) -> int | None:
    text = read_text(path)
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def append_log(path: Path, message: str) -> None:
    with contextlib.suppress(OSError), path.open("a") as f:
        f.write(f"[stratus] {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {message}\n")
