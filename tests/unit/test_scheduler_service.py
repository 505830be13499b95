"""The scheduler service (services/scheduler/main.py) on a real event store: enabled clouds from
CloudsChecked, a pinned cloud that is not enabled waits with a recorded reason, capacity failover
recorded as events. Reconciles are driven (no bus), the projection follows the real log."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from msgspec.structs import replace

from libs.catalog import Offer
from libs.catalog.load import override_path
from libs.events.projection import LiveProjection
from libs.events.store import EventStore
from libs.events.types import (
    CLOUDS_STREAM,
    CloudsChecked,
    EndpointAssigned,
    PlacementUnavailable,
    ReplicaLaunchFailed,
    ReplicaProvisioningStarted,
    ReplicaScheduled,
    ReplicaTerminationRequested,
    ServiceRequested,
    replica_stream,
    service_stream,
)
from libs.fleet import service_status
from libs.fleet.projection import FLEET
from libs.runtime.host import ServiceHost
from libs.runtime.settings import Settings
from libs.spec import load_spec, spec_to_dict
from services.scheduler.main import Scheduler
from services.scheduler.plan import SchedulerConfig

SPEC = """
service:
  readiness_probe: /
  replicas: 1
resources:
  cloud: aws
  accelerators: A10G:1
  ports: 8080
run: python3 -m http.server 8080
"""
CATALOG = tuple(
    Offer(
        cloud="aws",
        region=r,
        zone=z,
        instance_type="g5.xlarge",
        accelerator="A10G",
        accelerator_count=1,
        vcpus=4,
        memory_gib=16,
        price=p,
        spot_price=p / 2,
    )
    for r, z, p in (
        ("us-east-1", "use1-az1", 1.0),
        ("us-east-1", "use1-az2", 1.01),
        ("us-west-2", "usw2-az1", 1.1),
    )
)


@pytest.fixture
async def scheduler(store: EventStore, fresh_db_url: str, tmp_path: Path) -> AsyncIterator[Scheduler]:
    host = ServiceHost("scheduler", Settings(home=tmp_path, database_url=fresh_db_url))
    host._store = store
    host._fleet = LiveProjection(FLEET, store, poll_interval=0.05)
    await host._fleet.start()
    yield Scheduler(host, SchedulerConfig(catalog=CATALOG, retry_backoff_seconds=0.0))
    await host._fleet.stop()


async def _append(s: Scheduler, stream: str, *events: object) -> None:
    res = await s.host.store.append(stream, list(events))  # type: ignore[arg-type]
    await s.host.fleet.wait_for(res.last_position, 5.0)


async def test_pinned_cloud_waits_then_places_and_fails_over(scheduler: Scheduler) -> None:
    s, name = scheduler, "svc"
    spec = spec_to_dict(load_spec(SPEC))
    await _append(s, service_stream(name), ServiceRequested(service=name, spec=spec))
    await _append(s, service_stream(name), EndpointAssigned(service=name, endpoint="http://127.0.0.1:30001"))
    await _append(s, CLOUDS_STREAM, CloudsChecked(service="", enabled=[], disabled={"aws": "no credentials"}))
    await s.reconcile(name)
    await s.reconcile(name)  # level-triggered: the same reason is not recorded twice
    waits = [
        r.event
        for r in await s.host.store.read_stream(service_stream(name))
        if isinstance(r.event, PlacementUnavailable)
    ]
    assert len(waits) == 1 and "cloud aws is not enabled (no credentials)" in waits[0].reason
    svc = s.host.fleet.state.services[name]
    assert "cannot place a replica: A10G:1 on aws: cloud aws is not enabled" in service_status(svc).reason

    await _append(s, CLOUDS_STREAM, CloudsChecked(service="", enabled=["aws"]))
    await s.reconcile(name)
    (first,) = [r.event for r in await s.host.store.read_stream(replica_stream(name, 1))]
    assert isinstance(first, ReplicaScheduled)
    assert (first.placement.cloud, first.placement.zone, first.placement.price_per_hour) == (
        "aws",
        "use1-az1",
        1.0,
    )
    assert s.host.fleet.state.services[name].placement_wait == ""

    # The provisioner reports a capacity failure: the replacement goes to the next cheapest zone.
    failed = ReplicaLaunchFailed(
        service=name,
        replica_id=1,
        kind="capacity",
        placement=first.placement,
        message="InsufficientInstanceCapacity: no g5.xlarge in use1-az1",
    )
    await _append(s, replica_stream(name, 1), ReplicaProvisioningStarted(service=name, replica_id=1), failed)
    await s.reconcile(name)
    story = [r.event for r in await s.host.store.read_stream(replica_stream(name, 1))]
    assert isinstance(story[-1], ReplicaTerminationRequested)
    (second,) = [r.event for r in await s.host.store.read_stream(replica_stream(name, 2))]
    assert isinstance(second, ReplicaScheduled) and second.placement.zone == "use1-az2"
    assert (
        "blocked until retried: aws/us-east-1/use1-az1 g5.xlarge capacity (InsufficientInstanceCapacity"
        in (second.reason)
    )
    assert s.host.fleet.state.services[name].replicas[2].placement_reason == second.reason


async def test_a_refreshed_catalog_is_used_without_a_restart(scheduler: Scheduler, tmp_path: Path) -> None:
    s, name = scheduler, "svc"
    s.catalog_home = tmp_path
    header = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,SpotPrice,Region,"
    header += "AvailabilityZone"
    path = override_path(tmp_path, "aws")
    path.parent.mkdir(parents=True)
    path.write_text(f"{header}\ng5.xlarge,A10G,1.0,4.0,16.0,0.55,0.2,eu-west-1,euw1-az1\n")
    spec = spec_to_dict(load_spec(SPEC.replace("replicas: 1", "replicas: 2")))
    await _append(s, service_stream(name), ServiceRequested(service=name, spec=spec))
    await _append(s, CLOUDS_STREAM, CloudsChecked(service="", enabled=["aws"]))
    s.config = replace(s.config, max_concurrent_launches=1)
    await s.reconcile(name)
    (first,) = [r.event for r in await s.host.store.read_stream(replica_stream(name, 1))]
    assert isinstance(first, ReplicaScheduled)
    assert (first.placement.zone, first.placement.price_per_hour) == ("euw1-az1", 0.55)
    # `stratus catalog refresh` rewrote the file: the next placement reads the new price.
    path.write_text(f"{header}\ng5.xlarge,A10G,1.0,4.0,16.0,0.66,0.2,eu-west-1,euw1-az2\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # a distinct mtime, however coarse the clock
    s.config = replace(s.config, max_concurrent_launches=2)
    await s.reconcile(name)
    (second,) = [r.event for r in await s.host.store.read_stream(replica_stream(name, 2))]
    assert isinstance(second, ReplicaScheduled)
    assert (second.placement.zone, second.placement.price_per_hour) == ("euw1-az2", 0.66)
