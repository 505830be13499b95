"""The autoscaler against SkyServe 0.14.1's semantics (sky/serve/autoscalers.py, as read):

- hysteresis: a counter per decision tick, reset when the wanted target changes side or equals
  the target; the move happens on the tick where it reaches ``int(delay / interval)``;
- ``update_version``: the counters reset and the target is recomputed at once, clipped to the
  new bounds;
- the instance-aware target for a per-accelerator ``target_qps_per_replica``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

import nats.errors
import pytest
from msgspec.structs import replace

from libs.events.bus import connect
from libs.events.relay import Relay, RelayOptions
from libs.events.store import EventStore
from libs.events.types import (
    QpsSampled,
    ScaleDecided,
    ServiceRequested,
    ServiceUpdateRequested,
    service_stream,
)
from libs.fleet import AutoscalePolicy, autoscale_policy
from libs.runtime.host import ServiceHost, bus_config
from libs.runtime.settings import Settings
from libs.spec import load_spec, spec_to_dict
from services.autoscaler.decide import (
    AutoscalerState,
    LiveReplica,
    decide,
    instance_aware_target,
    record_sample,
    required_hold,
    reset_for_update,
)
from services.autoscaler.main import build

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


SCALING = """
service:
  readiness_probe: /
  replica_policy: {{min_replicas: 1, max_replicas: {hi}, target_qps_per_replica: 1,
                   upscale_delay_seconds: 3600}}
resources: {{ports: 8080}}
run: serve
"""


async def test_the_autoscaler_service_retargets_on_update(
    store: EventStore, nats_url: str, unique: str
) -> None:
    """Through the running autoscaler (and a relay to the bus): a long upscale streak is dropped
    by an update, whose version gets its target at once (clipped to its bounds), not an hour later."""
    name = "scaled"
    settings = Settings(
        database_url=store.dsn, nats_url=nats_url, bus_prefix=f"t{unique}", qps_window=5.0,
        decision_interval=0.2,
    )  # fmt: skip
    host = ServiceHost("autoscaler", settings)
    on_started = build(host)
    started = asyncio.Event()

    async def ready() -> None:
        if on_started is not None:
            await on_started()
        started.set()

    relay_nc = await connect(nats_url, name="relay")
    relay = Relay(store, relay_nc, bus_config(settings), RelayOptions(name="compat", poll_interval=0.05))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(host.run(ready)), asyncio.create_task(relay.run(stop))]

    async def decisions() -> list[ScaleDecided]:
        recs = await store.read_stream(service_stream(name))
        return [r.event for r in recs if isinstance(r.event, ScaleDecided)]

    async def until(count: int) -> list[ScaleDecided]:
        for _ in range(300):
            if len(found := await decisions()) >= count:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"fewer than {count} ScaleDecided: {await decisions()}")

    async def sampled(qps: float) -> None:
        now = time.time()
        await store.append(service_stream(name), [QpsSampled(
            service=name, router_id="r", window_start=now - 5.0, window_seconds=5.0, requests=int(qps * 5),
        )])  # fmt: skip

    try:
        await asyncio.wait_for(started.wait(), 30)  # consumers begin at start-up: append after
        v1 = spec_to_dict(load_spec(SCALING.format(hi=10)))
        await store.append(service_stream(name), [ServiceRequested(service=name, version=1, spec=v1)])
        await sampled(0.5)
        assert [d.target for d in await until(1)] == [1]  # the first decision: the minimum
        await sampled(8)  # wants 8: a streak starts, the hour-long upscale delay holds it
        await asyncio.sleep(0.6)  # a few decision ticks, measured, not waited on
        assert [d.target for d in await decisions()] == [1]

        v2 = spec_to_dict(load_spec(SCALING.format(hi=3)))
        await store.append(service_stream(name), [ServiceUpdateRequested(service=name, version=2, spec=v2)])
        last = (await until(2))[-1]
        assert last.target == 3 and last.reason.startswith("new version"), last
    finally:
        host.stop.set()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        with contextlib.suppress(nats.errors.Error):  # this test's stream, on the shared server
            await relay_nc.jetstream().delete_stream(bus_config(settings).stream)
        await relay_nc.close()
