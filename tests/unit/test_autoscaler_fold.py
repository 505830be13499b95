"""The autoscaler's state is a fold of the log: at every step of any run, the state folded from
what was recorded equals the state the live autoscaler holds (so a restarted or second instance
decides the same), and the log grows only when a tick changes something."""

from __future__ import annotations

import itertools
from typing import Literal

import pytest
from autoscaler_model import Model, rebuilt, replay
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from libs.events.types import ScaleDecided, ScaleEvaluated
from libs.fleet import AutoscalePolicy
from services.autoscaler.decide import AutoscalerState, evaluate
from services.autoscaler.fold import after_evaluation

FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

policies = st.builds(
    AutoscalePolicy,
    min_replicas=st.integers(0, 2),
    max_replicas=st.integers(2, 6),
    target_qps_per_replica=st.sampled_from([1.0, 2.0, 5.0]),
    upscale_delay_seconds=st.sampled_from([0.0, 5.0, 10.0, 30.0]),
    downscale_delay_seconds=st.sampled_from([0.0, 10.0, 40.0]),
    num_overprovision=st.integers(0, 1),
    use_spot=st.booleans(),
    base_ondemand_fallback_replicas=st.integers(0, 1),
    dynamic_ondemand_fallback=st.booleans(),
    window_seconds=st.sampled_from([5.0, 10.0, 30.0]),
    decision_interval_seconds=st.sampled_from([0.0, 5.0, 10.0]),
)

Op = tuple[Literal["sample", "tick", "wake", "update", "terminate"], float, int, int]
ops = st.lists(
    st.tuples(
        st.sampled_from(
            ["sample", "sample", "sample", "tick", "tick", "tick", "wake", "update", "terminate"]
        ),
        st.sampled_from([0.0, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0]),  # seconds since the previous op
        st.integers(0, 30),  # qps, or the new max_replicas of an update
        st.integers(0, 3),  # queued requests, or READY spot replicas at a tick
    ),
    max_size=80,
)


def check(model: Model) -> None:
    window = model.policy.window_seconds
    assert replay(model.service, model.log, window_seconds=window) == model.state
    assert rebuilt(model.service, model.log, window_seconds=window) == model.state


def apply(model: Model, op: Op, t: float) -> None:
    kind, _, a, b = op
    if kind == "sample":
        model.sample(t, float(a), router=f"r{b % 2}", queued=b if b == 3 else 0)
    elif kind == "tick":
        before = model.state
        if model.tick(t, ready_spot=b) is None:
            assert model.state is before  # nothing recorded, nothing changed
    elif kind == "wake":
        model.wake(t)
    elif kind == "update":
        bounded = replace(model.policy, max_replicas=max(model.policy.min_replicas, a % 7))
        model.update(t, bounded, version=len(model.log) + 2)
    else:
        model.terminate(t)


@FUZZ
@given(policy=policies, script=ops)
def test_the_state_folded_from_the_log_is_the_live_state_at_every_step(
    policy: AutoscalePolicy, script: list[Op]
) -> None:
    model = Model(policy)
    t = 1000.0
    check(model)
    for op in script:
        t += op[1]
        apply(model, op, t)
        check(model)


@FUZZ
@given(policy=policies, script=ops, cut=st.integers(0, 80))
def test_a_restart_anywhere_makes_the_same_decisions(
    policy: AutoscalePolicy, script: list[Op], cut: int
) -> None:
    """Run A keeps its state in memory; run B is rebuilt from its log at step ``cut`` (a
    restart, or another instance taking over): B then records exactly what A records."""
    a, b = Model(policy), Model(policy)
    t = 1000.0
    for i, op in enumerate(script):
        if i == cut:
            b.state = rebuilt(b.service, b.log, window_seconds=b.policy.window_seconds)
        t += op[1]
        apply(a, op, t)
        apply(b, op, t)
    assert b.log == a.log and b.state == a.state


P = AutoscalePolicy(
    min_replicas=1, max_replicas=10, target_qps_per_replica=4.0, upscale_delay_seconds=20.0,
    downscale_delay_seconds=40.0, window_seconds=10.0, decision_interval_seconds=5.0,
)  # fmt: skip


def _run(
    model: Model, qps: list[float], *, start: float = 1000.0
) -> list[ScaleDecided | ScaleEvaluated | None]:
    out = []
    for i, q in enumerate(qps):
        t = start + 5.0 * i
        model.sample(t, q, span=5.0 if i else P.window_seconds)  # back to back
        out.append(model.tick(t))
    return out


def test_steady_load_records_only_the_decisions() -> None:
    model = Model(P)
    _run(model, [8.0] * 400)  # wants 2 from the first tick on: one initial decision, then nothing
    assert [type(e).__name__ for e in model.recorded()] == ["ScaleDecided"]


