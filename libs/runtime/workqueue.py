"""A work queue of keys for level-triggered reconcilers (controller-runtime's idea).

Adding a key that is already waiting is a no-op, so a burst of events for one service costs one
reconcile. A key is never reconciled by two workers at once; a key added while it is being
reconciled runs again afterwards. Keys whose reconcile fails are retried with backoff.

A worker never dies: a transient error (an outage) is logged as a warning; anything else (a
bug, an error no one translated) is logged with its traceback. Both requeue the key with a
per-key exponential backoff (0.2 s doubling, at most ``max_delay``), so a failing key is
rate-limited and the other keys keep flowing.

A key added with no cause (a resync) runs with ``cause_for(key)`` if given: the cause of the
key's latest folded event (``latest_causes.py``), so its appends stay in that change's trace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from libs.events.causation import Cause, current_cause, using_cause, with_trace
from libs.events.outcomes import TRANSIENT_ERRORS
from libs.telemetry.metrics import RECONCILE_SECONDS, RECONCILES
from libs.telemetry.tracing import current_carrier, reconcile_span

log = logging.getLogger(__name__)


class WorkQueue:
    def __init__(
        self, reconcile: Callable[[str], Awaitable[None]], *, workers: int = 4, max_delay: float = 30.0,
        cause_for: Callable[[str], Cause | None] | None = None,
    ) -> None:  # fmt: skip
        self._reconcile = reconcile
        self._cause_for = cause_for
        self.max_delay = max_delay
        self._workers = workers
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._waiting: set[str] = set()
        self._active: set[str] = set()
        self._again: set[str] = set()
        self._failures: dict[str, int] = {}
        self._causes: dict[str, Cause] = {}

    def add(self, key: str) -> None:
        # The reconcile's appends carry what woke it last (the event being handled, if any).
        if (cause := current_cause()) is not None:
            self._causes[key] = with_trace(cause, current_carrier() or cause.trace)
        if key in self._active:
            self._again.add(key)
        elif key not in self._waiting:
            self._waiting.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: str, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.add, key)

    async def run(self, stop: asyncio.Event) -> None:
        workers = [asyncio.create_task(self._work()) for _ in range(self._workers)]
        try:
            await stop.wait()
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._waiting.discard(key)
            self._active.add(key)
            cause = self._causes.pop(key, None)  # appends carry it; the span is its child
            if cause is None and self._cause_for is not None:
                cause = self._cause_for(key)
            try:
                with (
                    using_cause(cause),
                    reconcile_span(key, cause.trace if cause else None),
                    RECONCILE_SECONDS.time(),
                ):
                    await self._reconcile(key)
                self._failures.pop(key, None)
                RECONCILES.labels("ok").inc()
            except asyncio.CancelledError:
                raise
            except TRANSIENT_ERRORS as exc:
                RECONCILES.labels("error").inc()
                delay = self._backoff(key)
                log.warning("reconcile %s failed (%r); retrying in %.1fs", key, exc, delay)
                self.add_after(key, delay)
            except Exception:
                RECONCILES.labels("error").inc()
                delay = self._backoff(key)
                log.exception("reconcile %s raised; retrying in %.1fs", key, delay)
                self.add_after(key, delay)
            finally:
                self._active.discard(key)
                if key in self._again:
                    self._again.discard(key)
                    self.add(key)

    def _backoff(self, key: str) -> float:
        n = self._failures[key] = self._failures.get(key, 0) + 1
        return float(min(self.max_delay, 0.2 * 2 ** (n - 1)))

    def failures(self, key: str) -> int:
        """Consecutive failed reconciles of ``key`` (0 after a success)."""
        return self._failures.get(key, 0)
