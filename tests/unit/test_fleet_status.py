from __future__ import annotations

from typing import Any

import pytest
from fleet_builders import NAME, R, build, spec

from libs.events.types import (
    Event,
    ReplicaFailed,
    ReplicaLaunchFailed,
    ReplicaScheduled,
    ReplicaTerminated,
    ReplicaTerminationRequested,
    ScaleDecided,
    ServiceDownRequested,
    ServiceTerminated,
)
from libs.fleet import (
    Failure,
    LaunchFailure,
    ProcessExit,
    ReplicaState,
    TerminationRequest,
    ready_spot,
    replica_status,
    service_status,
    serving_replicas,
)

LAUNCHED: dict[str, Any] = {"scheduled_at": 1.0, "provisioning_at": 2.0, "launched_at": 3.0}


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({"scheduled_at": 1.0}, "PENDING"),
        ({"scheduled_at": 1.0, "provisioning_at": 2.0}, "PROVISIONING"),
        (LAUNCHED, "STARTING"),
        ({**LAUNCHED, "ready_at": 4.0}, "READY"),
        ({**LAUNCHED, "ready_at": 4.0, "not_ready_at": 5.0}, "NOT_READY"),
        ({**LAUNCHED, "ready_at": 4.0, "termination": TerminationRequest(at=6.0)}, "SHUTTING_DOWN"),
        ({**LAUNCHED, "termination": TerminationRequest(), "terminated_at": 7.0}, "TERMINATED"),
        ({**LAUNCHED, "exited": ProcessExit(exit_code=1)}, "FAILED"),
        ({**LAUNCHED, "exited": ProcessExit(exit_code=0, expected=True), "termination": TerminationRequest()},
         "SHUTTING_DOWN"),
        ({**LAUNCHED, "failed": Failure(status="FAILED_INITIAL_DELAY")}, "FAILED_INITIAL_DELAY"),
        ({**LAUNCHED, "ready_at": 4.0, "failed": Failure(status="FAILED_PROBING")}, "FAILED_PROBING"),
        ({"scheduled_at": 1.0, "launch_failed": LaunchFailure(kind="quota")}, "FAILED_PROVISION"),
        ({**LAUNCHED, "ready_at": 4.0, "preempted_at": 5.0}, "PREEMPTED"),
        # precedence
        ({**LAUNCHED, "preempted_at": 5.0, "termination": TerminationRequest(), "terminated_at": 8.0},
         "PREEMPTED"),
        ({**LAUNCHED, "failed": Failure(status="FAILED_PROBING"), "exited": ProcessExit(exit_code=137)},
         "FAILED_PROBING"),
        ({**LAUNCHED, "failed": Failure(status="FAILED_PROBING"), "termination": TerminationRequest()},
         "FAILED_PROBING"),
        ({**LAUNCHED, "exited": ProcessExit(exit_code=1), "terminated_at": 9.0, "cleanup_error": "stuck"},
         "FAILED_CLEANUP"),
        ({**LAUNCHED, "preempted_at": 5.0, "terminated_at": 9.0, "cleanup_error": "stuck"}, "FAILED_CLEANUP"),
    ],
)  # fmt: skip
def test_replica_status_from_facts(facts: dict[str, Any], expected: str) -> None:
    assert replica_status(ReplicaState(replica_id=1, **facts)) == expected


@pytest.mark.parametrize(
    "status",
    [
        "PENDING", "PROVISIONING", "STARTING", "READY", "NOT_READY", "SHUTTING_DOWN", "FAILED",
        "FAILED_INITIAL_DELAY", "FAILED_PROBING", "FAILED_PROVISION", "FAILED_CLEANUP", "PREEMPTED",
    ],
)  # fmt: skip
def test_replica_status_from_folded_events(status: str) -> None:
    svc = build(spec(1), [R(1, status, spot=status == "PREEMPTED")])
    assert replica_status(svc.replicas[1]) == status


def _failures(n: int, start: int = 1) -> list[R]:
    kinds = ["FAILED", "FAILED_INITIAL_DELAY", "FAILED_PROVISION"]
    return [R(start + i, kinds[i % 3]) for i in range(n)]


DOWN: list[Event] = [ServiceDownRequested(service=NAME)]


def _terminate(*rids: int, error: str = "") -> list[Event]:
    out: list[Event] = []
    for rid in rids:
        out += [
            ReplicaTerminationRequested(service=NAME, replica_id=rid),
            ReplicaTerminated(service=NAME, replica_id=rid, cleanup_error=error),
        ]
    return out


