"""How long-running loops stop, wait and back off.

Every loop in this package waits through ``sleep_or_stop`` so that a stop request (SIGTERM)
ends any wait at once, and retries through ``Backoff`` so that an outage is met with growing
delays instead of a hot loop. ``retry_connect`` is the one connect-with-retry loop that
processes use at start-up (the store, the bus).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar, overload

from .errors import TransientError

log = logging.getLogger(__name__)

T = TypeVar("T")


def install_stop_signals(
    stop: asyncio.Event, signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT)
) -> Callable[[], None]:
    """Make SIGTERM/SIGINT set ``stop``; returns a function that removes the handlers."""
    loop = asyncio.get_running_loop()
    installed = list(signals)
    for sig in installed:
        loop.add_signal_handler(sig, stop.set)

    def remove() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return remove


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True if ``stop`` was set (the caller should wind down)."""
    if stop.is_set():
        return True
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0.0))
    except TimeoutError:
        return False
    return True


async def wait_any(*events: asyncio.Event, seconds: float) -> None:
    """Return when any event is set or after ``seconds``."""
    if any(e.is_set() for e in events):
        return
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


def backoff_delay(attempt: int, *, initial: float, maximum: float) -> float:
    """Exponential delay for the ``attempt``-th retry (1-based), capped at ``maximum``."""
    return float(min(maximum, initial * 2 ** max(attempt - 1, 0)))


@dataclass(slots=True)
class Backoff:
    """Growing delays between retries of one failing operation; ``reset`` after a success."""

    initial: float = 0.1
    maximum: float = 5.0
    attempt: int = field(default=0)

    def next(self) -> float:
        self.attempt += 1
        return backoff_delay(self.attempt, initial=self.initial, maximum=self.maximum)

    def reset(self) -> None:
        self.attempt = 0


@overload
async def retry_connect(
    connect: Callable[[], Awaitable[T]], *, what: str, stop: asyncio.Event, attempts: int | None = None,
    backoff: Backoff | None = None,
) -> T | None: ...  # fmt: skip


@overload
async def retry_connect(
    connect: Callable[[], Awaitable[T]], *, what: str, stop: None = None, attempts: int,
    backoff: Backoff | None = None,
) -> T: ...  # fmt: skip


async def retry_connect(
    connect: Callable[[], Awaitable[T]], *, what: str, stop: asyncio.Event | None = None,
    attempts: int | None = None, backoff: Backoff | None = None,
) -> T | None:  # fmt: skip
    """``await connect()``, retried with ``backoff`` while it raises a ``TransientError``
    (``StoreUnavailable``, ``BusUnavailable``): until ``stop`` is set (then None), or for at
    most ``attempts`` tries (then the last error is raised). Anything else is raised at once.
    """
    backoff = backoff if backoff is not None else Backoff(0.2, 5.0)
    stop = stop if stop is not None else asyncio.Event()
    attempt = 0
    while not stop.is_set():
        attempt += 1
        try:
            return await connect()
        except TransientError as exc:
            if attempts is not None and attempt >= attempts:
                raise
            delay = backoff.next()
            log.warning("%s: %s; retrying in %.1fs", what, exc, delay)
            await sleep_or_stop(stop, delay)
    return None
