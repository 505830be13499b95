from __future__ import annotations

import pytest

from libs.events.types import Event, ProbeFailed, ReplicaFailed, ReplicaNotReady, ReplicaReady
from libs.fleet import ProbePolicy
from services.prober.decide import ProbeResult, ProbeState, classify_error, classify_status, decide
from services.prober.errors import (
    ProbeError,
    ProbeInvalidResponse,
    ProbeRefused,
    ProbeReset,
    ProbeTimeout,
    ProbeTransportError,
)

POLICY = ProbePolicy(initial_delay_seconds=100.0, failure_threshold_seconds=30.0)
OK = ProbeResult.success()


def bad(reason: str = "HTTP 500") -> ProbeResult:
    return ProbeResult.failure(reason)


def short(e: Event) -> str:
    if isinstance(e, ReplicaFailed):
        return f"Failed:{e.status}"
    if isinstance(e, ProbeFailed):
        return f"ProbeFailed:{e.consecutive_failures}"
    return type(e).__name__.removeprefix("Replica")


CASES: list[tuple[str, list[tuple[float, ProbeResult]], list[list[str]]]] = [
    ("failures ignored during the initial delay", [(10, bad()), (50, bad()), (99, bad())], [[], [], []]),
    ("first success is ready", [(10, bad()), (20, OK), (30, OK)], [[], ["Ready"], []]),
    ("never ready past the initial delay", [(10, bad()), (100, bad("connection refused")), (110, bad())],
     [[], ["Failed:FAILED_INITIAL_DELAY"], []]),
    ("ready then failing: not ready once, probe failed each",
     [(10, OK), (20, bad()), (25, bad()), (30, bad())],
     [["Ready"], ["ProbeFailed:1", "NotReady"], ["ProbeFailed:2"], ["ProbeFailed:3"]]),
    ("recovers: ready again", [(10, OK), (20, bad()), (30, OK), (40, bad())],
     [["Ready"], ["ProbeFailed:1", "NotReady"], ["Ready"], ["ProbeFailed:1", "NotReady"]]),
    ("failing for the threshold: FAILED_PROBING", [(10, OK), (20, bad()), (40, bad()), (50, bad()), (60, OK)],
     [["Ready"], ["ProbeFailed:1", "NotReady"], ["ProbeFailed:2"], ["ProbeFailed:3", "Failed:FAILED_PROBING"],
      []]),
    ("a success resets the threshold clock", [(10, OK), (20, bad()), (45, OK), (46, bad()), (70, bad())],
     [["Ready"], ["ProbeFailed:1", "NotReady"], ["Ready"], ["ProbeFailed:1", "NotReady"], ["ProbeFailed:2"]]),
    ("ready inside the delay, failing after: probing rules", [(10, OK), (150, bad()), (181, bad())],
     [["Ready"], ["ProbeFailed:1", "NotReady"], ["ProbeFailed:2", "Failed:FAILED_PROBING"]]),
]  # fmt: skip


@pytest.mark.parametrize(("case", "results", "expected"), CASES, ids=[c[0] for c in CASES])
def test_decide(case: str, results: list[tuple[float, ProbeResult]], expected: list[list[str]]) -> None:
    state = ProbeState(service="svc", replica_id=7, version=2, url="http://r7:8080", launched_at=0.0)
    got = []
    for now, result in results:
        state, events = decide(state, result, now, POLICY)
        got.append([short(e) for e in events])
    assert got == expected


def test_events_carry_identity_and_reasons() -> None:
    state = ProbeState(service="svc", replica_id=7, version=2, url="http://r7:8080", launched_at=0.0)
    state, events = decide(state, OK, 5.0, POLICY)
    assert events == [ReplicaReady(service="svc", replica_id=7, url="http://r7:8080", version=2)]
    state, events = decide(state, bad("timeout after 15s"), 6.0, POLICY)
    assert events[1] == ReplicaNotReady(service="svc", replica_id=7, reason="timeout after 15s")
    state, events = decide(state, bad("HTTP 503"), 40.0, POLICY)
    failed = events[-1]
    assert isinstance(failed, ReplicaFailed) and failed.status == "FAILED_PROBING"
    assert "34s" in failed.reason and "HTTP 503" in failed.reason
    assert state.failed


def test_initial_delay_reason() -> None:
    state = ProbeState(service="svc", replica_id=1, launched_at=0.0)
    _, events = decide(state, bad("connection refused"), 100.0, POLICY)
    assert isinstance(events[0], ReplicaFailed)
    assert (
        events[0].reason
        == "not ready 100s after launch (initial_delay_seconds); last probe: connection refused"
    )


@pytest.mark.parametrize(
    ("code", "ok", "reason"),
    [(200, True, ""), (204, True, ""), (299, True, ""), (301, False, "HTTP 301"), (404, False, "HTTP 404"),
     (500, False, "HTTP 500"), (503, False, "HTTP 503")],
)  # fmt: skip
def test_classify_status(code: int, ok: bool, reason: str) -> None:
    result = classify_status(code)
    assert (result.ok, result.reason, result.status_code) == (ok, reason, code)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ProbeTimeout(15), "timeout after 15s"),
        (ProbeTimeout(2.5), "timeout after 2.5s"),
        (ProbeRefused(), "connection refused"),
        (ProbeReset(), "connection reset"),
        (ProbeInvalidResponse(), "invalid HTTP response"),
        (ProbeTransportError("ReadError: boom"), "ReadError: boom"),
        (ProbeTransportError(), "ProbeTransportError"),
    ],
)
def test_classify_error(error: ProbeError, reason: str) -> None:
    result = classify_error(error)
    assert not result.ok and result.reason == reason and result.status_code is None
