"""Reading the local stack's component logs (``STRATUS_HOME/logs``): a tail, then what is appended.

Replica logs are not read here: the provisioner owns them (``libs.replica_logs``).

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

from libs.replica_logs.files import tail_offset

CHUNK = 64 * 1024
# Components whose logs ``stratus logs --component`` can read (``<home>/logs/<name>.log``).
COMPONENTS = (
    "api", "scheduler", "provisioner", "prober", "autoscaler", "router",
    "relay", "supervisor", "nats", "postgres",
)  # fmt: skip
# SkyServe's per-service component names -> the Stratus component doing that job.
SERVICE_COMPONENTS = {"controller": "scheduler", "load-balancer": "router", "load_balancer": "router"}


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
