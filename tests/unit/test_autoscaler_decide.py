from __future__ import annotations

import msgspec
import pytest
from msgspec.structs import replace

from libs.events.types import QpsSampled, ScaleDecided
from libs.fleet import AutoscalePolicy, autoscale_policy
from services.autoscaler.decide import AutoscalerState, decide, record_sample, request_scale_from_zero

P = AutoscalePolicy(
    min_replicas=1,
    max_replicas=10,
    target_qps_per_replica=4.0,
    upscale_delay_seconds=5.0,
    downscale_delay_seconds=20.0,
    # One-second window: each step's sample alone decides (steps are >= 1 s apart).
    window_seconds=1.0,
    decision_interval_seconds=0.0,
)
W60 = replace(P, window_seconds=60.0)


def qps_sample(
    end: float, qps: float, router: str = "r1", queued: int = 0, window: float = 1.0
) -> QpsSampled:
    """A router's sample of the ``window`` seconds ending at ``end``, at ``qps``."""
    return QpsSampled(
        service="svc",
        router_id=router,
        window_start=end - window,
        window_seconds=window,
        requests=int(qps * window),
        queued=queued,
    )


Step = tuple[float, float | None]  # (now, qps over the last second; None: same as before)


def run(
    policy: AutoscalePolicy,
    steps: list[Step],
    *,
    state: AutoscalerState | None = None,
    ready_spot: int = 0,
    restart_every_step: bool = False,
) -> tuple[AutoscalerState, list[ScaleDecided | None]]:
    st = state if state is not None else AutoscalerState(service="svc", target=1, spot=0, on_demand=1)
    out: list[ScaleDecided | None] = []
    last = 0.0
    for now, qps in steps:
        last = last if qps is None else qps
        st = record_sample(st, qps_sample(now, last), window_seconds=policy.window_seconds)
        if restart_every_step:
            st = msgspec.json.decode(msgspec.json.encode(st), type=AutoscalerState)
        st, decision = decide(policy, st, now, ready_spot=ready_spot)
        out.append(decision)
    return st, out


def targets(decisions: list[ScaleDecided | None]) -> list[int | None]:
    return [d.target if d is not None else None for d in decisions]


CASES: list[tuple[str, AutoscalePolicy, int, list[Step], list[int | None]]] = [
    ("upscale after the delay", P, 1, [(100, 12), (103, None), (105, None), (106, None)],
     [None, None, 3, None]),
    ("upscale interrupted restarts the clock", P, 1,
     [(100, 12), (103, 0.1), (104, None), (104.5, 12), (108, None), (109.5, None)],
     [None, None, None, None, None, 3]),
    ("target keeps moving while held", P, 1, [(100, 8), (103, 20), (105, None)], [None, None, 5]),
    ("downscale after the longer delay", P, 3,
     [(100, 12), (200, 4), (210, 4), (219, 4), (220, 4)], [None, None, None, None, 1]),
    ("no flapping on noise", P, 2, [(100, 12), (102, 4), (104, 12), (106, 4), (108, 8)], [None] * 5),
    ("clipped to max", P, 1, [(100, 100), (105, None)], [None, 10]),
    ("clipped to min", replace(P, min_replicas=2), 3,
     [(100, 0.1), (120, None)], [None, 2]),
    ("overprovision added", replace(P, num_overprovision=1), 2,
     [(100, 12), (105, None)], [None, 4]),
    ("zero delay is immediate", replace(P, upscale_delay_seconds=0), 1,
     [(100, 12)], [3]),
    ("decision interval rate-limits",
     replace(P, upscale_delay_seconds=40, decision_interval_seconds=20), 1,
     [(100, 12), (105, None), (119, None), (120, None)], [None, None, None, 3]),
]  # fmt: skip


@pytest.mark.parametrize(("case", "policy", "start", "steps", "expected"), CASES, ids=[c[0] for c in CASES])
def test_hysteresis(
    case: str, policy: AutoscalePolicy, start: int, steps: list[Step], expected: list[int | None]
) -> None:
    state = AutoscalerState(service="svc", target=start, on_demand=start)
    _, decisions = run(policy, steps, state=state)
    assert targets(decisions) == expected


