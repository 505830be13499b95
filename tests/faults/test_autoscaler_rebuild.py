"""The autoscaler rebuilt from the log, through the running service (real Postgres, nats-server,
relay): stopped mid-streak with its snapshot deleted and restarted, it records exactly what an
uninterrupted run records; two instances side by side record each decision once.

The ticks run on a clock the test drives (``Autoscaler(clock=...)``), so the three runs and the
in-memory reference (``tests/unit/autoscaler_model.py``) see the same times and inputs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import asyncpg
import msgspec
import nats.errors
import pytest
from msgspec.structs import replace

from libs.events.bus import connect
from libs.events.relay import Relay, RelayOptions
from libs.events.rows import StreamAppend
from libs.events.schema import MIGRATIONS, migrate
from libs.events.store import EventStore, append_on
from libs.events.types import (
    QpsSampled,
    ScaleDecided,
    ScaleEvaluated,
    ServiceRequested,
    ServiceTerminated,
    ServiceUpdateRequested,
    service_stream,
)
from libs.fleet import AutoscalePolicy, autoscale_policy
from libs.runtime.host import ServiceHost, bus_config
from libs.runtime.settings import Settings
from libs.spec import load_spec, spec_to_dict
from services.autoscaler.decide import AutoscalerState, QpsSample, evaluate
from services.autoscaler.fold import AUTOSCALER, SNAPSHOT_NAME, with_samples
from services.autoscaler.main import Autoscaler
from services.autoscaler.store import PAGE, SAMPLE_SLACK_SECONDS, lock_service, recent_samples
from tests.unit.autoscaler_model import Model

pytestmark = pytest.mark.timeout(240)

WINDOW = 10.0
INTERVAL = 5.0  # the decision interval, and the span of each router sample (back to back)
SPEC = """
service:
  readiness_probe: /
  replica_policy: {{min_replicas: 0, max_replicas: {hi}, target_qps_per_replica: 2,
                   upscale_delay_seconds: 10, downscale_delay_seconds: 20}}
resources: {{ports: 8080}}
run: serve
"""

Kind = Literal["sample", "update"]
# (kind, qps or the update's max_replicas, queued requests); each step is INTERVAL after the last
SCRIPT: list[tuple[Kind, int, int]] = [
    ("sample", 4, 0),  # initial: 1
    ("sample", 8, 0),  # wants 3: a streak begins (ScaleEvaluated)
    ("sample", 8, 0),  # held 5 s: moves to 4
    ("sample", 8, 0),
    ("sample", 2, 0),  # wants 3: a streak down begins
    ("sample", 2, 0),  # wants 1, held 5 s of 15          <- restart 1 (snapshot deleted) after this
    ("sample", 2, 0),
    ("sample", 2, 0),  # held 15 s: moves to 1
    ("sample", 12, 0),  # wants 6: a streak up
    ("update", 2, 0),  # a new version, max 2: the streak is dropped, re-targeted at once: 2
    ("sample", 0, 0),  # wants 0: a streak down
    ("sample", 0, 0),
    ("sample", 0, 0),
    ("sample", 0, 0),  # held 15 s: to zero                 <- restart 2 (snapshot kept) after this
    ("sample", 0, 0),
    ("sample", 0, 2),  # a held request: scale from zero at once (the handler's evaluation)
    ("sample", 2, 0),
    ("sample", 2, 0),
]
RESTARTS = (6, 14)


def spec(hi: int) -> dict[str, object]:
    return spec_to_dict(load_spec(SPEC.format(hi=hi)))


def policy(hi: int) -> AutoscalePolicy:
    return autoscale_policy(spec(hi), window_seconds=WINDOW, decision_interval_seconds=INTERVAL)


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def reference(service: str, ticks_per_step: int = 1) -> tuple[Model, list[float]]:
    """The uninterrupted in-memory run of SCRIPT (``ticks_per_step`` instances each tick)."""
    model = Model(policy(6), service=service)
    seen = []
    for i, (kind, value, queued) in enumerate(SCRIPT):
        t = 1000.0 + INTERVAL * i
        if kind == "sample":
            model.sample(t, float(value), queued=queued, span=INTERVAL)
            if queued:
                model.tick(t)  # the consumer's handler evaluates a held request at once
        else:
            model.update(t, policy(value), version=2)
            model.tick(t)
        for _ in range(ticks_per_step):
            model.tick(t)
        seen.append(model.state.candidate_since or 0.0)
    return model, seen


class Harness:
    def __init__(self, store: EventStore, settings: Settings, clock: Clock) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock

    @contextlib.asynccontextmanager
    async def instance(self) -> AsyncIterator[Autoscaler]:
        """One autoscaler process (in this one): its periodic tick is off, the test ticks."""
        host = ServiceHost("autoscaler", self.settings)
        scaler = Autoscaler(host, WINDOW, INTERVAL, clock=self.clock, tick_every=3600.0)
        on_started = scaler.register()
        started = asyncio.Event()

        async def ready() -> None:
            await on_started()
            started.set()

        task = asyncio.create_task(host.run(ready))
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait([task, waiter], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        assert started.is_set(), "the autoscaler did not start"
        try:
            yield scaler
        finally:
            host.stop.set()
            await asyncio.wait_for(task, 30)

    async def handled(self, position: int) -> None:
        """Wait (bounded) until the autoscaler's consumer has handled ``position``."""
        for _ in range(400):
            done = await self.store.pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM stratus_tracking WHERE consumer = 'autoscaler'"
                " AND position = $1) OR EXISTS (SELECT 1 FROM stratus_tracking_floor"
                " WHERE consumer = 'autoscaler' AND position >= $1)",
                position,
            )
            if done:
                return
            await asyncio.sleep(0.025)
        raise AssertionError(f"position {position} was not handled in time")

    async def run(self, service: str, scalers: Sequence[Autoscaler], steps: range) -> None:
        """Steps of SCRIPT for ``service``; every instance ticks after each (concurrently)."""
        stream = service_stream(service)
        for i in steps:
            kind, value, queued = SCRIPT[i]
            t = self.clock.now = 1000.0 + INTERVAL * i
            if kind == "sample":
                event: QpsSampled | ServiceUpdateRequested = QpsSampled(
                    service=service, router_id="r1", window_start=t - INTERVAL, window_seconds=INTERVAL,
                    requests=int(value * INTERVAL), queued=queued,
                )  # fmt: skip
            else:
                event = ServiceUpdateRequested(service=service, version=2, spec=spec(value))
            position = (await self.store.append(stream, [event])).positions[0]
            if kind == "update" or queued:
                await self.handled(position)  # evaluated by the consumer at once
            await asyncio.gather(*(s.tick() for s in scalers))

    async def recorded(self, service: str) -> list[ScaleDecided | ScaleEvaluated]:
        recs = await self.store.read_stream(service_stream(service))
        return [r.event for r in recs if isinstance(r.event, (ScaleDecided, ScaleEvaluated))]


