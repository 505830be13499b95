"""The autoscaler against SkyServe 0.14.1's semantics (sky/serve/autoscalers.py, as read):

- hysteresis: a counter per decision tick, reset when the wanted target changes side or equals
  the target; the move happens on the tick where it reaches ``int(delay / interval)``;
- ``update_version``: the counters reset and the target is recomputed at once, clipped to the
  new bounds;
- the instance-aware target for a per-accelerator ``target_qps_per_replica``.
"""

from __future__ import annotations

import math

import pytest
from msgspec.structs import replace

from libs.events.types import QpsSampled
from libs.fleet import AutoscalePolicy, autoscale_policy
from libs.spec import load_spec
from services.autoscaler.decide import (
    AutoscalerState,
    LiveReplica,
    decide,
    instance_aware_target,
    record_sample,
    required_hold,
    reset_for_update,
)

INTERVAL = 20.0  # SkyServe's AUTOSCALER_DEFAULT_DECISION_INTERVAL_SECONDS
P = AutoscalePolicy(
    min_replicas=1, max_replicas=10, target_qps_per_replica=1.0, upscale_delay_seconds=300,
    downscale_delay_seconds=1200, window_seconds=INTERVAL, decision_interval_seconds=INTERVAL,
)  # fmt: skip


def skyserve_fire_tick(delay: float, interval: float) -> int:
    """The tick (1-based) of a steady streak on which SkyServe's counter moves the target: the
    counter is 1 on the first tick and moves it once ``counter >= int(delay / interval)``."""
    return max(int(delay / interval), 1)


def sample(end: float, qps: float) -> QpsSampled:
    return QpsSampled(
        service="s", router_id="r", window_start=end - INTERVAL, window_seconds=INTERVAL,
        requests=int(qps * INTERVAL),
    )  # fmt: skip


def stratus_fire_tick(policy: AutoscalePolicy, start: int, qps: float) -> int:
    state = AutoscalerState(service="s", target=start, on_demand=start)
    for tick in range(1, 10_000):
        now = 1000.0 + (tick - 1) * INTERVAL
        state = record_sample(state, sample(now, qps), window_seconds=INTERVAL)
        state, decision = decide(policy, state, now)
        if decision is not None:
            return tick
    raise AssertionError("never")


@pytest.mark.parametrize("delay", [0, 10, 20, 30, 40, 60, 300, 1200, 45.5])
def test_hysteresis_fires_on_skyserves_tick(delay: float) -> None:
    up = replace(P, upscale_delay_seconds=delay)
    assert stratus_fire_tick(up, start=1, qps=5) == skyserve_fire_tick(delay, INTERVAL)
    down = replace(P, downscale_delay_seconds=delay)
    assert stratus_fire_tick(down, start=5, qps=1) == skyserve_fire_tick(delay, INTERVAL)


def test_required_hold() -> None:
    assert [required_hold(d, 20) for d in (0, 19, 20, 40, 300)] == [0, 0, 0, 20, 280]
    assert required_hold(300, 0) == 300  # no decision interval: plain seconds


def test_update_resets_the_streak_and_retargets_within_the_new_bounds() -> None:
    state = AutoscalerState(service="s", target=2, on_demand=2)
    t = 1000.0
    for _ in range(5):  # qps 8 wants 8 replicas; 5 ticks into a 15-tick upscale streak
        state = record_sample(state, sample(t, 8), window_seconds=INTERVAL)
        state, decision = decide(P, state, t)
        assert decision is None
        t += INTERVAL
    assert state.candidate_since is not None
    new_bounds = replace(P, min_replicas=1, max_replicas=4)
    state = reset_for_update(state)
    assert state.candidate_target is None and state.retarget
    # The very next evaluation (even within the decision interval) re-targets: clip(8, 1, 4) = 4.
    state, decision = decide(new_bounds, state, t - INTERVAL + 1)
    assert decision is not None and decision.target == 4 and decision.reason.startswith("new version")
    assert not state.retarget
    # After it, hysteresis counts from zero again: qps 1 wants 1, down after 60 ticks, not at once.
    state = record_sample(state, sample(t + INTERVAL, 1), window_seconds=INTERVAL)
    state, decision = decide(new_bounds, state, t + INTERVAL)
    assert decision is None and state.candidate_target == 1


def live(*accelerators: str, ready: bool = True) -> list[LiveReplica]:
    return [LiveReplica(a, ready) for a in accelerators]


IA = autoscale_policy(
    load_spec(
        """
service:
  readiness_probe: /
  load_balancing_policy: instance_aware_least_load
  replica_policy: {min_replicas: 1, max_replicas: 10, target_qps_per_replica: {A100: 10, "L4:1": 2}}
resources: {ports: 8080, accelerators: {A100: 1, L4: 1}}
run: serve
"""
    )
)


@pytest.mark.parametrize(
    ("qps", "replicas", "expected"),
    [
        (0, [], 1),  # no capacity known: min_replicas
        (15, live("A100"), 1 + math.ceil(5 / 10)),  # above capacity: one more per largest target
        (35, live("A100", "L4"), 2 + math.ceil(23 / 10)),
        (11, live("A100", "L4"), 2),  # 10 is not above 11; 10 + 2 is
        (9, live("A100", "L4"), 1),  # the A100 alone covers 9
        (1, live("L4", "L4", "A100"), 1),
        (3, live("L4", "L4") + live("A100", ready=False), 2),  # only READY ones count when below
        (0.5, live("T4"), 1),  # unknown accelerator: the smallest target (2)
    ],
)
def test_instance_aware_target(qps: float, replicas: list[LiveReplica], expected: int) -> None:
    assert instance_aware_target(IA, qps, replicas) == expected


def test_instance_aware_decision_uses_live_replicas() -> None:
    state = AutoscalerState(service="s")
    state = record_sample(state, sample(1000.0, 25), window_seconds=60)
    state, decision = decide(IA, state, 1000.0, live=live("A100"))
    # 25 qps over a 60 s window (20 s sampled) = 8.33 qps, below the A100's 10: one replica
    assert decision is not None and decision.target == 1
    state, decision = decide(IA, AutoscalerState(service="s", samples=state.samples), 1000.0, live=live("L4"))
    assert decision is not None and decision.target == 1 + math.ceil((25 * 20 / 60 - 2) / 10)