@pytest.mark.parametrize(("case", "policy", "start", "steps", "expected"), CASES, ids=[c[0] for c in CASES])
def test_restart_resumes_hysteresis(
    case: str, policy: AutoscalePolicy, start: int, steps: list[Step], expected: list[int | None]
) -> None:
    """Encoding + decoding the state before every step (a restart) changes nothing."""
    state = AutoscalerState(service="svc", target=start, on_demand=start)
    _, straight = run(policy, steps, state=state)
    _, restarted = run(policy, steps, state=state, restart_every_step=True)
    assert restarted == straight
    assert targets(restarted) == expected


def test_reason_and_inputs() -> None:
    st = AutoscalerState(service="svc", target=1, on_demand=1)
    st = record_sample(st, qps_sample(100, 720.0), window_seconds=60)  # 720 requests: 12 qps over 60 s
    st, first = decide(W60, st, 100.0)
    _, d = decide(W60, st, 105.0)
    assert first is None and d is not None
    assert d.reason == "qps 12.0 over 60s / target 4.0 per replica = 3, held 5s >= upscale delay 5s"
    assert d.inputs["qps"] == 12.0 and d.inputs["raw_target"] == 3 and d.inputs["previous_target"] == 1
    assert (d.target, d.spot, d.on_demand) == (3, 0, 3)


def test_first_decision_is_immediate() -> None:
    state, decision = decide(P, AutoscalerState(service="svc"), 0.0)
    assert decision is not None and decision.target == 1 and decision.reason.startswith("initial")
    assert state.target == 1


def test_multi_router_samples_add_up() -> None:
    st = AutoscalerState(service="svc", target=1, on_demand=1)
    pol = replace(P, upscale_delay_seconds=0)
    for router in ("r1", "r2", "r3"):
        st = record_sample(st, qps_sample(100, 4, router=router))
    st = record_sample(st, qps_sample(100, 4, router="r1"))  # redelivered: replaces, not adds
    st, decision = decide(pol, st, 100.0)
    assert decision is not None and decision.target == 3 and decision.inputs["routers"] == 3


def test_samples_outside_the_window_are_dropped() -> None:
    st = AutoscalerState(service="svc", target=1, on_demand=1)
    st = record_sample(st, qps_sample(0, 100))
    st = record_sample(st, qps_sample(100, 4))
    assert [s.window_start for s in st.samples] == [99]
    st, decision = decide(replace(P, upscale_delay_seconds=0), st, 100.0)
    assert decision is None  # 4 qps -> 1 replica, unchanged


def test_straddling_sample_counts_pro_rata() -> None:
    st = AutoscalerState(service="svc", target=1, on_demand=1)
    st = record_sample(
        st, QpsSampled(service="svc", router_id="r", window_start=30, window_seconds=20, requests=1200)
    )
    pol = replace(W60, upscale_delay_seconds=0)
    _, decision = decide(pol, st, 100.0)  # window (40, 100]: half the sample -> 600 / 60 = 10 qps
    assert decision is not None and decision.inputs["qps"] == 10.0 and decision.target == 3


ZERO = replace(P, min_replicas=0, upscale_delay_seconds=300)


def test_scale_from_zero_request_is_immediate() -> None:
    st = AutoscalerState(service="svc", target=0, on_demand=0)
    st, decision = decide(ZERO, st, 100.0)
    assert decision is None
    st = request_scale_from_zero(st, 101.0)
    st, decision = decide(ZERO, st, 101.5)
    assert decision is not None and decision.target == 1 and "scale from zero" in decision.reason
    assert st.wake_requested_at is None


def test_scale_from_zero_on_queued_or_traffic() -> None:
    st = AutoscalerState(service="svc", target=0, on_demand=0)
    st = record_sample(st, qps_sample(100, 0, queued=3))
    _, decision = decide(ZERO, st, 100.0)
    assert decision is not None and decision.target == 1
    st = AutoscalerState(service="svc", target=0, on_demand=0)
    st = record_sample(st, qps_sample(100, 12))
    _, decision = decide(ZERO, st, 100.0)
    assert decision is not None and decision.target == 3  # straight to the qps target, no delay