@pytest.mark.parametrize(
    ("case", "kwargs", "status", "reason_has"),
    [
        ("no endpoint yet", {"replicas": [R(1, "STARTING")], "endpoint": False}, "CONTROLLER_INIT",
         "endpoint"),
        ("starting", {"replicas": [R(1, "PENDING"), R(2, "STARTING")]}, "REPLICA_INIT",
         "1 PENDING, 1 STARTING"),
        ("one ready", {"replicas": [R(1, "READY"), R(2, "STARTING")]}, "READY", "1 of 2 replicas READY"),
        ("ready despite a failure", {"replicas": [R(1, "READY"), R(2, "FAILED")]}, "READY", "1 of 2"),
        ("not ready only", {"replicas": [R(1, "NOT_READY")], "the_spec": spec(1)}, "REPLICA_INIT",
         "1 NOT_READY"),
        ("scaled to zero",
         {"the_spec": spec(min_replicas=0, max_replicas=3, qps=1.0),
          "scale": ScaleDecided(service=NAME, target=0)}, "NO_REPLICA", "scaled to zero"),
        # SkyServe: a replica failed and none is READY -> FAILED; Stratus's reason says it retries.
        ("one failure, retrying", {"replicas": [R(1, "FAILED")], "the_spec": spec(1)}, "FAILED",
         "replica 1 FAILED: run exited with code 1; retrying"),
        ("gave up", {"replicas": _failures(3), "the_spec": spec(1)}, "FAILED",
         "replica 3 FAILED_PROVISION: other: boom; 3 consecutive failures"),
        ("gave up while one still starts", {"replicas": [*_failures(3), R(4, "STARTING")]}, "FAILED",
         "stopped launching"),
        ("shutting down", {"replicas": [R(1, "READY")], "extra": DOWN}, "SHUTTING_DOWN", "1 replica(s)"),
        ("terminated", {"replicas": [R(1, "READY")],
                        "extra": [*DOWN, *_terminate(1), ServiceTerminated(service=NAME, reason="down")]},
         "TERMINATED", "down"),
        ("cleanup failed", {"replicas": [R(1, "READY")],
                            "extra": [*DOWN, *_terminate(1, error="vm stuck"),
                                      ServiceTerminated(service=NAME)]},
         "FAILED_CLEANUP", "replica 1 FAILED_CLEANUP: cleanup failed: vm stuck"),
        ("broken update keeps old", {
            "replicas": [R(1, "READY"), R(2, "READY"), R(3, "FAILED", version=2), R(4, "FAILED", version=2),
                         R(5, "FAILED", version=2)],
            "updates": [(2, "rolling", spec())]},
         "READY", "version 2 failed (3 consecutive failures without a READY replica; last: replica 5 FAILED"),
        ("blue-green warming", {
            "replicas": [R(1, "READY"), R(2, "READY", version=2)], "updates": [(2, "blue_green", spec())]},
         "READY", "blue-green update to version 2: 1 READY"),
    ],
)  # fmt: skip
def test_service_status(case: str, kwargs: dict[str, Any], status: str, reason_has: str) -> None:
    report = service_status(build(**kwargs))
    assert report.status == status, report
    assert reason_has in report.reason, report


def test_capacity_failures_never_give_up() -> None:
    extra: list[Event] = []
    for rid in range(1, 6):
        extra += [
            ReplicaScheduled(service=NAME, replica_id=rid),
            ReplicaLaunchFailed(service=NAME, replica_id=rid, kind="capacity", message="no A100"),
        ]
    svc = build(spec(1), extra=extra)
    assert svc.consecutive_failures == 0
    assert svc.latest.retry_failures == 5
    status = service_status(svc)  # SkyServe's FAILED (failed replicas, none READY); still launching
    assert status.status == "FAILED" and "stopped launching" not in status.reason


def test_ready_resets_failures() -> None:
    svc = build(spec(1), [*_failures(2), R(3, "READY"), R(4, "FAILED"), R(5, "FAILED"), R(6, "FAILED")])
    # Once a replica was READY the version never gives up (retries are only delayed).
    assert svc.consecutive_failures == 3
    assert service_status(svc).status == "READY"


def test_serving_replicas_and_ready_spot() -> None:
    svc = build(
        spec(2, use_spot=True),
        [R(1, "READY", spot=True), R(2, "SHUTTING_DOWN", spot=True), R(3, "READY"), R(4, "READY", version=2),
         R(5, "NOT_READY", spot=True)],
        updates=[(2, "blue_green", spec(2, use_spot=True))],
    )  # fmt: skip
    assert [r.replica_id for r in serving_replicas(svc)] == [1, 3]  # version 2 not switched yet
    assert ready_spot(svc) == 0  # launch version is 2: its READY replica is on-demand
    assert ready_spot(build(spec(2, use_spot=True), [R(1, "READY", spot=True), R(2, "READY")])) == 1


def test_failure_reason_from_replica_failed() -> None:
    svc = build(spec(1), [R(1, "STARTING")], extra=[
        ReplicaFailed(
            service=NAME, replica_id=1, status="FAILED_INITIAL_DELAY", reason="not ready after 1200s"
        ),
    ])  # fmt: skip
    assert svc.failure_reason == "replica 1 FAILED_INITIAL_DELAY: not ready after 1200s"


def test_exit_reason_is_the_workloads_last_line_not_the_providers_marker() -> None:
    from libs.events.types import ReplicaProcessExited
    from libs.fleet import describe_failure

    marker = "[stratus] 2026-01-01T00:00:00Z ===== run exited with code 3 ====="
    tail = f"loading...\nboom: no model weights\n{marker}\n"
    svc = build(
        spec(1),
        [R(1, "STARTING")],
        extra=[ReplicaProcessExited(service=NAME, replica_id=1, exit_code=3, log_tail=tail)],
    )
    want = "replica 1 FAILED: run exited with code 3 (boom: no model weights)"
    assert describe_failure(svc.replicas[1]) == want
