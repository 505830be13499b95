"""Reading log files for the logs endpoints: the tail of a file, then (``follow``) what is appended.

A follow ends when ``done()`` says the writer is finished (and everything written was sent),
when ``stopping`` is set (the API shuts down), or when the client goes away (the response is
cancelled by the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

CHUNK = 64 * 1024
# Components whose logs ``stratus logs --component`` can read (``<home>/logs/<name>.log``).
COMPONENTS = (
    "api", "scheduler", "provisioner", "prober", "autoscaler", "router",
    "relay", "supervisor", "nats", "postgres",
)  # fmt: skip
# SkyServe's per-service component names -> the Stratus component doing that job.
SERVICE_COMPONENTS = {"controller": "scheduler", "load-balancer": "router", "load_balancer": "router"}


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
            step = min(CHUNK, pos)
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


async def read_log(
    path: Path,
    *,
    tail: int | None,
    follow: bool,
    stopping: asyncio.Event,
    done: Callable[[], bool] = lambda: False,
    poll_interval: float = 0.25,
) -> AsyncIterator[bytes]:
    """The file's content (from ``tail`` lines before the end), then appended data if ``follow``.

    With ``follow`` the file may not exist yet (a replica still being scheduled): it is waited for.
    """
    offset: int | None = None
    f = None
    try:
        while True:
            if f is None:
                try:
                    f = path.open("rb")
                except FileNotFoundError:
                    if not follow or done() or stopping.is_set():
                        return
                    await _pause(stopping, poll_interval)
                    continue
                offset = tail_offset(path, tail) if tail is not None and offset is None else (offset or 0)
                f.seek(offset)
            chunk = f.read(CHUNK)
            if chunk:
                offset = f.tell()
                yield chunk
                continue
            if not follow or stopping.is_set():
                return
            # Truncated or replaced (rotation): start over from the beginning.
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None
            if st is None or st.st_size < (offset or 0) or st.st_ino != os.fstat(f.fileno()).st_ino:
                f.close()
                f = None
                offset = 0
                continue
            if done():
                # One last read: the writer may have flushed between our read and its end.
                rest = f.read()
                if rest:
                    yield rest
                return
            await _pause(stopping, poll_interval)
    finally:
        if f is not None:
            f.close()


async def _pause(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
