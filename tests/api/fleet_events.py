"""What the other services would record about a service, appended straight to the store."""

from __future__ import annotations

from libs.events.store import EventStore
from libs.events.types import (
    EndpointAssigned,
    Placement,
    ReplicaFailed,
    ReplicaLaunched,
    ReplicaProvisioningStarted,
    ReplicaReady,
    ReplicaScheduled,
    ScaleDecided,
    ServiceTerminated,
    replica_stream,
    service_stream,
)

GCP_SPOT_L4 = Placement(
    cloud="gcp", region="us-east4", zone="us-east4-a", accelerators={"L4": 1.0}, use_spot=True
)


async def launch_replica(
    store: EventStore, service: str, replica_id: int, *, ready: bool = True, version: int = 1,
    placement: Placement = GCP_SPOT_L4, ip: str = "10.0.0.1",
) -> int:  # fmt: skip
    """Scheduled -> provisioning -> launched (-> ready); returns the last position."""
    stream = replica_stream(service, replica_id)
    events = [
        ReplicaScheduled(service=service, replica_id=replica_id, version=version, placement=placement),
        ReplicaProvisioningStarted(service=service, replica_id=replica_id, placement=placement),
        ReplicaLaunched(
            service=service, replica_id=replica_id, instance_id=f"i-{replica_id}", url=f"http://{ip}:8080",
            placement=placement,
        ),
    ]  # fmt: skip
    if ready:
        events.append(
            ReplicaReady(service=service, replica_id=replica_id, url=f"http://{ip}:8080", version=version)
        )
    result = await store.append(stream, events)
    return result.last_position


async def schedule_replica(store: EventStore, service: str, replica_id: int) -> int:
    result = await store.append(
        replica_stream(service, replica_id), [ReplicaScheduled(service=service, replica_id=replica_id)]
    )
    return result.last_position


async def fail_replica(store: EventStore, service: str, replica_id: int, reason: str) -> int:
    result = await store.append(
        replica_stream(service, replica_id),
        [ReplicaFailed(service=service, replica_id=replica_id, status="FAILED_PROBING", reason=reason)],
    )
    return result.last_position


async def assign_endpoint(store: EventStore, service: str, endpoint: str = "http://127.0.0.1:30001") -> int:
    result = await store.append(
        service_stream(service), [EndpointAssigned(service=service, endpoint=endpoint)]
    )
    return result.last_position


async def decide_scale(store: EventStore, service: str, target: int, reason: str) -> int:
    result = await store.append(
        service_stream(service), [ScaleDecided(service=service, target=target, reason=reason)]
    )
    return result.last_position


async def terminate_service(store: EventStore, service: str) -> int:
    result = await store.append(service_stream(service), [ServiceTerminated(service=service, reason="down")])
    return result.last_position
