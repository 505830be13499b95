"""Causation in-process: the contextvar, stamping, and the work queue carrying a cause from the
handler that woke a key to the reconcile that runs later on another task."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from libs.events.causation import Cause, current_cause, new_request_cause, stamp, using_cause
from libs.events.envelope import NewEvent, RecordedEvent
from libs.events.types import ServiceRequested
from libs.runtime.latest_causes import LatestCauses
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


async def test_a_resync_reconcile_carries_the_cause_of_its_keys_latest_event() -> None:
    """A resync may reconcile a service before the bus message of the change it acts on arrives:
    its appends must still be caused by (and traced under) that change, not start a trace."""
    latest = LatestCauses(limit=2)
    request = uuid.uuid4()
    traced = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}

    def recorded(service: str, position: int, **kw: Any) -> RecordedEvent:
        return RecordedEvent(
            event_id=uuid.uuid4(), stream_id=f"service-{service}", version=1, position=position,
            event_type="ServiceRequested", event=ServiceRequested(service=service),
            occurred_at=datetime.now(UTC), **kw,
        )  # fmt: skip

    first = recorded("s", 1, causation_id=request, correlation_id=request, trace=traced)
    caused = {"causation_id": request}
    latest.observe([first, recorded("t", 2, **caused), recorded("u", 3, **caused)])
    assert latest.get("t") is not None and latest.get("s") is None  # over the limit: oldest forgotten
    latest.observe([first, recorded("s", 4)])  # a loop's event (no cause, e.g. a tick's ScaleDecided)
    seen: list[Cause | None] = []
    done = asyncio.Event()

    async def reconcile(key: str) -> None:
        seen.append(current_cause())
        done.set()

    queue = WorkQueue(reconcile, workers=1, cause_for=latest.get)
    stop = asyncio.Event()
    runner = asyncio.create_task(queue.run(stop))
    queue.add("s")  # no cause in context: a resync
    await asyncio.wait_for(done.wait(), 10)
    stop.set()
    await runner
    assert seen[0] is not None
    assert (seen[0].causation_id, seen[0].correlation_id) == (first.event_id, request)
    assert seen[0].trace == traced
