"""Leases: one leader per name, taken over within the ttl when the leader stops renewing."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from libs.events.leases import Lease, live_holder
from libs.events.store import EventStore


async def test_one_leader_and_a_takeover_within_the_ttl_of_a_silent_leader(store: EventStore) -> None:
    a = Lease(store.pool, "job", "a", ttl=1.0, renew=0.2)
    b = Lease(store.pool, "job", "b", ttl=1.0, renew=0.2)
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    run_a = asyncio.create_task(a.run(stop_a))
    assert await asyncio.wait_for(a.wait_leading(stop_a), 5)
    run_b = asyncio.create_task(b.run(stop_b))
    await asyncio.sleep(0.6)
    assert a.leading and not b.leading and await live_holder(store.pool, "job") == "a"
    # a goes silent (a partition, SIGSTOP): no renewal, no release.
    run_a.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run_a
    silent_at = time.monotonic()
    assert await asyncio.wait_for(b.wait_leading(stop_b), 5)
    took = time.monotonic() - silent_at
    assert took < 2.0 and not a.leading  # a stopped counting itself leader before b started
    assert b.term == a.term + 1
    stop_b.set()
    await asyncio.wait_for(run_b, 5)
    assert await live_holder(store.pool, "job") is None  # released on stop: no ttl to wait


async def test_a_leader_that_stops_renewing_stops_leading_on_its_own_clock(store: EventStore) -> None:
    a = Lease(store.pool, "job2", "a", ttl=0.5, renew=0.1)
    assert await a.try_acquire() and a.leading
    await asyncio.sleep(0.55)  # no renewal: e.g. the process was paused
    assert not a.leading


def test_renew_must_be_shorter_than_the_ttl(store: EventStore) -> None:
    with pytest.raises(ValueError, match="shorter than the ttl"):
        Lease(store.pool, "x", "a", ttl=1.0, renew=1.0)
