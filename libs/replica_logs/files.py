"""Reading a log file for the server: a chunk from an offset, or from ``tail`` lines before the end."""

from __future__ import annotations

import os
from pathlib import Path

from .protocol import MAX_CHUNK, LogReply

_SCAN = 64 * 1024


def tail_offset(path: Path, lines: int) -> int:
    """The byte offset where the last ``lines`` lines of ``path`` start (0 = the whole file)."""
    size = path.stat().st_size
    if lines <= 0:
        return size
    with path.open("rb") as f:
        end = size
        # A final newline ends the last line; it does not start an empty one.
        if end > 0:
            f.seek(end - 1)
            if f.read(1) == b"\n":
                end -= 1
        found = 0
        pos = end
        while pos > 0:
            step = min(_SCAN, pos)
            pos -= step
            f.seek(pos)
            block = f.read(step)
            idx = len(block)
            while True:
                idx = block.rfind(b"\n", 0, idx)
                if idx < 0:
                    break
                found += 1
                if found == lines:
                    return pos + idx + 1
    return 0


def read_chunk(path: Path, *, offset: int | None, tail: int | None, limit: int) -> LogReply:
    """Up to ``limit`` bytes (capped at MAX_CHUNK) of ``path``; not found if it does not exist."""
    limit = max(1, min(limit, MAX_CHUNK))
    try:
        with path.open("rb") as f:
            st = os.fstat(f.fileno())
            if offset is None:
                offset = tail_offset(path, tail) if tail is not None else 0
            if offset > st.st_size:  # truncated since the caller's last read: it starts over
                return LogReply(found=True, offset=offset, next_offset=offset, size=st.st_size,
                                file_id=st.st_ino)  # fmt: skip
            f.seek(offset)
            data = f.read(limit)
    except FileNotFoundError:
        return LogReply(found=False, reason="no log yet")
    return LogReply(
        found=True, data=data, offset=offset, next_offset=offset + len(data), size=st.st_size,
        file_id=st.st_ino,
    )  # fmt: skip
