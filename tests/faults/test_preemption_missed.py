"""A ``PreemptionRequested`` recorded while every provisioner was down (its bus message never
delivered: here no relay runs at all) is acted on when provisioners start, exactly once even
when two start together; a claim whose holder died is taken over. The whole stack's version of
this (kill -9 both provisioners, the bus message removed, the replica replaced) is the fault
matrix's ``preempt-while-provisioners-down`` case."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from libs.events.envelope import RecordedEvent
from libs.events.store import EventStore
from libs.events.types import (
    Event,
    Preempted,
    PreemptionRequested,
    PreemptionStarted,
    ReplicaLaunched,
    ReplicaScheduled,
    ServiceRequested,
    replica_stream,
    service_stream,
)
from services.provisioner.main import Provisioner
from services.provisioner.preemption import Decision, decide
from tests.fakes.provider import SPEC, FakeCloud, provisioner_on, record_fleet


def counting() -> FakeCloud:
    """Instances that run until preempted; every preempt call counted (shared by provisioners)."""
    return FakeCloud(preempt_seconds=0.05)


async def provisioner(store: EventStore, home: Path, cloud: FakeCloud) -> Provisioner:
    prov = await provisioner_on(store, home, cloud)
    prov.claims.lease.pool = store.pool
    assert await prov.claims.lease.try_acquire()  # alive, as a running provisioner's lease is
    return prov


@pytest.fixture
async def fleet(store: EventStore) -> AsyncIterator[None]:
    await record_fleet(store)
    yield


async def stopped(*provs: Provisioner) -> None:
    for p in provs:
        await p.host.fleet.stop()


async def kinds(store: EventStore, rid: int) -> list[str]:
    return [type(r.event).__name__ for r in await store.read_stream(replica_stream("web", rid))]


async def test_a_preemption_requested_while_no_provisioner_ran_is_acted_on_once(
    store: EventStore, fleet: None, tmp_path: Path
) -> None:
    # Requested while every provisioner is down: no provisioner, no relay, no bus message.
    head = await store.append(replica_stream("web", 1), [PreemptionRequested(service="web", replica_id=1)])
    cloud = counting()
    a = await provisioner(store, tmp_path / "a", cloud)
    b = await provisioner(store, tmp_path / "b", cloud)
    try:
        for p in (a, b):
            await p.host.fleet.wait_for(head.last_position, 10)
        # Both start at once: each reconciles every service from its projection (on_started).
        await asyncio.gather(a.reconcile("web"), b.reconcile("web"))
        assert cloud.preempts == ["i-1"]  # once, by one of them; replica 2 untouched
        await asyncio.gather(a.reconcile("web"), b.reconcile("web"))  # and not again
        assert cloud.preempts == ["i-1"]
        started = [r.event for r in await store.read_stream(replica_stream("web", 1))
                   if isinstance(r.event, PreemptionStarted)]  # fmt: skip
        assert len(started) == 1 and started[0].claimed_by in (a.claims.me, b.claims.me)
        await a.monitor()  # the provider says PREEMPTED: recorded, so the scheduler replaces it
        await b.monitor()
        assert (await kinds(store, 1)).count("Preempted") == 1
        await a.host.fleet.wait_for(await store.last_position(), 10)
        state = a.host.fleet.state.services["web"]
        assert state.replicas[1].preempted_at is not None and state.replicas[2].preempted_at is None
    finally:
        await stopped(a, b)


async def test_a_claim_whose_holder_died_is_taken_over(
    store: EventStore, fleet: None, tmp_path: Path
) -> None:
    dead = f"provisioner@gone:1:{uuid.uuid4().hex[:6]}"  # never held a lease: as one expired
    await store.append(replica_stream("web", 2), [
        PreemptionRequested(service="web", replica_id=2),
        PreemptionStarted(service="web", replica_id=2, instance_id="i-2", claimed_by=dead),
    ])  # fmt: skip
    cloud = counting()
    a = await provisioner(store, tmp_path / "a", cloud)
    try:
        await a.host.fleet.wait_for(await store.last_position(), 10)
        await a.reconcile("web")
        assert cloud.preempts == ["i-2"]
        claims = [r.event.claimed_by for r in await store.read_stream(replica_stream("web", 2))
                  if isinstance(r.event, PreemptionStarted)]  # fmt: skip
        assert claims == [dead, a.claims.me]
    finally:
        await stopped(a)


async def test_a_live_claim_of_another_instance_is_left_to_it(
    store: EventStore, fleet: None, tmp_path: Path
) -> None:
    cloud = counting()
    a = await provisioner(store, tmp_path / "a", cloud)
    b = await provisioner(store, tmp_path / "b", cloud)
    try:
        await store.append(replica_stream("web", 1), [
            PreemptionRequested(service="web", replica_id=1),
            PreemptionStarted(service="web", replica_id=1, instance_id="i-1", claimed_by=b.claims.me),
        ])  # fmt: skip
        await a.host.fleet.wait_for(await store.last_position(), 10)
        await a.reconcile("web")
        assert cloud.preempts == []  # b is alive: it acts (or its claim expires with its lease)
    finally:
        await stopped(a, b)


def rec(event: Event, version: int) -> RecordedEvent:
    return RecordedEvent(
        event=event, position=version, stream_id="replica-web-1", version=version,
        event_type=type(event).__name__, event_id=uuid.uuid4(), occurred_at=datetime.now(UTC),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("events", "decision"),
    [
        ([], Decision(act=False)),  # nothing requested
        ([PreemptionRequested(service="web", replica_id=1)], Decision(act=True)),
        (
            [PreemptionRequested(service="web", replica_id=1),
             PreemptionStarted(service="web", replica_id=1, instance_id="i-1", claimed_by="me")],
            Decision(act=True, claimed=True),  # ours: the provider again (it is idempotent)
        ),
        (
            [PreemptionRequested(service="web", replica_id=1),
             PreemptionStarted(service="web", replica_id=1, instance_id="i-1", claimed_by="other")],
            Decision(act=False, holder="other"),
        ),
        (
            [PreemptionRequested(service="web", replica_id=1),
             Preempted(service="web", replica_id=1, instance_id="i-1")],
            Decision(act=False),  # done
        ),
    ],
)  # fmt: skip
def test_decide(events: list[Event], decision: Decision) -> None:
    records = [rec(e, i + 1) for i, e in enumerate(events)]
    assert decide(records, "i-1", "me") == decision


async def test_a_preemption_requested_before_the_launch_is_acted_on_once_launched(
    store: EventStore, tmp_path: Path
) -> None:
    """Requested while the replica was still PROVISIONING (no instance to preempt yet): before,
    the message was dropped with a warning; now the projection keeps the request."""
    await store.append(service_stream("web"), [ServiceRequested(service="web", spec=SPEC)])
    await store.append(replica_stream("web", 1), [
        ReplicaScheduled(service="web", replica_id=1),
        PreemptionRequested(service="web", replica_id=1),
        ReplicaLaunched(service="web", replica_id=1, instance_id="i-1", url="http://127.0.0.1:1"),
    ])  # fmt: skip
    cloud = counting()
    a = await provisioner(store, tmp_path / "a", cloud)
    try:
        await a.host.fleet.wait_for(await store.last_position(), 10)
        await a.reconcile("web")
        assert cloud.preempts == ["i-1"]
    finally:
        await stopped(a)