@pytest.fixture
async def harness(store: EventStore, nats_url: str, unique: str) -> AsyncIterator[Harness]:
    settings = Settings(
        database_url=store.dsn, nats_url=nats_url, bus_prefix=f"t{unique}", qps_window=WINDOW,
        decision_interval=INTERVAL, snapshot_interval=0.2,
    )  # fmt: skip
    nc = await connect(nats_url, name="relay")
    relay = Relay(store, nc, bus_config(settings), RelayOptions(name="rebuild", poll_interval=0.05))
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield Harness(store, settings, Clock())
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        with contextlib.suppress(nats.errors.Error):
            await nc.jetstream().delete_stream(bus_config(settings).stream)
        await nc.close()


async def request(h: Harness, service: str, *scalers: Autoscaler) -> None:
    """The service, once every instance's fleet projection has it (the tick lists services)."""
    new = ServiceRequested(service=service, version=1, spec=spec(6))
    position = (await h.store.append(service_stream(service), [new])).positions[0]
    for s in scalers:
        await s.host.fleet.wait_for(position, 10.0)


async def test_a_restart_from_the_log_decides_as_an_uninterrupted_run(harness: Harness) -> None:
    h = harness
    everything = range(len(SCRIPT))
    async with h.instance() as scaler:
        await request(h, "steady", scaler)
        await h.run("steady", [scaler], everything)
        await h.store.append(service_stream("steady"), [ServiceTerminated(service="steady")])
    steady = await h.recorded("steady")

    first, second = RESTARTS
    async with h.instance() as scaler:
        await request(h, "restarted", scaler)
        await h.run("restarted", [scaler], range(first))
    # Stopped mid-streak: its state is only in the log (the snapshot is deleted; no table).
    deleted = await h.store.pool.execute(
        "DELETE FROM stratus_projection_snapshots WHERE name = $1", SNAPSHOT_NAME
    )
    assert deleted != "DELETE 0"  # there was one (written on stop)
    async with h.instance() as scaler:
        assert scaler.live.replayed > 0  # rebuilt from the start of the log
        await h.run("restarted", [scaler], range(first, second))
    async with h.instance() as scaler:  # from the snapshot written on stop, plus its tail
        await h.run("restarted", [scaler], range(second, len(SCRIPT)))
    restarted = await h.recorded("restarted")

    model, streaks = reference("steady")
    assert streaks[first - 1], "restart 1 happens mid-streak"
    assert steady == model.recorded()
    assert [replace(e, service="steady") for e in restarted] == steady
    kinds = {(type(e).__name__, e.reason.split(":")[0]) for e in steady}
    assert ("ScaleDecided", "new version") in kinds and ("ScaleDecided", "scale from zero") in kinds
    assert any(isinstance(e, ScaleEvaluated) for e in steady)
    assert [e.target for e in steady if isinstance(e, ScaleDecided)] == [1, 4, 1, 2, 0, 1]


async def test_two_instances_side_by_side_decide_each_tick_once(harness: Harness) -> None:
    h = harness
    async with h.instance() as a, h.instance() as b:
        await request(h, "pair", a, b)
        await h.run("pair", [a, b, a, b], range(len(SCRIPT)))
    pair = await h.recorded("pair")
    once, _ = reference("pair")
    assert pair == once.recorded()  # four ticks a step, from two instances: as one tick of one


