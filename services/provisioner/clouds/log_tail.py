"""Reading the end of a log file without reading all of it."""

from __future__ import annotations

import os
from pathlib import Path

# A tail is for a human or an event payload: a bounded read keeps a huge log cheap.
_MAX_TAIL_BYTES = 64 * 1024


def tail_lines(path: Path, lines: int, *, max_bytes: int = _MAX_TAIL_BYTES) -> str:
    """The last ``lines`` lines of ``path`` (at most ``max_bytes`` read), "" if it is missing."""
    if lines <= 0:
        return ""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace")
    if size > max_bytes:
        text = text.split("\n", 1)[-1]  # the first line was cut: drop it
    return "\n".join(text.splitlines()[-lines:])
