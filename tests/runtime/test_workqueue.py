"""The work queue: a failing reconcile is logged with its traceback and retried, rate-limited;
no worker dies, other keys keep flowing."""

from __future__ import annotations

import asyncio
import time

import pytest

from libs.events.errors import StoreUnavailable
from libs.runtime.workqueue import WorkQueue


async def test_a_bug_is_logged_with_its_traceback_and_retried_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts: dict[str, list[float]] = {"bad": [], "good": []}
    done = asyncio.Event()

    async def reconcile(key: str) -> None:
        attempts[key].append(time.monotonic())
        if key == "bad" and len(attempts["bad"]) < 4:
            raise KeyError("a bug outside TRANSIENT_ERRORS")
        if key == "bad":
            done.set()

    queue = WorkQueue(reconcile, workers=1)  # one worker: it must survive every failure
    stop = asyncio.Event()
    runner = asyncio.create_task(queue.run(stop))
    queue.add("bad")
    await asyncio.wait_for(done.wait(), 10)
    for _ in range(3):
        queue.add("good")
        await asyncio.sleep(0.01)
    stop.set()
    await runner
    gaps = [b - a for a, b in zip(attempts["bad"], attempts["bad"][1:], strict=False)]
    assert len(attempts["bad"]) == 4 and gaps[0] >= 0.18 and gaps[2] >= 0.75  # 0.2, 0.4, 0.8 s
    assert attempts["good"]  # the worker kept working
    logged = [r for r in caplog.records if "reconcile bad raised" in r.getMessage()]
    assert len(logged) == 3 and all(r.exc_info and r.exc_info[0] is KeyError for r in logged)
    assert queue.failures("bad") == 0  # reset by the success


async def test_transient_errors_are_retried_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0
    done = asyncio.Event()

    async def reconcile(key: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StoreUnavailable("postgres restarting")
        done.set()

    queue = WorkQueue(reconcile, workers=1)
    stop = asyncio.Event()
    runner = asyncio.create_task(queue.run(stop))
    queue.add("svc")
    await asyncio.wait_for(done.wait(), 5)
    stop.set()
    await runner
    warned = [r for r in caplog.records if "reconcile svc failed" in r.getMessage()]
    assert len(warned) == 1 and warned[0].exc_info is None