async def test_an_upgrade_carries_the_old_table_into_the_log(fresh_db_url: str) -> None:
    """A database of the version before (migrations 1-9, the autoscaler's state in its table,
    decisions in the log): migration 10 appends each row as a ScaleEvaluated and drops the table,
    and the state folded from the log is the row's (its streak in flight included)."""
    sample = QpsSample(router_id="r1", window_start=995.0, window_seconds=5.0, requests=60)
    in_flight = AutoscalerState(
        service="busy", samples=(sample,), target=3, spot=0, on_demand=3, decided_at=900.0,
        candidate_target=5, candidate_since=1000.0, last_evaluated_at=1010.0,
    )  # fmt: skip
    pending = AutoscalerState(service="updated", target=2, on_demand=2, decided_at=950.0, retarget=True)
    conn = await asyncpg.connect(fresh_db_url)
    try:
        await conn.execute(
            "CREATE TABLE stratus_schema_migrations (version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, sql in enumerate(MIGRATIONS[:9], start=1):
            await conn.execute(sql)
            await conn.execute("INSERT INTO stratus_schema_migrations (version) VALUES ($1)", version)
        for row in (in_flight, pending):  # as the old store.save_state wrote them, with a decision
            old = ScaleDecided(service=row.service, target=row.target or 0, on_demand=row.on_demand)
            await append_on(conn, [StreamAppend(service_stream(row.service), [old])])
            await conn.execute(
                "INSERT INTO stratus_autoscaler_state (service, state) VALUES ($1, $2::jsonb)",
                row.service, msgspec.json.encode(row).decode(),
            )  # fmt: skip
        assert await migrate(conn) == len(MIGRATIONS)
        assert await conn.fetchval("SELECT to_regclass('stratus_autoscaler_state')") is None
    finally:
        await conn.close()
    store = await EventStore.connect(fresh_db_url)
    try:
        carried = [r.event for r in await store.read_stream(service_stream("busy"))][-1]
        assert isinstance(carried, ScaleEvaluated) and carried.reason.startswith("carried over")
        states = (await AUTOSCALER.rebuild(store)).state
    finally:
        await store.close()
    assert states.of("busy") == replace(in_flight, samples=())  # the samples are the log's own
    assert states.of("updated") == pending
    # and the next tick goes on from there: the streak's 10 s hold is not started over
    p = replace(policy(6), upscale_delay_seconds=10.0)
    surge = QpsSampled(service="busy", router_id="r1", window_start=1010.0, window_seconds=5.0, requests=150)
    busy = with_samples(states.of("busy"), [surge], window_seconds=WINDOW)  # 15 qps: 8, clipped to 6
    _, moved = evaluate(p, busy, 1015.0)
    assert isinstance(moved, ScaleDecided) and moved.target == 6 and "held 15s" in moved.reason


async def test_a_paused_instance_loses_the_decision_lock(store: EventStore) -> None:
    """An instance stopped (SIGSTOP, a partition) inside its decision's transaction: Postgres
    ends its session once it has been idle for ``hold``, the other instance takes the lock, and
    the paused one's transaction (its decision) is gone."""
    paused = await asyncpg.connect(store.dsn)
    other = await asyncpg.connect(store.dsn)
    try:
        tx = paused.transaction()
        await tx.start()
        await lock_service(paused, "svc", hold=1.0)
        await paused.execute("SELECT 1")  # then nothing: the instance is paused
        t0 = asyncio.get_running_loop().time()
        async with other.transaction():
            await lock_service(other, "svc", hold=1.0)
        waited = asyncio.get_running_loop().time() - t0
        assert 0.5 < waited < 5.0, waited
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
            await paused.execute("SELECT 1")
    finally:
        paused.terminate()
        await other.close()


async def test_the_samples_read_are_the_last_window_across_pages(store: EventStore) -> None:
    """Newest first through the stream's key, a page at a time, stopping at the first row older
    than the window plus slack: old samples and other events are left out, the order is the log's."""
    stream = service_stream("busy")
    old = datetime.now(UTC) - timedelta(seconds=WINDOW + SAMPLE_SLACK_SECONDS + 30)

    def sample(i: int) -> QpsSampled:
        return QpsSampled(
            service="busy", router_id=f"r{i % 3}", window_start=float(i), window_seconds=1.0, requests=i
        )

    await store.append(stream, [sample(i) for i in range(50)], now=old)  # too old to count
    recent = [sample(i) for i in range(50, 50 + 2 * PAGE + 7)]
    mixed: list[QpsSampled | ScaleEvaluated] = []
    for s in recent:
        mixed += [s, ScaleEvaluated(service="busy", at=s.window_start)] if s.requests % 5 == 0 else [s]
    await store.append(stream, mixed)
    async with store.pool.acquire() as conn:
        read = await recent_samples(conn, "busy", WINDOW)
    assert read == recent
