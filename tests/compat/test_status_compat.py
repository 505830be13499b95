"""Service statuses as SkyServe 0.14.1 defines them (``ServiceStatus.from_replica_statuses``),
with Stratus's reason beside."""

from __future__ import annotations

from libs.events.types import EndpointAssigned, Event, ReplicaFailed, ReplicaScheduled, ServiceRequested
from libs.fleet import fold_events
from libs.fleet.status import GAVE_UP, service_status
from libs.spec import load_spec, spec_to_dict


def _status(yaml: str, *events: Event) -> tuple[str, str]:
    spec = spec_to_dict(load_spec(yaml))
    recorded = [
        ServiceRequested(service="s", spec=spec),
        EndpointAssigned(service="s", endpoint="h:1"),
        *events,
    ]
    state = fold_events([(e, float(i)) for i, e in enumerate(recorded)])
    report = service_status(state.services["s"])
    return report.status, report.reason


FIXED_ZERO = "service: {replicas: 0}\nresources: {ports: 8080}\nrun: serve\n"
ONE = "service: {replicas: 1}\nresources: {ports: 8080}\nrun: serve\n"


def test_no_replica_for_replicas_zero() -> None:
    status, reason = _status(FIXED_ZERO)
    assert status == "NO_REPLICA" and "replicas: 0" in reason


def test_failed_while_retrying_and_when_given_up() -> None:
    failed = ReplicaFailed(service="s", replica_id=1, status="FAILED_PROBING", reason="GET / 500")
    status, reason = _status(ONE, ReplicaScheduled(service="s", replica_id=1), failed)
    assert status == "FAILED" and "GET / 500" in reason and GAVE_UP not in reason
    three = [
        e
        for rid in (1, 2, 3)
        for e in (
            ReplicaScheduled(service="s", replica_id=rid),
            ReplicaFailed(service="s", replica_id=rid, status="FAILED_INITIAL_DELAY", reason="never ready"),
        )
    ]
    status, reason = _status(ONE, *three)
    assert status == "FAILED" and GAVE_UP in reason
