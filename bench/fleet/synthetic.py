"""A synthetic fleet log: ``synthetic(n)`` is n recorded events of a realistic mix (replica
lifecycles with probes, preemptions, failures, scale decisions and QPS samples across many
services), for the benchmarks (bench/fleet/fold.py, bench/events) and the fold's tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from libs.events.envelope import RecordedEvent
from libs.events.types import (
    EndpointAssigned,
    Event,
    Placement,
    Preempted,
    ProbeFailed,
    QpsSampled,
    ReplicaFailed,
    ReplicaLaunched,
    ReplicaNotReady,
    ReplicaProvisioningStarted,
    ReplicaReady,
    ReplicaScheduled,
    ReplicaTerminated,
    ReplicaTerminationRequested,
    ScaleDecided,
    ServiceRequested,
    event_tag,
)

SPEC = {
    "service": {
        "readiness_path": "/health",
        "min_replicas": 2,
        "max_replicas": 8,
        "target_qps_per_replica": 2,
    },
    "resources": {"use_spot": True, "ports": [8080], "accelerators": {"A10G": 1}},
}


def synthetic(n: int, services: int = 500) -> list[RecordedEvent]:
    events: list[Event] = []
    for s in range(services):
        name = f"svc-{s}"
        events.append(ServiceRequested(service=name, spec=SPEC))
        events.append(EndpointAssigned(service=name, endpoint=f"http://127.0.0.1:{30000 + s}"))
    rid: dict[str, int] = {}
    spot = Placement(cloud="aws", region="us-east-1", zone="us-east-1a", use_spot=True)
    i = 0
    while len(events) < n:
        name = f"svc-{i % services}"
        r = rid[name] = rid.get(name, 0) + 1
        i += 1
        events += [
            ReplicaScheduled(service=name, replica_id=r, placement=spot),
            ReplicaProvisioningStarted(service=name, replica_id=r),
            ReplicaLaunched(service=name, replica_id=r, instance_id=f"i-{r}", url="http://10.0.0.1:8080"),
            ReplicaReady(service=name, replica_id=r),
            *(QpsSampled(service=name, router_id="r1", window_start=i, window_seconds=10, requests=5)
              for _ in range(4)),
            ProbeFailed(service=name, replica_id=r, reason="HTTP 500"),
            ReplicaNotReady(service=name, replica_id=r, reason="HTTP 500"),
            ReplicaReady(service=name, replica_id=r),
            ScaleDecided(service=name, target=3, spot=3, reason="qps"),
        ]  # fmt: skip
        if i % 3 == 0:
            events.append(Preempted(service=name, replica_id=r, placement=spot))
        elif i % 3 == 1:
            events.append(ReplicaFailed(service=name, replica_id=r, status="FAILED_PROBING", reason="x"))
        events += [
            ReplicaTerminationRequested(service=name, replica_id=r, reason="done"),
            ReplicaTerminated(service=name, replica_id=r),
        ]
    events = events[:n]
    base = 1_700_000_000.0
    return [
        RecordedEvent(
            event_id=uuid.UUID(int=k + 1),
            stream_id=f"service-{e.service}",
            version=k + 1,
            position=k + 1,
            event_type=event_tag(e),
            event=e,
            occurred_at=datetime.fromtimestamp(base + k * 0.01, UTC),
        )
        for k, e in enumerate(events)
    ]