def test_a_streak_records_its_start_and_its_move() -> None:
    model = Model(P)
    out = _run(model, [4.0] + [12.0] * 6 + [4.0] * 3)
    kinds = [type(e).__name__ if e is not None else None for e in out]
    # initial; the streak begins (recorded); tick 4 of it (15 s in) moves; none while it holds
    assert kinds == ["ScaleDecided", "ScaleEvaluated", None, None, "ScaleDecided", None, None,
                     "ScaleEvaluated", None, None]  # fmt: skip
    began = out[1]
    assert isinstance(began, ScaleEvaluated)
    # (the first tick of 12 qps sees half a window of it: 8 qps, 2 wanted: the streak's side)
    assert (began.target, began.candidate_target, began.candidate_since) == (1, 2, 1005.0)
    assert "held 0s < upscale delay 20s" in began.reason and began.inputs["wanted"] == 2
    moved = out[4]
    assert isinstance(moved, ScaleDecided) and moved.target == 3 and moved.at == 1020.0
    assert moved.candidate_target is None and moved.candidate_since is None


def test_noise_records_at_most_one_event_per_decision_interval() -> None:
    model = Model(P)
    # Around a target of 2: every tick's wanted target crosses it (3, 1, 3, 1, ...).
    _run(model, [8.0] + [12.0, 4.0] * 200)
    assert len(model.recorded()) <= 401
    times = [e.at for e in model.recorded()]
    assert all(b - a >= P.decision_interval_seconds for a, b in itertools.pairwise(times))


def test_a_new_version_that_keeps_the_target_is_recorded() -> None:
    """The re-target is consumed even when it keeps the target: recorded, or a rebuilt instance
    would re-target again on its next tick."""
    model = Model(P)
    _run(model, [8.0, 8.0])
    model.update(1010.0, replace(P, max_replicas=4), version=2)
    model.sample(1010.0, 8.0, span=5.0)
    ev = model.tick(1010.0)
    assert isinstance(ev, ScaleEvaluated) and ev.reason.startswith("new version") and not ev.retarget
    assert not model.state.retarget


def test_a_wake_request_consumed_without_a_move_is_recorded() -> None:
    model = Model(P)
    _run(model, [8.0])
    model.wake(1001.0)  # a router held a request while a replica was restarting
    ev = model.tick(1005.0)
    assert isinstance(ev, ScaleEvaluated) and ev.wake_requested_at is None
    assert model.state.wake_requested_at is None


def test_a_fallback_move_keeps_the_streak_in_its_decision() -> None:
    spot = replace(P, use_spot=True, dynamic_ondemand_fallback=True)
    model = Model(spot)
    model.sample(1000.0, 8.0)
    model.tick(1000.0, ready_spot=2)
    model.sample(1005.0, 12.0, span=5.0)
    model.tick(1005.0, ready_spot=2)  # a streak up begins
    model.sample(1010.0, 12.0, span=5.0)
    ev = model.tick(1010.0, ready_spot=0)  # the spot replicas went away: on-demand fallback
    assert isinstance(ev, ScaleDecided) and ev.reason.startswith("on-demand fallback")
    assert (ev.candidate_target, ev.candidate_since) == (3, 1005.0)
    assert replay("svc", model.log, window_seconds=10.0) == model.state


@pytest.mark.parametrize("at", [None, 1234.0])
def test_a_carried_over_state_folds_to_itself(at: float | None) -> None:
    """Migration 10 appends an old table row as a ScaleEvaluated: folding it gives the row."""
    row = AutoscalerState(
        service="svc", target=3, spot=1, on_demand=2, decided_at=1200.0, candidate_target=5,
        candidate_since=1220.0, last_evaluated_at=at, wake_requested_at=None, retarget=at is None,
    )  # fmt: skip
    ev = ScaleEvaluated(
        service="svc", at=row.last_evaluated_at, target=row.target, spot=row.spot, on_demand=row.on_demand,
        decided_at=row.decided_at, candidate_target=row.candidate_target,
        candidate_since=row.candidate_since, wake_requested_at=row.wake_requested_at, retarget=row.retarget,
    )  # fmt: skip
    assert after_evaluation(AutoscalerState(service="svc"), ev) == row
    # and the next tick goes on from it: a pending re-target happens at once
    _, nxt = evaluate(P, row, 1300.0)
    assert nxt is not None


def test_a_streak_that_ends_is_recorded() -> None:
    model = Model(P)
    out = _run(model, [8.0, 12.0, 12.0, 4.0, 8.0])  # at 2; a streak up; back at 2 before its move
    ended = out[3]
    assert isinstance(ended, ScaleEvaluated) and ended.candidate_since is None
    assert ended.reason.endswith("back at the target, the streak ended"), ended.reason
    assert out[4] is None and model.state.candidate_target is None