def test_scale_to_zero_after_downscale_delay() -> None:
    st = AutoscalerState(service="svc", target=1, on_demand=1)
    _, decisions = run(ZERO, [(100, 0), (119, None), (120, None)], state=st)
    assert targets(decisions) == [None, None, 0]


SPOT = replace(P, use_spot=True, base_ondemand_fallback_replicas=1, upscale_delay_seconds=0)
DYNAMIC = replace(SPOT, dynamic_ondemand_fallback=True)


@pytest.mark.parametrize(
    ("policy", "ready_spot", "split"),
    [
        (SPOT, 0, (2, 1)),  # base on-demand only
        (DYNAMIC, 0, (2, 3)),  # one on-demand per missing spot
        (DYNAMIC, 1, (2, 2)),
        (DYNAMIC, 2, (2, 1)),
        (replace(DYNAMIC, num_overprovision=1), 0, (3, 3)),
    ],
)
def test_fallback_split(policy: AutoscalePolicy, ready_spot: int, split: tuple[int, int]) -> None:
    st = record_sample(AutoscalerState(service="svc", target=1, on_demand=1), qps_sample(100, 12))
    _, decision = decide(policy, st, 100.0, ready_spot=ready_spot)
    assert decision is not None and (decision.spot, decision.on_demand) == split


def test_dynamic_fallback_goes_up_and_down_with_ready_spot() -> None:
    st = AutoscalerState(service="svc", target=3, spot=2, on_demand=1)
    seen = []
    for now, ready in [(100, 2), (110, 0), (120, 0), (130, 1), (140, 2)]:
        st = record_sample(st, qps_sample(now, 12))
        st, decision = decide(DYNAMIC, st, float(now), ready_spot=ready)
        seen.append(None if decision is None else (decision.target, decision.spot, decision.on_demand))
    assert seen == [None, (3, 2, 3), None, (3, 2, 2), (3, 2, 1)]


def test_fallback_reason() -> None:
    st = record_sample(AutoscalerState(service="svc", target=3, spot=2, on_demand=1), qps_sample(100, 12))
    _, decision = decide(DYNAMIC, st, 100.0, ready_spot=0)
    assert decision is not None
    assert decision.reason == "on-demand fallback: 0 of 2 spot replicas READY; spot 2, on-demand 3"


def test_fixed_replicas_never_decide() -> None:
    fixed = autoscale_policy({"service": {"min_replicas": 2, "max_replicas": 2}, "resources": {}})
    st = record_sample(AutoscalerState(service="svc"), qps_sample(100, 1000))
    assert decide(fixed, st, 100.0) == (st, None)


def test_bounds_change_applies_at_once() -> None:
    st = AutoscalerState(service="svc", target=8, on_demand=8)
    st = record_sample(st, qps_sample(100, 40))
    smaller = replace(P, max_replicas=4)
    _, decision = decide(smaller, st, 100.0)
    assert decision is not None and decision.target == 4 and decision.reason.startswith("bounds now [1, 4]")


def test_policy_from_spec() -> None:
    pol = autoscale_policy(
        {
            "service": {
                "min_replicas": 0,
                "max_replicas": 5,
                "target_qps_per_replica": 2.5,
                "num_overprovision": None,
                "dynamic_ondemand_fallback": True,
            },
            "resources": {"use_spot": False, "any_of": [{"use_spot": True}]},
        },
        window_seconds=30,
    )
    assert pol.autoscales and pol.use_spot and pol.dynamic_ondemand_fallback
    assert (pol.min_replicas, pol.max_replicas, pol.num_overprovision, pol.window_seconds) == (0, 5, 0, 30)
    assert (pol.upscale_delay_seconds, pol.downscale_delay_seconds) == (300, 1200)


def test_scale_from_zero_request_before_the_first_decision() -> None:
    """A request held before any decision was recorded is not swallowed by the initial one."""
    st = request_scale_from_zero(AutoscalerState(service="svc"), 100.0)
    st, decision = decide(ZERO, st, 100.1)
    assert decision is not None and decision.target == 1 and "scale from zero" in decision.reason
    assert st.wake_requested_at is None
    _, decision = decide(ZERO, AutoscalerState(service="svc"), 100.1)
    assert decision is not None and decision.target == 0 and decision.reason.startswith("initial")
