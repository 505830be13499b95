"""Causation in-process: the contextvar, stamping, and the work queue carrying a cause from the
handler that woke a key to the reconcile that runs later on another task."""

from __future__ import annotations

import asyncio
import uuid

from libs.events.causation import Cause, current_cause, new_request_cause, stamp, using_cause
from libs.events.envelope import NewEvent
from libs.events.types import ServiceRequested
from libs.runtime.workqueue import WorkQueue

EVENT = ServiceRequested(service="s")


def test_stamp_fills_only_what_the_caller_left_unset() -> None:
    assert stamp(NewEvent(event=EVENT)).causation_id is None  # no cause: nothing to fill
    cause = new_request_cause()
    explicit = uuid.uuid4()
    with using_cause(cause):
        filled = stamp(NewEvent(event=EVENT))
        kept = stamp(NewEvent(event=EVENT, causation_id=explicit))
    assert filled.causation_id == filled.correlation_id == cause.causation_id
    assert kept.causation_id == explicit and kept.correlation_id == cause.correlation_id
    assert current_cause() is None


async def test_the_work_queue_reconciles_under_the_cause_that_added_the_key() -> None:
    seen: dict[str, Cause | None] = {}
    done = asyncio.Event()

    async def reconcile(key: str) -> None:
        seen[key] = current_cause()
        if len(seen) == 2:
            done.set()

    queue = WorkQueue(reconcile, workers=2)
    stop = asyncio.Event()
    runner = asyncio.create_task(queue.run(stop))
    cause = Cause(uuid.uuid4(), uuid.uuid4())
    with using_cause(cause):
        queue.add("woken-by-an-event")
    queue.add("resync")
    await asyncio.wait_for(done.wait(), 10)
    stop.set()
    await runner
    woken = seen["woken-by-an-event"]
    assert woken is not None and woken.causation_id == cause.causation_id
    assert woken.correlation_id == cause.correlation_id
    assert seen["resync"] is None
