"""Running a short command without blocking the event loop, bounded in time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import TransientError


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


async def run_command(
    argv: list[str], *, time_limit: float = 20.0, env: Mapping[str, str] | None = None
) -> CommandResult:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=None if env is None else dict(env),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), time_limit)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise TransientError(f"`{' '.join(argv[:4])} ...` did not finish within {time_limit}s") from None
    assert proc.returncode is not None  # communicate() waited for the exit
    return CommandResult(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
