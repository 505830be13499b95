"""Section 1: append throughput, ours against raw INSERTs of the same rows, and diagnostics."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench.events.env import Env
from bench.events.proposals import PROPOSED_APPEND_SQL, ProposedAppendConn, keep_session
from bench.events.report import TARGETS, Figure, Report, header
from bench.events.workload import PLAIN_ONE, Cycle, Plain, as_batches, fleet_events, stream_of
from libs.events.store import EventStore, StreamAppend, append_on
from libs.events.types import Event


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
    header(f"1. append throughput (events/s; median of {rounds} rounds of {seconds:g}s, alternating)")
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
            await dedicated.execute(PLAIN_ONE, r[0], r[1], r[2], r[3], r[4], r[5], now, r[6], r[7], r[8])
            return 1

        v, b, vs, bs = await compare(single_dedicated, single_plain_dedicated, seconds, rounds)
        rep.add(Figure(
            "append", "  diag: sequential, dedicated connection (no pool)", v, "ev/s", "", None,
            "raw INSERT, dedicated conn", b, note=f"rounds {_rates(vs)} vs {_rates(bs)}",
        ))  # fmt: skip
        light = EventStore(await asyncpg.create_pool(url, min_size=1, max_size=1, reset=keep_session), url)
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
